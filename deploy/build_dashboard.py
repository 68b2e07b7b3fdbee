"""Builds deploy/grafana/gateway.json, the gateway's Grafana dashboard, from the rows below.

    python3 deploy/build_dashboard.py           # (re)writes deploy/grafana/gateway.json
    python3 deploy/build_dashboard.py --check   # exit 1 if the file is not what this makes

Kept as code so every panel is laid out, labelled and filtered the same way; the JSON is
committed too, for importing without Python. tests/test_deploy.py checks that the file is
what this script makes, that every expression parses (promtool) and names only metrics the
gateway exports, and that each one returns series from a real Prometheus scraping a real
gateway. Standard library only: it runs without the project installed.

Two variables: `datasource` (any Prometheus) and `channel` (several, or All). Every panel of a
labelled metric filters on `channel=~"$channel"`; dead letters match the empty channel too,
since a command's letters have none. Quantities shared by every instance (the outbox, Redis
memory) are `max` over instances, never summed: each instance reads the same Redis.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

OUT: Final = Path(__file__).parent / "grafana" / "gateway.json"
CHANNELS: Final = ("whatsapp", "telegram", "messenger", "instagram", "twilio")
"""The `channel` label values of the webhook metrics: every adapter the gateway registers
(adapters.CHANNELS, Twilio included; a test keeps the two the same)."""
JOB: Final = "gateway"
"""The scrape job of the gateway's /metrics (deploy/prometheus/prometheus.example.yml)."""

DATASOURCE: Final = {"type": "prometheus", "uid": "${datasource}"}
CH: Final = 'channel=~"$channel"'
RATE: Final = "$__rate_interval"
WIDTH: Final = 24
"""Grafana's grid is 24 columns wide."""
HEIGHT: Final = 8


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False
    """An instant query shown as a table (a list of accounts), not a time series."""


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"
    """timeseries, stat (one number, 0 when the query finds nothing) or table."""
    width: int = 8
    red_from: float | None = None
    """Where the value turns red: a line on a time series, the colour of a stat."""


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


def q(expr: str, legend: str = "") -> Query:
    return Query(expr, legend)


def quantile(phi: float, metric: str, extra: str = "") -> str:
    """The `phi` quantile of a histogram per channel, over the rate interval."""
    matchers = f"{CH}, {extra}" if extra else CH
    return (
        f"histogram_quantile({phi}, sum by (channel, le) "
        f"(rate({metric}_bucket{{{matchers}}}[{RATE}])))"
    )


def per_s(metric: str, by: str, matchers: str = CH) -> str:
    return f"sum by ({by}) (rate({metric}{{{matchers}}}[{RATE}]))"


INSTANCES = Row(
    "Instances and readiness",
    (
        Panel(
            "Instances up",
            f"Gateway targets Prometheus scraped successfully (job `{JOB}`).",
            (q(f'sum(up{{job="{JOB}"}})'),),
            kind="stat",
            width=4,
        ),
        Panel(
            "Scrape up per instance",
            "1: /metrics answered at the last scrape; 0: down or unreachable (GatewayDown).",
            (q(f'up{{job="{JOB}"}}', "{{instance}}"),),
            width=10,
        ),
        Panel(
            "Draining",
            "1 after SIGTERM while the instance drains (/readyz answers 503); minutes of it "
            "mean a hung shutdown (GatewayDrainingStuck).",
            (q("max by (instance) (gateway_draining)", "{{instance}}"),),
            width=10,
        ),
    ),
)

