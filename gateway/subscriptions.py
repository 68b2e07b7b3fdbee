"""Webhook subscriptions at the providers: the calls behind `gateway webhooks`
(gateway/webhooks_tool.py) and the gateway's scheduled check of them (`SubscriptionCheck`,
`server.subscription_check_seconds`), which exports `gateway_webhook_subscribed`.

What to call and what an answer means is each adapter's (`Channel.subscription_call`,
`Channel.subscription`, `Channel.handshake_query`); this module makes the calls, one at a
time and each identical call once per run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from adapters import Action, ProviderCall, Subscription
from adapters.account import Account
from adapters.channel import adapter_of
from gateway.config import Settings, channel_sections

log = logging.getLogger("gateway.subscriptions")

TIMEOUT_S = 15.0
"""Per provider call: a provider that does not answer in this long is reported unreachable."""


@dataclass(frozen=True)
class Row:
    """One account's outcome."""

    account: Account
    outcome: Subscription
    supported: bool = True
    """False: the provider has no subscription API (`outcome.detail` says where to set it)."""

    @property
    def name(self) -> str:
        return f"{self.account.channel}:{self.account.account_id}"

    @property
    def adapter(self) -> str:
        return self.account.adapter_name

    def good(self, action: Action | str) -> bool:
        if not self.supported:
            return True  # nothing the tool can do: not a failure
        if action in ("show", "verify"):
            return self.outcome.ok and self.outcome.subscribed is True
        return self.outcome.ok


class Webhooks:
    """Runs one action over accounts with one HTTP session."""

    def __init__(self, settings: Settings, session: aiohttp.ClientSession) -> None:
        self._settings = settings
        self._sections = channel_sections(settings)
        self._session = session
        self._answers: dict[tuple[str, str, str, str, str], tuple[int, bytes] | str] = {}
        """(method, url, query, body, headers) → the answer: a call made once per run (the
        numbers of one WhatsApp Business Account with one token share it)."""

    async def run(
        self, action: Action, accounts: Sequence[Account], base: str, drop_pending: bool = False
    ) -> list[Row]:
        return [await self.one(action, a, base, drop_pending) for a in accounts]

    async def one(self, action: Action, account: Account, base: str, drop: bool) -> Row:
        adapter = adapter_of(account)
        section = self._sections.get(adapter.name)
        try:
            call = adapter.subscription_call(section, account, action, base, drop)
        except ValueError as exc:  # the config lacks what the call needs: the key is named
            return Row(account, Subscription(False, str(exc)))
        if call is None:
            where = account.callback_url or f"{base}{adapter.webhook.path}"
            detail = f"no subscription API: point it at {where} in the provider's console"
            return Row(account, Subscription(False, detail), supported=False)
        answer = await self._call(call)
        if isinstance(answer, str):
            return Row(account, Subscription(False, answer))
        status, body = answer
        return Row(account, adapter.subscription(section, account, action, base, status, body))

    async def _call(self, call: ProviderCall) -> tuple[int, bytes] | str:
        """(status, body), or why no answer came (host only: the URL may hold a token)."""
        body = json.dumps(call.body) if call.body is not None else ""
        query = json.dumps(sorted(call.params.items()))
        key = (call.method, call.url, query, body, json.dumps(sorted(call.headers.items())))
        if key in self._answers:
            return self._answers[key]
        try:
            async with self._session.request(
                call.method,
                call.url,
                params=dict(call.params),
                json=call.body,
                headers=dict(call.headers),
                timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
            ) as resp:
                answer: tuple[int, bytes] | str = (resp.status, await resp.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            answer = f"cannot reach {_host(call.url)}: {_reason(exc)}"
        self._answers[key] = answer
        return answer

    async def verify(self, accounts: Sequence[Account], base: str) -> list[Row]:
        """The handshake through the public URL for channels that have one (once per
        channel), else `show`: does the provider deliver to this gateway?"""
        rows = []
        probed: dict[str, Subscription] = {}
        for account in accounts:
            adapter = adapter_of(account)
            challenge = secrets.token_hex(8)
            query = adapter.handshake_query(self._sections.get(adapter.name), challenge)
            if query is None:
                rows.append(await self.one("show", account, base, False))
                continue
            if adapter.name not in probed:
                probed[adapter.name] = await self._handshake(
                    f"{base}{adapter.webhook.path}", query, challenge
                )
            rows.append(Row(account, probed[adapter.name]))
        return rows

    async def _handshake(self, url: str, query: dict[str, str], challenge: str) -> Subscription:
        try:
            async with self._session.get(
                url, params=query, timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)
            ) as resp:
                status, text = resp.status, (await resp.read()).decode("utf-8", "replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Subscription(False, f"cannot reach {url}: {_reason(exc)}")
        if status == 200 and text == challenge:
            detail = f"{url} answers the platform's handshake (the challenge came back)"
            return Subscription(True, detail, subscribed=True, url=url)
        detail = (
            f"{url} answered {status} {text[:80]!r}, not the challenge: the platform would "
            "refuse this callback URL (wrong server.public_url, a proxy in the way, or another "
            "verify token)"
        )
        return Subscription(False, detail, subscribed=False, url=url)


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer in {TIMEOUT_S:g} s"
    text = str(exc).split(" [")[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class SubscriptionCheck:
    """Every `server.subscription_check_seconds`: `show` for each enabled account whose
    provider has a subscription API; `subscribed(channel, account_id, bool)` for each answer
    (a failed check leaves the gauge as it was, with a WARNING), and a WARNING for each
    account that is not subscribed, naming the command that restores it. The config and the
    accounts are asked for at each check (a reload changes them)."""

    def __init__(
        self,
        settings: Callable[[], Settings],
        accounts: Callable[[], Iterable[Account]],
        subscribed: Callable[[str, str, bool], None],
    ) -> None:
        self._settings = settings
        self._accounts = accounts
        self._subscribed = subscribed
        self._every_s = settings().server.subscription_check_seconds

    async def run(self) -> None:
        """Check at once, then every `subscription_check_seconds`, until cancelled."""
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("webhook subscription check failed; trying again next period")
            await asyncio.sleep(self._every_s)

    async def check(self) -> list[Row]:
        settings = self._settings()
        assert settings.server.public_url is not None  # the config check requires it
        base = settings.server.public_url.rstrip("/")
        accounts = [a for a in self._accounts() if a.enabled]
        async with aiohttp.ClientSession() as session:
            rows = await Webhooks(settings, session).run("show", accounts, base)
        for row in rows:
            if not row.supported:
                continue
            outcome = row.outcome
            if not outcome.ok or outcome.subscribed is None:
                log.warning(
                    "webhook subscription of %s not checked: %s",
                    row.name,
                    outcome.detail,
                    extra={"channel": row.account.channel, "account": row.account.account_id},
                )
                continue
            self._subscribed(row.account.channel, row.account.account_id, outcome.subscribed)
            if not outcome.subscribed:
                log.warning(
                    "webhook subscription of %s is gone: %s; `gateway webhooks set "
                    "--account %s` restores it",
                    row.name,
                    outcome.detail,
                    row.name,
                    extra={"channel": row.account.channel, "account": row.account.account_id},
                )
        return rows
