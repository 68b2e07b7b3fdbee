"""The sender: one command → one provider request, built once → send → classify → apply, with
retries (CONTRACT §3, "provider errors are classified").

The request is built before any rate-limit slot is taken, from the command and what the
ledger's claim read of the conversation (its last inbound message, which typing/read mark,
and its route): an invalid command is rejected without spending a slot, and every attempt
sends the same request. Each attempt takes its own slot (`Pacing.admit`) and passes the last
check (`Pacing.presend`, which marks the record `sending`) right before the POST. The channel
classifies the answer; `_apply` turns it into the command's end or a retry, with the side
effects the answer calls for: an opt-out, a country block, a halted account, a held-back
recipient. Retryable answers back off `base × 2^(n-1)`, capped, ± jitter.
"""

from __future__ import annotations

import asyncio
import logging
import random

import aiohttp

from adapters import HttpRequest
from adapters.schema import EFFECT_VERDICTS, Command, InvalidCommand, SendResult
from router import effects, scripts
from router.client import RedisClient, scripts_of
from router.ledger import Claim, Ledger, Result
from router.observer import OutboundObserver
from router.pacing import Pacing
from router.settings import OutboundSettings, PolicySettings
from router.target import Target

log = logging.getLogger("gateway.outbound")

DETAIL_CHARS = 300
"""How much of an invalid command's reason its delivery carries."""

_STAND_IN = "stand-in.message-id"
"""A message id for the one question asked of an invalid request when the conversation has
no last inbound message: would it be valid with one (then the policy decides first)."""