INGRESS = Row(
    "Ingress: webhooks per channel",
    (
        Panel(
            "Webhooks answered",
            "Webhook requests answered, every status, per channel.",
            (q(per_s("gateway_http_requests_total", "channel"), "{{channel}}"),),
            unit="reqps",
        ),
        Panel(
            "Events published",
            "Events appended to the assistants' streams, per channel and kind.",
            (q(per_s("gateway_events_total", "channel, kind"), "{{channel}} {{kind}}"),),
            unit="ops",
        ),
        Panel(
            "Webhook latency (parse + publish)",
            "From the body read to the answer. Meta expects an answer within about 1 s "
            "(the red line; GatewayWebhookSlow); network time comes on top.",
            (
                q(quantile(0.5, "gateway_webhook_seconds"), "p50 {{channel}}"),
                q(quantile(0.99, "gateway_webhook_seconds"), "p99 {{channel}}"),
            ),
            unit="s",
            red_from=1.0,
        ),
        Panel(
            "Publish latency (Redis round trip)",
            "The part of the webhook latency spent making its events durable in Redis.",
            (
                q(quantile(0.5, "gateway_publish_seconds"), "p50 {{channel}}"),
                q(quantile(0.99, "gateway_publish_seconds"), "p99 {{channel}}"),
            ),
            unit="s",
            width=12,
        ),
        Panel(
            "Event types",
            "Published message events by type (text, image, ...; empty for kinds without one).",
            (
                q(
                    per_s("gateway_events_total", "channel, type", f'{CH}, kind="message"'),
                    "{{channel}} {{type}}",
                ),
            ),
            unit="ops",
            width=12,
        ),
    ),
)

