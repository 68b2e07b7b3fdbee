"""Per-number gauges: connected, halted, history sync progress, the silence of the owner's
own app. Both paths move them: the inbound one from account events, the outbound one from
send results and Redis state (router/upkeep.py for the app's silence).

`account` label values are configured numbers and bots (config.yaml), never contacts.
"""

from __future__ import annotations

import contextlib
from typing import Final

from prometheus_client import CollectorRegistry, Gauge

from adapters.schema import AccountEvent
from gateway.scrape import CONNECTED_MODE, HALTED_MODE, PROGRESS_MODE, SUBSCRIBED_MODE

APP_IDLE_MODE: Final = "mostrecent"
"""Across worker processes: every worker measures the same Redis state; the newest reading
is the truth (gateway/scrape.py)."""


class AccountGauges:
    """The gauges of each configured number or bot."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.account_connected = Gauge(
            "gateway_account_connected",
            "1 while a number is connected, 0 after an account event that disconnected it",
            ["channel", "account"],
            registry=r,
            multiprocess_mode=CONNECTED_MODE,
        )
        self.history_progress = Gauge(
            "gateway_history_sync_progress",
            "Coexistence history sync progress per number, 0-100 (100: done)",
            ["account"],
            registry=r,
            multiprocess_mode=PROGRESS_MODE,
        )
        self.webhook_subscribed = Gauge(
            "gateway_webhook_subscribed",
            "1 while the provider delivers the account's webhooks to this gateway, 0 once it "
            "does not (server.subscription_check_seconds; Meta unsubscribes after failed "
            "deliveries)",
            ["channel", "account"],
            registry=r,
            multiprocess_mode=SUBSCRIBED_MODE,
        )
        self.business_app_idle = Gauge(
            "gateway_business_app_idle_seconds",
            "Seconds since the owner's Business app on a coexistence number last showed a "
            "sign of life (an echo, a contact sync, the onboarding); the number is cut off "
            "after about 14 days of it (app_idle_cutoff_days)",
            ["account"],
            registry=r,
            multiprocess_mode=APP_IDLE_MODE,
        )
        self.account_halted = Gauge(
            "gateway_account_halted",
            "1 while a number or bot is stopped by a credential or account error",
            ["channel", "account"],
            registry=r,
            multiprocess_mode=HALTED_MODE,
        )

    def app_idle(self, channel: str, account_id: str, idle_s: float | None) -> None:
        """Seconds since the last sign of life of the owner's app; None: not watched (any
        more), the series goes."""
        if idle_s is not None:
            self.business_app_idle.labels(account_id).set(idle_s)
            return
        with contextlib.suppress(KeyError):  # never set in this process
            self.business_app_idle.remove(account_id)

    def subscribed(self, channel: str, account_id: str, subscribed: bool) -> None:
        self.webhook_subscribed.labels(channel, account_id).set(1 if subscribed else 0)

    def connected(self, channel: str, account_id: str, connected: bool) -> None:
        self.account_connected.labels(channel, account_id).set(1 if connected else 0)

    def halted(self, channel: str, account_id: str, code: str | None) -> None:
        """`code`: the provider code that halted it; None: not halted (any more)."""
        self.account_halted.labels(channel, account_id).set(0 if code is None else 1)

    def account_event(self, channel: str, event: AccountEvent) -> None:
        """What a published account event says about its number."""
        if event.connected is not None:
            self.connected(channel, event.account_id, event.connected)
        progress = event.detail.get("progress")
        if event.event == "HISTORY_PROGRESS" and isinstance(progress, int | float):
            self.history_progress.labels(event.account_id).set(progress)