class Sender:
    """Sends commands through their channel, within the pacing, with retries."""

    def __init__(
        self,
        redis: RedisClient,
        session: aiohttp.ClientSession,
        api_bases: dict[str, str],
        pacing: Pacing,
        ledger: Ledger,
        settings: tuple[OutboundSettings, PolicySettings],
        observer: OutboundObserver,
    ) -> None:
        outbound, policy = settings
        self._redis = redis
        self._session = session
        self._api = api_bases
        self._pacing = pacing
        self._ledger = ledger
        self._retry = outbound.retry
        self._timeout = aiohttp.ClientTimeout(total=outbound.request_timeout_seconds)
        self._policy = policy
        self._observer = observer
        self._verdict = scripts.load(scripts_of(redis), "verdict")

    async def send(self, claim: Claim, command: Command, wait_until: float) -> Result:
        """Send the command, retrying as its answers allow; its end as a Result."""
        request = await self.build(claim, command, wait_until)
        if not isinstance(request, HttpRequest):
            return request
        last: SendResult | None = None
        for attempt in range(1, self._retry.max_attempts + 1):
            ended = await self._take_slot(claim, command, wait_until)
            if ended is not None:
                return ended
            last = await self.call(claim.target, request)
            outcome = await self.apply(claim.target, last, attempt)
            if outcome is not None:
                return outcome
            await self._ledger.waiting(claim)
            await asyncio.sleep(self.backoff(attempt, last))
        return _failed(claim.target, "provider_error", last)

    async def build(
        self, claim: Claim, command: Command, wait_until: float
    ) -> HttpRequest | Result:
        """The request, or the command's end: `rejected/invalid_command`, decided before any
        slot is taken; except for a request that lacks only a message to mark (typing/read
        before the contact wrote), where the policy's verdict comes first."""
        try:
            return self._request(claim, command, claim.last_inbound)
        except InvalidCommand as exc:
            if claim.last_inbound is None and self._valid_with_last_inbound(claim, command):
                # It lacks only a message to mark: the policy decides first, as it would
                # for a conversation whose window never opened.
                decision = await self._pacing.admit(claim, command, wait_until)
                if isinstance(decision, Result):
                    return decision
            log.info(
                "command %s is invalid: %s",
                claim.command_id,
                exc,
                extra={"command_id": claim.command_id, **claim.target.log_fields},
            )
            # The reason goes to the writer too (`detail`): it names the rule, never a token.
            return Result("rejected", "invalid_command", detail=str(exc)[:DETAIL_CHARS])

    def _valid_with_last_inbound(self, claim: Claim, command: Command) -> bool:
        try:
            self._request(claim, command, command.reply_to or _STAND_IN)
        except InvalidCommand:
            return False
        return True

    async def control(self, claim: Claim, command: Command) -> Result | None:
        """The provider call of a `handoff`/`handback` on channels that make one
        (`Channel.control`), retried as its answers allow; None when there is none or it
        succeeded (then the pause is changed), else the command's end. It sends no message,
        so it takes no rate-limit slot."""
        target = claim.target
        request = target.adapter.control(
            target.account, self._api[target.adapter.name], command, target.address
        )
        if request is None:
            return None
        last: SendResult | None = None
        for attempt in range(1, self._retry.max_attempts + 1):
            last = await self.call(target, request)
            outcome = await self.apply(target, last, attempt)
            if outcome is not None:
                return None if outcome.outcome == "sent" else outcome
            await asyncio.sleep(self.backoff(attempt, last))
        return _failed(target, "provider_error", last)

    def _request(self, claim: Claim, command: Command, last_inbound: str | None) -> HttpRequest:
        target = claim.target
        api_base = self._api[target.adapter.name]
        return target.adapter.request(
            target.account, api_base, command, target.address, last_inbound, claim.route
        )

    async def _take_slot(self, claim: Claim, command: Command, wait_until: float) -> Result | None:
        """Wait for a slot and pass the last check; a Result ends the command."""
        decision = await self._pacing.admit(claim, command, wait_until)
        if isinstance(decision, Result):
            return decision
        self._observer.waited(claim.target.channel, decision.wait_s)
        if decision.wait_s > 0:
            await asyncio.sleep(decision.wait_s)
        return await self._pacing.presend(claim, command)

    async def call(self, target: Target, request: HttpRequest) -> SendResult:
        """POST the request; the channel classifies the answer (network errors: retry)."""
        try:
            form, json = (request.body, None) if request.form else (None, request.body)
            async with self._session.post(
                request.url, headers=request.headers, timeout=self._timeout, data=form, json=json
            ) as resp:
                answer = await resp.read()
                return target.adapter.classify(resp.status, answer, resp.headers)
        except TimeoutError:
            detail = f"network: no answer within {self._timeout.total:g} s"
            return SendResult(verdict="retry", detail=detail)
        except aiohttp.ClientError as exc:
            # The URL may hold the account's token: `_failed` takes it out of the text.
            return SendResult(verdict="retry", detail=f"network: {type(exc).__name__}: {exc}")

    async def apply(self, target: Target, result: SendResult, attempt: int) -> Result | None:
        """Turn a classified answer into the command's end, or None to retry."""
        code = result.provider_code
        if result.verdict != "sent":
            self._observer.provider_error(target.channel, code)
        match result.verdict:
            case "sent":
                return Result("sent", None, None, result.message_id)
            case "retry" | "retry_recipient" | "retry_account" if (
                attempt < self._retry.max_attempts
            ):
                await self._hold_recipient(target, result, attempt)
                return None
            case "opted_out":
                await self._mark(target, result)
                return _failed(target, "opted_out", result)
            case "country_blocked":
                await self._mark(target, result)
                return _failed(target, "cross_country", result)
            case "halt":
                await self._halt(target, result)
            case "held" | "undeliverable" | "window_closed":
                # Permanent for this message (`provider_error` with the code, as before); the
                # mark refuses the next commands the answer says cannot go either.
                await self._mark(target, result)
        return _failed(target, "provider_error", result)

    async def _mark(self, target: Target, result: SendResult) -> None:
        """What the answer means beyond this send (router/effects.py, effect.lua): the same
        mark a failed status webhook with this code leaves."""
        if result.verdict not in EFFECT_VERDICTS:
            return
        account = target.account
        found = effects.mark(
            self._policy, result.verdict, target.inbox, account.channel, account.account_id,
            target.address,
        )  # fmt: skip
        if found is None:
            return
        ttl = self._ledger.conversation_ttl_s if found.conversation else 0
        code = result.provider_code or 0
        await self._verdict(keys=[found.key], args=[result.verdict, code, found.hold_s, ttl])

    async def _halt(self, target: Target, result: SendResult) -> None:
        code, account_id = result.provider_code, target.account.account_id
        await self._mark(target, result)
        self._observer.halted(target.channel, account_id, str(code))
        log.error(
            "%s account %s halted by provider error %s: %s",
            target.channel,
            account_id,
            code,
            result.detail,
            extra=target.log_fields,
        )

    async def _hold_recipient(self, target: Target, result: SendResult, attempt: int) -> None:
        """Push the recipient's (or chat's) limiter into the future the provider asked for;
        for `retry_account`, the account's own limiter, so none of its sends calls the
        provider meanwhile (Meta lengthens a Page's block while it goes on calling)."""
        if result.verdict == "retry_account":
            await self._pacing.hold(target, result.retry_after_s or self._delay(attempt), True)
        elif result.verdict == "retry_recipient":
            await self._pacing.hold(target, self._retry.pair_base_seconds**attempt)
        elif result.retry_after_s:
            await self._pacing.hold(target, result.retry_after_s)

    def backoff(self, attempt: int, result: SendResult | None) -> float:
        """Seconds before the next attempt (0 when a limiter holds it back instead)."""
        if result is not None and (
            result.verdict in ("retry_recipient", "retry_account") or result.retry_after_s
        ):
            return 0.0
        return self._delay(attempt)

    def _delay(self, attempt: int) -> float:
        """The retry schedule's wait before attempt `attempt + 1`, with its jitter."""
        r = self._retry
        base = min(r.max_seconds, r.base_seconds * 2.0 ** (attempt - 1))
        return base * (1 + random.uniform(-r.jitter, r.jitter))


DETAIL_MAX = 500


def _failed(target: Target, reason: str, last: SendResult | None) -> Result:
    """A failed end, with the last answer's code and why in words (the account's token,
    which a provider URL in an error text may hold, taken out)."""
    if last is None:
        return Result("failed", reason, detail="not sent")
    token = target.account.token

    def said(text: str | None) -> str | None:
        if not text:
            return None
        return (text.replace(token, "<redacted>") if token else text)[:DETAIL_MAX]

    return Result(
        "failed",
        reason,
        last.provider_code,
        None,
        said(last.detail),
        provider_title=said(last.provider_title),
        provider_detail=said(last.provider_detail),
        fbtrace_id=said(last.fbtrace_id),
        description=said(last.description),
    )