ERRORS = Row(
    "HTTP errors: 4xx and 5xx",
    (
        Panel(
            "4xx answers",
            "Refusals: 401 a missing or wrong signature / secret token, 404 an unknown bot, "
            "413 a body over server.max_body_bytes.",
            (
                q(
                    per_s("gateway_http_requests_total", "channel, code", f'{CH}, code=~"4.."'),
                    "{{channel}} {{code}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "5xx answers",
            "503: Redis did not take the events (the platform retries) or too many bodies "
            "were being buffered.",
            (
                q(
                    per_s("gateway_http_requests_total", "channel, code", f'{CH}, code=~"5.."'),
                    "{{channel}} {{code}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "5xx share",
            "Share of each channel's webhooks answered 5xx (GatewayWebhook5xx over 1 %).",
            (
                q(
                    per_s("gateway_http_requests_total", "channel", f'{CH}, code=~"5.."')
                    + " / "
                    + per_s("gateway_http_requests_total", "channel"),
                    "{{channel}}",
                ),
            ),
            unit="percentunit",
            red_from=0.01,
        ),
        Panel(
            "Signature failures",
            "Webhooks refused for a missing or wrong signature: a rotated app secret or bot "
            "secret_token not yet in the config, or someone probing the URL.",
            (q(per_s("gateway_signature_failures_total", "channel"), "{{channel}}"),),
            unit="reqps",
            width=24,
        ),
    ),
)

DUPLICATES: Final = per_s("gateway_duplicates_total", "channel")

DEDUP = Row(
    "Dedup: redeliveries",
    (
        Panel(
            "Duplicates dropped",
            "Events the platform delivered again and the gateway did not publish twice.",
            (q(per_s("gateway_duplicates_total", "channel, kind"), "{{channel}} {{kind}}"),),
            unit="ops",
            width=12,
        ),
        Panel(
            "Duplicate share",
            "Duplicates among all events received: high after an outage (the platforms "
            "retry what was not answered 200) or when answers are too slow.",
            (
                q(
                    f"{DUPLICATES} / ({DUPLICATES} + {per_s('gateway_events_total', 'channel')})",
                    "{{channel}}",
                ),
            ),
            unit="percentunit",
            width=12,
        ),
    ),
)

DEADLETTERS_CH = 'channel=~"$channel|"'
"""Dead letters of commands carry no channel: they show under every choice of channel."""

DEADLETTERS = Row(
    "Dead letters (gw:deadletter)",
    (
        Panel(
            "Dead letters by reason",
            "Entries written to gw:deadletter (GatewayDeadLetters). An empty channel: a "
            "command's letter (invalid_command, unknown_conversation, max_deliveries, "
            "internal_error).",
            (
                q(
                    per_s("gateway_deadletters_total", "channel, reason", DEADLETTERS_CH),
                    "{{channel}} {{reason}}",
                ),
            ),
            unit="ops",
            width=16,
        ),
        Panel(
            "Dead letters in the time range",
            "How many letters each reason wrote over the dashboard's time range.",
            (
                Query(
                    "sum by (reason) "
                    f"(increase(gateway_deadletters_total{{{DEADLETTERS_CH}}}[$__range]))",
                    "{{reason}}",
                    instant=True,
                ),
            ),
            kind="table",
        ),
    ),
)

OUTBOX = Row(
    "Outbox (gw:outbox): lag and pending",
    (
        Panel(
            "Outbox entries",
            "length: entries not yet trimmed; pending: read, not yet acknowledged (in flight, "
            "most waiting for a rate-limit slot); waiting: the rest, unread or acknowledged "
            "less than outbound.trim_interval_seconds ago (GatewayOutboxLagGrowing).",
            (
                q("max(gateway_outbox_length)", "length"),
                q("max(gateway_outbox_pending)", "pending"),
                q("max(gateway_outbox_length) - max(gateway_outbox_pending)", "waiting"),
            ),
        ),
        Panel(
            "Oldest unacknowledged command",
            "Age of the oldest command read and not yet acknowledged (GatewayOutboxStuck over "
            "10 minutes).",
            (q("max(gateway_outbox_oldest_pending_seconds)", "oldest pending"),),
            unit="s",
            red_from=600,
        ),
        Panel(
            "Trimmed",
            "Entries deleted once every consumer group had finished with them; none while "
            "the outbox grows means a group that reads and never acknowledges.",
            (q(f"sum(rate(gateway_outbox_trimmed_total[{RATE}]))", "trimmed"),),
            unit="ops",
        ),
    ),
)

NOT_SENT: Final = f'{CH}, outcome!="sent"'

DELIVERIES = Row(
    "Deliveries: outcome and reason",
    (
        Panel(
            "Commands finished by outcome",
            "Every command ends in one delivery event: sent, failed or rejected.",
            (q(per_s("gateway_sends_total", "channel, outcome"), "{{channel}} {{outcome}}"),),
            unit="ops",
        ),
        Panel(
            "Not sent, by reason",
            "window_closed, rate_limited, human_active, opted_out, provider_error, ...",
            (
                q(
                    per_s("gateway_sends_total", "channel, outcome, reason", NOT_SENT),
                    "{{channel}} {{outcome}} {{reason}}",
                ),
            ),
            unit="ops",
        ),
        Panel(
            "Provider errors by code",
            "Error answers from the Graph / Bot API (retried or final); `none`: no code, "
            "e.g. a network error.",
            (q(per_s("gateway_provider_errors_total", "channel, code"), "{{channel}} {{code}}"),),
            unit="ops",
        ),
        Panel(
            "Sent by command type",
            "Commands sent, per channel and type.",
            (
                q(
                    per_s("gateway_sends_total", "channel, type", f'{CH}, outcome="sent"'),
                    "{{channel}} {{type}}",
                ),
            ),
            unit="ops",
            width=24,
        ),
    ),
)

WAITS: Final = per_s("gateway_limiter_wait_seconds_count", "channel")
NO_WAIT: Final = per_s("gateway_limiter_wait_seconds_bucket", "channel", f'{CH}, le="0.0"')
"""Commands admitted with no wait: prometheus_client writes the 0 bound as le="0.0"."""

RATE_LIMITS = Row(
    "Rate limits: waits for a send slot",
    (
        Panel(
            "Limiter wait",
            "How long commands waited for their number's (and contact's / chat's) slot.",
            (
                q(quantile(0.5, "gateway_limiter_wait_seconds"), "p50 {{channel}}"),
                q(quantile(0.99, "gateway_limiter_wait_seconds"), "p99 {{channel}}"),
            ),
            unit="s",
        ),
        Panel(
            "Commands that had to wait",
            "Commands whose slot was not free at once, per second (all commands: the count).",
            (
                q(f"{WAITS} - {NO_WAIT}", "waited {{channel}}"),
                q(per_s("gateway_limiter_wait_seconds_count", "channel"), "all {{channel}}"),
            ),
            unit="ops",
        ),
        Panel(
            "Rejected: rate limited, and late dispatches",
            "rate_limited: the slot was more than policy.send_wait_max_seconds away. Late: a "
            "send that gave its slot back because its process resumed too late (a busy or "
            "oversubscribed machine).",
            (
                q(
                    per_s("gateway_sends_total", "channel", f'{CH}, reason="rate_limited"'),
                    "rate_limited {{channel}}",
                ),
                q(per_s("gateway_late_dispatches_total", "channel"), "late {{channel}}"),
            ),
            unit="ops",
        ),
    ),
)

HALTED: Final = f"max by (channel, account) (gateway_account_halted{{{CH}}}) > 0"
DISCONNECTED: Final = f"min by (channel, account) (gateway_account_connected{{{CH}}}) == 0"
UNSUBSCRIBED: Final = f"min by (channel, account) (gateway_webhook_subscribed{{{CH}}}) == 0"

ACCOUNTS = Row(
    "Accounts: halted, disconnected, unsubscribed",
    (
        Panel(
            "Halted",
            "Numbers and bots stopped by a credential or account error until the gateway "
            "restarts or `gateway accounts clear-halt` (GatewayAccountHalted).",
            (q(f"count({HALTED})"),),
            kind="stat",
            width=4,
            red_from=1,
        ),
        Panel(
            "Halted accounts",
            "Which ones; the error code is in /readyz and the log.",
            (Query(HALTED, instant=True),),
            kind="table",
        ),
        Panel(
            "Disconnected",
            "Numbers an account event disconnected (GatewayAccountDisconnected).",
            (q(f"count({DISCONNECTED})"),),
            kind="stat",
            width=4,
            red_from=1,
        ),
        Panel(
            "Disconnected numbers",
            "Which ones; the account event in the assistant's inbox says why.",
            (Query(DISCONNECTED, instant=True),),
            kind="table",
        ),
        Panel(
            "Connection per account",
            "1 connected, 0 disconnected (the lowest over instances).",
            (
                q(
                    f"min by (channel, account) (gateway_account_connected{{{CH}}})",
                    "{{channel}} {{account}}",
                ),
            ),
            width=24,
        ),
        Panel(
            "Unsubscribed",
            "Accounts whose provider no longer delivers their webhooks to the gateway, by the "
            "scheduled check (server.subscription_check_seconds; GatewayWebhookUnsubscribed).",
            (q(f"count({UNSUBSCRIBED})"),),
            kind="stat",
            width=4,
            red_from=1,
        ),
        Panel(
            "Unsubscribed accounts",
            "Which ones; `gateway webhooks show` says why, `gateway webhooks set` restores them.",
            (Query(UNSUBSCRIBED, instant=True),),
            kind="table",
        ),
        Panel(
            "Subscription per account",
            "1 subscribed, 0 not (no series: the check is off, or has not answered yet).",
            (
                q(
                    f"min by (channel, account) (gateway_webhook_subscribed{{{CH}}})",
                    "{{channel}} {{account}}",
                ),
            ),
            width=12,
        ),
    ),
)

HISTORY = Row(
    "History sync and Business app silence (WhatsApp coexistence)",
    (
        Panel(
            "History sync progress",
            "The last HISTORY_PROGRESS per number, 0-100 (100: done).",
            (q("max by (account) (gateway_history_sync_progress)", "{{account}}"),),
            unit="percent",
            width=12,
        ),
        Panel(
            "History events published",
            "Events appended to gw:history:<assistant>.",
            (
                q(
                    per_s("gateway_events_total", "channel", f'{CH}, kind="history"'),
                    "{{channel}}",
                ),
            ),
            unit="ops",
            width=12,
        ),
        Panel(
            "Business app silence per number",
            "Time since the WhatsApp Business app on each coexistence number's phone last showed "
            "a sign of life (an echo, a contact sync, the onboarding). Meta cuts the number off "
            "after about 14 days (whatsapp.app_idle_cutoff_days); the gateway publishes a "
            "BUSINESS_APP_INACTIVE account event at whatsapp.app_idle_warn_days (red line: "
            "10 days, GatewayBusinessAppIdle).",
            (q("max by (account) (gateway_business_app_idle_seconds)", "{{account}}"),),
            unit="s",
            width=24,
            red_from=864000,
        ),
    ),
)

REDIS = Row(
    "Redis: errors and memory",
    (
        Panel(
            "Redis errors",
            "Failed publishes (the webhook got 503) and readiness PINGs (/readyz 503) "
            "(GatewayRedisErrors).",
            (
                q(
                    f"sum by (instance, operation) (rate(gateway_redis_errors_total[{RATE}]))",
                    "{{instance}} {{operation}}",
                ),
            ),
            unit="ops",
        ),
        Panel(
            "Redis memory",
            "used_memory and maxmemory (not drawn when Redis has no limit; on a cluster, of "
            "the fullest master).",
            (
                q("max(gateway_redis_memory_used_bytes)", "used"),
                q("max(gateway_redis_maxmemory_bytes) > 0", "maxmemory"),
            ),
            unit="bytes",
        ),
        Panel(
            "Redis memory fill",
            "used / maxmemory: with noeviction a full Redis refuses writes and webhooks get "
            "503 (GatewayRedisMemoryHigh over 90 %).",
            (
                q(
                    "max(gateway_redis_memory_used_bytes / (gateway_redis_maxmemory_bytes > 0))",
                    "fill",
                ),
            ),
            unit="percentunit",
            red_from=0.9,
        ),
    ),
)

JOURNAL = Row(
    "Journal: Twilio webhooks kept on disk while Redis is down",
    (
        Panel(
            "Journal: webhooks kept, refused, replayed",
            "Webhooks of providers that never redeliver (Twilio) that Redis could not take: "
            "kept on disk and answered 200, refused by the journal too (full or a failing "
            "disk: answered 503 and lost), and replayed (published from the journal once "
            "Redis answered).",
            (
                q(
                    per_s("gateway_journal_webhooks_total", "channel, outcome"),
                    "{{channel}} {{outcome}}",
                ),
            ),
            unit="ops",
            width=16,
        ),
        Panel(
            "Journal: bytes waiting",
            "What waits on disk to be published, per instance (summed over its workers); "
            "held for minutes means Redis has been unavailable that long "
            "(GatewayJournalHolding). server.journal_max_bytes bounds each process.",
            (q("sum by (instance) (gateway_journal_bytes)", "{{instance}}"),),
            unit="bytes",
        ),
    ),
)

NOTICES = Row(
    "Escalation notices (gw:notifications)",
    (
        Panel(
            "Notices written, by reason",
            "Handoffs, echo takeovers, escalate commands and reminders written to "
            "gw:notifications (published), or not (lost: Redis failed when the notice was "
            "written, or too many echo takeovers were waiting; the webhook or command itself "
            "was not affected).",
            (
                q(
                    per_s("gateway_notifications_total", "reason, outcome", ""),
                    "{{reason}} {{outcome}}",
                ),
            ),
            unit="ops",
            width=12,
        ),
        Panel(
            "Notices delivered, by target",
            "Per target kind (webhook, the staff chat): delivered, or failed (retried "
            "notifications.max_attempts times or refused for good, then dead-lettered as "
            "notification_failed: GatewayDeadLetters).",
            (
                q(
                    per_s("gateway_notification_deliveries_total", "target, outcome", ""),
                    "{{target}} {{outcome}}",
                ),
            ),
            unit="ops",
            width=12,
        ),
    ),
)

MEDIA_CH = 'channel=~"$channel|"'
"""A media request that named no configured conversation has no channel: shown under every
choice of channel."""

MEDIA = Row(
    "Media endpoint: downloads for backends",
    (
        Panel(
            "Media requests by outcome",
            "GET /v1/media answers per channel: ok (streamed whole), refusals (unauthorized, "
            "forbidden, unknown_conversation, invalid, not_found: expired at the provider, "
            "too_large: over media.max_bytes) and failures (provider_error, timeout, "
            "interrupted: cut off while streaming). The channel is empty for a request that "
            "named no configured conversation.",
            (
                q(
                    per_s("gateway_media_requests_total", "channel, outcome", MEDIA_CH),
                    "{{channel}} {{outcome}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Media not served",
            "Every answer but ok, per second: many unauthorized or forbidden means a backend "
            "with a wrong or another assistant's key; provider_error and timeout, the provider "
            "failing; not_found, backends asking for media after the provider dropped it.",
            (
                q(
                    per_s(
                        "gateway_media_requests_total",
                        "channel, outcome",
                        f'{MEDIA_CH}, outcome!="ok"',
                    ),
                    "{{channel}} {{outcome}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Media bytes streamed",
            "Bytes per second streamed from the providers to backends, per channel.",
            (q(per_s("gateway_media_bytes_total", "channel"), "{{channel}}"),),
            unit="Bps",
        ),
    ),
)

ROWS: Final = (
    INSTANCES,
    INGRESS,
    ERRORS,
    DEDUP,
    DEADLETTERS,
    OUTBOX,
    DELIVERIES,
    RATE_LIMITS,
    ACCOUNTS,
    HISTORY,
    REDIS,
    JOURNAL,
    NOTICES,
    MEDIA,
)


def thresholds(red_from: float | None) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if red_from is not None:
        steps.append({"color": "red", "value": red_from})
    return {"mode": "absolute", "steps": steps}


def target(query: Query, ref: str) -> dict[str, Any]:
    found: dict[str, Any] = {
        "datasource": DATASOURCE,
        "expr": query.expr,
        "legendFormat": query.legend or "__auto",
        "refId": ref,
    }
    if query.instant:
        found.update(instant=True, range=False, format="table")
    else:
        found.update(instant=False, range=True)
    return found


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit, "thresholds": thresholds(panel.red_from)}
    found: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": HEIGHT, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "targets": [target(query, chr(ord("A") + i)) for i, query in enumerate(panel.queries)],
    }
    if panel.kind == "timeseries":
        defaults["color"] = {"mode": "palette-classic"}
        defaults["custom"] = {
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "thresholdsStyle": {"mode": "line" if panel.red_from is not None else "off"},
        }
        found["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif panel.kind == "stat":
        defaults["noValue"] = "0"  # count() of nothing is no series: none halted
        defaults["color"] = {"mode": "thresholds"}
        found["options"] = {
            "colorMode": "background",
            "graphMode": "none",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        }
    else:
        found["options"] = {"showHeader": True}
        found["transformations"] = [
            {"id": "organize", "options": {"excludeByName": {"Time": True}}}
        ]
    return found


def panels() -> list[dict[str, Any]]:
    """Each row: a row header, then its panels left to right, wrapping at the grid's width."""
    found: list[dict[str, Any]] = []
    y = 0
    for row in ROWS:
        found.append(row_json(row, len(found) + 1, y))
        y += 1
        x = 0
        for panel in row.panels:
            if x + panel.width > WIDTH:
                x, y = 0, y + HEIGHT
            found.append(panel_json(panel, len(found) + 1, x, y))
            x += panel.width
        y += HEIGHT
    return found


def row_json(row: Row, panel_id: int, y: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "row",
        "title": row.title,
        "collapsed": False,
        "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": y},
        "panels": [],
    }


def variables() -> list[dict[str, Any]]:
    options = [{"selected": True, "text": "All", "value": "$__all"}]
    options += [{"selected": False, "text": c, "value": c} for c in CHANNELS]
    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
            "regex": "",
            "options": [],
        },
        {
            "name": "channel",
            "label": "Channel",
            "type": "custom",
            "query": ",".join(CHANNELS),
            "multi": True,
            "includeAll": True,
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "hide": 0,
            "options": options,
        },
    ]


def dashboard() -> dict[str, Any]:
    return {
        "uid": "wa-tg-gateway",
        "title": "Webhook gateway",
        "description": "WhatsApp / Telegram / Messenger / Instagram webhook gateway: one row "
        "per concern. Made by deploy/build_dashboard.py; alerts in "
        "deploy/prometheus/alerts.yml, runbooks in deploy/README.md.",
        "tags": ["gateway", *CHANNELS],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": variables()},
        "panels": panels(),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is not what {Path(__file__).name} makes: run it", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
