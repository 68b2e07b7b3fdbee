"""deploy/: the Grafana dashboard and the Prometheus alert rules, with the real tools.

promtool checks the rules, runs their unit tests (deploy/prometheus/alerts_test.yml) and
parses every dashboard expression; then a real Prometheus scrapes a real gateway (`python -m
gateway serve`) that took webhooks on all four channels, sent commands to the fake provider
APIs and lived through a Redis stall (a Twilio webhook kept in its journal meanwhile, and
replayed), and answers every dashboard query with series.

The binaries come from Debian's `prometheus` package (scripts/test installs it as root).
Without them these tests fail, unless GATEWAY_TESTS_WITHOUT_PROMETHEUS=1 says to skip them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import PIPE, STDOUT
from types import ModuleType
from typing import Any

import aiohttp
import pytest
import yaml
from redis.asyncio import Redis

import adapters
from gateway.embedded import EmbeddedRedis, free_port
from gateway.metrics import Metrics
from gateway_demo.standins.bot_api import FakeBotAPI
from gateway_demo.standins.graph_api import FakeGraphAPI
from tests.conftest import (
    BOT_1,
    IG_A,
    INSTAGRAM_SECRET,
    MESSENGER_SECRET,
    NUMBER_A,
    NUMBER_B,
    PAGE_A,
    TEST_CONFIG,
    TWILIO_A,
    TWILIO_SID,
    UNREACHABLE,
    change,
    envelope,
    meta_headers,
    stream,
    text_message,
    tg_headers,
    twilio_post,
    wa_body,
    wa_headers,
)
from tests.stall import redis_stalled

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.example.yml"
DASHBOARD = DEPLOY / "grafana" / "gateway.json"
SKIP_ENV = "GATEWAY_TESTS_WITHOUT_PROMETHEUS"

GRAFANA_VARIABLES = {"$channel": ".*", "$__rate_interval": "1m", "$__range": "5m"}
"""What Grafana puts in place of the dashboard's variables: every channel ("All"), and
windows that hold several of the test's 1 s scrapes."""

ALLOWED_EMPTY = {
    "gateway_late_dispatches_total": "counts a send whose process resumed more than half of "
    "policy.limiter_guard_ms after its dispatch check: the event loop has to stall at that "
    "moment, which this test cannot bring about on purpose",
}
"""Dashboard queries that may find no series here, by a metric they read, and why."""

EXPECTED_ALERTS = {
    "GatewayAccountHalted",
    "GatewayAccountDisconnected",
    "GatewayDeadLetters",
    "GatewayWebhookUnsubscribed",
}
"""Alerts the traffic below raises (firing, or pending for their `for:`) in the real
Prometheus."""

BOT_1_TOKEN = f"{BOT_1}:AAHtesttokenaaaaaaaaaaaaaaaaaaaaaaa"
TG_CHAT = 123456789
CONTACT = "5511987650000"
"""Writes to NUMBER_A first, so replies to it are inside the 24-hour window."""
TEMPLATE = {"name": "order_ready", "language": "en_US", "components": [], "category": "utility"}


def tool(name: str) -> str:
    """The binary on PATH; missing, the test fails (or skips, when told to)."""
    found = shutil.which(name)
    if found:
        return found
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{name} is not installed and {SKIP_ENV}=1")
    pytest.fail(
        f"{name} is not on PATH: apt-get install prometheus (scripts/test does it when run as "
        f"root), or set {SKIP_ENV}=1 to skip the deploy/ tests"
    )


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False)


# --- PromQL as text: which metrics an expression reads, with which matchers --------------------

_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "offset", "bool"}
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_SELECTOR = re.compile(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(?![\w:])(\s*\{[^}]*\})?")


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric name, its `{...}` or "") for each vector selector of `expr`. Grouping clauses
    and ranges are blanked out first; a name followed by `(` is a function or aggregation."""
    blank = _GROUPING.sub(lambda m: " " * len(m[0]), expr)
    blank = re.sub(r"\[[^\]]*\]", lambda m: " " * len(m[0]), blank)
    found = []
    for m in _SELECTOR.finditer(blank):
        name, matchers = m[1], m[2] or ""
        if name in _KEYWORDS or (not matchers and blank[m.end() :].lstrip().startswith("(")):
            continue
        found.append((name, matchers))
    return found


def exported() -> dict[str, tuple[str, ...]]:
    """Every series name the gateway exports (prometheus_client adds _total, _bucket, ...),
    with its labels; and `up`, which Prometheus adds to every target."""
    metrics = Metrics()
    names: dict[str, tuple[str, ...]] = {"up": ("instance", "job")}
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}
    by_name = metrics.registry._names_to_collectors  # prometheus_client has no public lookup
    for family in metrics.registry.collect():
        labels = tuple(by_name[family.name]._labelnames)  # type: ignore[attr-defined]
        for suffix in suffixes[family.type]:
            names[family.name + suffix] = labels + (("le",) if suffix == "_bucket" else ())
    return names


# --- the dashboard as shipped -------------------------------------------------------------


@functools.cache
def generator() -> ModuleType:
    """deploy/build_dashboard.py, a script rather than a package module, loaded by path."""
    spec = importlib.util.spec_from_file_location("build_dashboard", DEPLOY / "build_dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def expressions() -> list[tuple[str, str]]:
    """(panel title and refId, expression) of every query on the dashboard."""
    return [
        (f"{panel['title']} {target['refId']}", target["expr"])
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def substituted(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a variable the test does not know: {expr}"
    return expr


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


# --- promtool: the rules --------------------------------------------------------------------


def test_promtool_accepts_the_alert_rules_and_the_example_config() -> None:
    promtool = tool("promtool")
    checked = run(promtool, "check", "rules", ALERTS)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout
    config = run(promtool, "check", "config", PROMETHEUS_CONFIG)
    assert config.returncode == 0, config.stdout + config.stderr
    assert "alerts.yml" in config.stdout  # the config's rule file is the one shipped


def test_the_alert_unit_tests_pass() -> None:
    tested = run(tool("promtool"), "test", "rules", ALERTS_TEST)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_tested_firing_and_not_firing_and_has_a_runbook() -> None:
    cases = [
        case
        for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    runbook = (DEPLOY / "README.md").read_text()
    for rule in alert_rules():
        name = rule["alert"]
        own = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in own), f"{name}: no firing case"
        assert any(not case["exp_alerts"] for case in own), f"{name}: no case where it is quiet"
        annotations = rule["annotations"]
        assert annotations["summary"] and len(annotations["description"]) > 80, name
        assert annotations["runbook"] == f"deploy/README.md#{name.lower()}"
        assert f"\n### {name}\n" in runbook, f"{name}: no runbook section in deploy/README.md"


def test_each_alerts_unit_tests_fail_without_its_rule(tmp_path: Path) -> None:
    """The unit tests test the rules: with any one alert taken out, they fail on it."""
    promtool = tool("promtool")
    shutil.copy(ALERTS_TEST, tmp_path / ALERTS_TEST.name)
    whole = yaml.safe_load(ALERTS.read_text())
    for rule in alert_rules():
        name = rule["alert"]
        without = {
            "groups": [
                {**group, "rules": [r for r in group["rules"] if r.get("alert") != name]}
                for group in whole["groups"]
            ]
        }
        (tmp_path / ALERTS.name).write_text(yaml.safe_dump(without))
        tested = run(promtool, "test", "rules", tmp_path / ALERTS_TEST.name)
        assert tested.returncode != 0, f"the unit tests pass without {name}"
        assert f"alertname: {name}," in tested.stdout + tested.stderr


# --- the dashboard, as files and text ------------------------------------------------------


def test_the_dashboard_is_what_the_generator_makes() -> None:
    assert DASHBOARD.read_text(encoding="utf-8") == generator().render(), (
        "deploy/grafana/gateway.json is stale: run python3 deploy/build_dashboard.py"
    )


def test_the_dashboard_has_the_variables_and_a_row_per_concern() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == (
        "datasource",
        "prometheus",
    )
    channel = variables["channel"]
    assert channel["query"].split(",") == list(generator().CHANNELS)
    assert set(generator().CHANNELS) == set(adapters.CHANNELS)  # every registered channel
    assert channel["includeAll"] and channel["allValue"] == ".*"
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    concerns = [
        "ingress",
        "4xx",
        "5xx",
        "dedup",
        "dead letters",
        "outbox",
        "deliveries",
        "rate limits",
        "halted",
        "disconnected",
        "history sync",
        "redis",
    ]
    for concern in concerns:
        assert any(concern in row.lower() for row in rows), f"no row for {concern}: {rows}"
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_the_dashboard_panels_do_not_overlap() -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    """promtool parses PromQL when it checks a rules file: one recording rule per query."""
    found = expressions()
    rules = [
        {"record": f"dashboard:query_{i}", "expr": substituted(expr)}
        for i, (_, expr) in enumerate(found)
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = run(tool("promtool"), "check", "rules", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout


def test_the_dashboard_and_alerts_read_only_exported_metrics_and_show_them_all() -> None:
    names = exported()
    shown: set[str] = set()
    for where, expr in expressions():
        for name, matchers in selectors(expr):
            assert name in names, f"{where}: {name} is not a metric the gateway exports"
            shown.add(name)
            if "channel" in names[name]:  # every labelled panel follows the channel choice
                assert 'channel=~"$channel' in matchers, f"{where}: {name} ignores $channel"
    for rule in alert_rules():
        for name, _ in selectors(rule["expr"]):
            assert name in names, f"{rule['alert']}: {name} is not a metric the gateway exports"
    families = {family.name for family in Metrics().registry.collect()}
    suffixes = ("", "_total", "_bucket", "_count", "_sum")
    unshown = {f for f in families if not any(f + s in shown for s in suffixes)}
    assert unshown == set(), f"exported but on no panel: {sorted(unshown)}"


# --- a real Prometheus scraping a real gateway ---------------------------------------------


@dataclass
class Process:
    """A child process with its output in a file, for the failure message."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    url: str

    @classmethod
    def start(
        cls, args: list[str], url: str, log_path: Path, env: dict[str, str] | None = None
    ) -> Process:
        with log_path.open("wb") as log:
            proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        return cls(proc, log_path, url)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def check(self) -> None:
        assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.log()}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    """A redis-server of this test alone: it is stalled (SIGSTOP) to make 503s."""
    server = EmbeddedRedis(free_port(), None).start()
    yield server
    server.stop()


@dataclass
class Fakes:
    graph: FakeGraphAPI
    bot: FakeBotAPI


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    tokens = {NUMBER_A: "token-a", NUMBER_B: "token-b"}
    async with FakeGraphAPI(tokens) as graph, FakeBotAPI([BOT_1_TOKEN]) as bot:
        yield Fakes(graph, bot)


@pytest.fixture
def gateway(tmp_path: Path, own_redis: EmbeddedRedis, fakes: Fakes) -> Iterator[Process]:
    """`python -m gateway serve` on the test config: no drain at the end, Redis calls time
    out after 0.5 s (so a stall answers 503 quickly), the subscription check on (it runs at
    start), Twilio's journal in `tmp_path`, replayed 0.1 s after Redis answers, the outbox is
    trimmed every second and measured every 1.25 s (claim_idle_seconds / 4), and a command
    waits at most 0.5 s for a slot."""
    port = free_port()
    config = TEST_CONFIG
    journal = f"journal_dir: {tmp_path / 'journal'}, journal_retry_max_seconds: 0.1"
    # The subscription check runs at start: BOT_1's webhook is not set at the fake Bot API.
    check = 'public_url: "https://gateway.example.com", subscription_check_seconds: 60'

    for old, new in (
        ("port: 0}", f"port: {port}, drain_seconds: 0, {journal}, {check}}}"),
        ('cluster: "${REDIS_CLUSTER}"}', 'cluster: "${REDIS_CLUSTER}", timeout_seconds: 0.5}'),
        ("  claim_idle_seconds:", "  trim_interval_seconds: 1\n  claim_idle_seconds:"),
    ):
        assert config.count(old) == 1, old
        config = config.replace(old, new)
    (tmp_path / "config.yaml").write_text(config)
    env = {
        **os.environ,
        "REDIS_URL": own_redis.url,
        "REDIS_CLUSTER": "false",
        "GRAPH_URL": fakes.graph.base_url,
        "BOT_URL": fakes.bot.base_url,
        "META_URL": UNREACHABLE,
        "IG_URL": UNREACHABLE,
        "TWILIO_API": UNREACHABLE,
        "SEND_WAIT_MAX": "0.5",
        "CLAIM_IDLE": "5",
        "OUTBOUND_ENABLED": "true",
        "TAKEOVER": "900",
    }
    args = [sys.executable, "-m", "gateway", "serve", "--config", str(tmp_path / "config.yaml")]
    served = Process.start(args, f"http://127.0.0.1:{port}", tmp_path / "gateway.log", env)
    yield served
    served.stop()


@pytest.fixture
def prometheus(tmp_path: Path, gateway: Process) -> Iterator[Process]:
    """Prometheus from the shipped example config, scraping the gateway every second and
    evaluating the shipped alert rules every second."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(ALERTS)]
    [job] = config["scrape_configs"]
    job["static_configs"] = [{"targets": [gateway.url.removeprefix("http://")]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    args = [
        tool("prometheus"),
        f"--config.file={path}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    served = Process.start(args, f"http://127.0.0.1:{port}", tmp_path / "prometheus.log")
    yield served
    served.stop()


async def until_ok(session: aiohttp.ClientSession, served: Process, path: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        served.check()
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(served.url + path) as resp:
                if resp.status == 200:
                    return
        assert time.monotonic() < deadline, f"{path} did not answer 200:\n{served.log()}"
        await asyncio.sleep(0.1)


async def post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> int:
    async with session.post(url, data=body, headers=headers) as resp:
        return resp.status


def _wa_text(number: str, wamid: str, contact: str = CONTACT) -> bytes:
    person, message = text_message(wamid, contact)
    return wa_body(envelope(change(number, "15550001111", contacts=[person], messages=[message])))


def _messaging(obj: str, account: str, mid: str) -> bytes:
    now_ms = int(time.time() * 1000)
    item = {
        "sender": {"id": "7010000000000001"},
        "recipient": {"id": account},
        "timestamp": now_ms,
        "message": {"mid": mid, "text": "Entrega hoje?"},
    }
    return wa_body({"object": obj, "entry": [{"id": account, "time": now_ms, "messaging": [item]}]})


def _telegram_update() -> bytes:
    update = {
        "update_id": 810000001,
        "message": {
            "message_id": 7,
            "date": int(time.time()),
            "text": "oi",
            "chat": {"id": TG_CHAT, "type": "private", "first_name": "Ana"},
            "from": {"id": TG_CHAT, "is_bot": False, "first_name": "Ana"},
        },
    }
    return json.dumps(update).encode()


async def webhooks(session: aiohttp.ClientSession, url: str) -> None:
    """One of each thing the ingress panels count, on every channel."""
    text = _wa_text(NUMBER_A, "wamid.deploy.1")
    history = json.loads((ROOT / "tests/corpus/whatsapp/history_two_threads.json").read_text())
    answers = [
        await post(session, f"{url}/webhooks/whatsapp", text, wa_headers(text)),
        await post(session, f"{url}/webhooks/whatsapp", text, wa_headers(text)),  # duplicate
        await post(session, f"{url}/webhooks/whatsapp", text, wa_headers(text, "forged-secret")),
    ]
    unknown = _wa_text("100200300400999", "wamid.deploy.2")  # unknown_account dead letter
    answers.append(await post(session, f"{url}/webhooks/whatsapp", unknown, wa_headers(unknown)))
    coexistence = wa_body(history["body"])  # progress 55 for NUMBER_A, history events
    answers.append(
        await post(session, f"{url}/webhooks/whatsapp", coexistence, wa_headers(coexistence))
    )
    update = _telegram_update()
    answers.append(await post(session, f"{url}/webhooks/telegram/{BOT_1}", update, tg_headers()))
    page = _messaging("page", PAGE_A, "m_deploy")
    answers.append(
        await post(session, f"{url}/webhooks/messenger", page, meta_headers(page, MESSENGER_SECRET))
    )
    direct = _messaging("instagram", IG_A, "ig_deploy")
    answers.append(
        await post(
            session, f"{url}/webhooks/instagram", direct, meta_headers(direct, INSTAGRAM_SECRET)
        )
    )
    assert answers == [200, 200, 401, 200, 200, 200, 200, 200]


async def commands(redis: Redis, fakes: Fakes) -> None:
    """Sent, rejected (window, rate limit), failed with a halt, and a dead letter."""
    fakes.graph.fail(190, phone_number_id=NUMBER_B)  # the token is bad: NUMBER_B halts
    sent: list[tuple[str, str, dict[str, Any]]] = [
        ("sent", f"whatsapp:{NUMBER_A}:{CONTACT}", {"text": "Olá!"}),
        ("closed", f"whatsapp:{NUMBER_A}:5511900000002", {"text": "no window"}),
        ("tg-1", f"telegram:{BOT_1}:{TG_CHAT}", {"text": "first"}),
        ("tg-2", f"telegram:{BOT_1}:{TG_CHAT}", {"text": "1/s per chat: a second away"}),
        ("halt", f"whatsapp:{NUMBER_B}:5521999990000", {"type": "template", "template": TEMPLATE}),
    ]
    for command_id, conversation, fields in sent:
        command = {"command_id": command_id, "conversation_id": conversation, "type": "text"}
        await redis.xadd("gw:outbox", {"command": json.dumps({**command, **fields})})
    await redis.xadd("gw:outbox", {"command": b"not json"})  # an invalid_command letter
    outcomes = await deliveries(redis, {c for c, _, _ in sent})
    assert outcomes == {
        "sent": ("sent", None, None),
        "closed": ("rejected", "window_closed", None),
        "tg-1": ("sent", None, None),
        "tg-2": ("rejected", "rate_limited", None),
        "halt": ("failed", "provider_error", 190),
    }


async def deliveries(redis: Redis, wanted: set[str]) -> dict[str, tuple[Any, ...]]:
    deadline = time.monotonic() + 20
    while True:
        found = {
            e["command_id"]: (e["outcome"], e["reason"], e["provider_code"])
            for inbox in ("gw:inbox:support", "gw:inbox:sales")
            for e in await stream(redis, inbox)
            if e["kind"] == "delivery"
        }
        if wanted <= found.keys():
            return found
        assert time.monotonic() < deadline, f"deliveries so far: {found}"
        await asyncio.sleep(0.1)


async def disconnect(session: aiohttp.ClientSession, gateway: Process) -> None:
    """PARTNER_REMOVED names the WABA: NUMBER_A and NUMBER_B are disconnected."""
    body = wa_body(envelope({"field": "account_update", "value": {"event": "PARTNER_REMOVED"}}))
    assert await post(session, f"{gateway.url}/webhooks/whatsapp", body, wa_headers(body)) == 200


def _twilio_message(message_sid: str) -> list[tuple[str, str]]:
    return [
        ("MessageSid", message_sid),
        ("AccountSid", TWILIO_SID),
        ("From", f"whatsapp:+{CONTACT}"),
        ("To", f"whatsapp:{TWILIO_A}"),
        ("WaId", CONTACT),
        ("Body", "oi"),
        ("NumMedia", "0"),
        ("MessageType", "text"),
        ("SmsStatus", "received"),
    ]


async def redis_failures(session: aiohttp.ClientSession, gateway: Process, redis_url: str) -> None:
    """While Redis does not answer: a WhatsApp webhook (503) and a readiness probe (503),
    Redis errors; a Twilio webhook kept in the journal (200), replayed once Redis runs."""
    body = _wa_text(NUMBER_A, "wamid.deploy.stalled")
    twilio, twilio_headers = twilio_post(_twilio_message("SM" + "d" * 32))
    async with redis_stalled(redis_url, 2.0):
        answers = await asyncio.gather(
            post(session, f"{gateway.url}/webhooks/whatsapp", body, wa_headers(body)),
            post(session, f"{gateway.url}/webhooks/twilio", twilio, twilio_headers),
        )
        assert answers == [503, 200]
        async with session.get(f"{gateway.url}/readyz") as resp:
            assert resp.status == 503
    await until_ok(session, gateway, "/readyz")


JOURNAL_SERIES = {
    'gateway_journal_webhooks_total{channel="twilio",outcome="kept"}': 1.0,
    'gateway_journal_webhooks_total{channel="twilio",outcome="replayed"}': 1.0,
    "gateway_journal_bytes": 0.0,
}
"""The stalled Twilio webhook, once its replay is done."""


async def replayed(session: aiohttp.ClientSession, gateway: Process) -> bytes:
    """The gateway's /metrics once the journal has replayed the Twilio webhook of the stall
    (0.1 s after Redis runs again: long done by now, unless something is wrong)."""
    deadline = time.monotonic() + 10
    while True:
        async with session.get(f"{gateway.url}/metrics") as resp:
            exposition = await resp.read()
        values = {
            series: float(value)
            for series, value in (
                line.rsplit(" ", 1) for line in exposition.decode().splitlines() if line[:1] != "#"
            )
        }
        found = {series: values.get(series) for series in JOURNAL_SERIES}
        if found == JOURNAL_SERIES:
            return exposition
        assert time.monotonic() < deadline, f"the journal's series: {found}"
        await asyncio.sleep(0.1)


async def query(session: aiohttp.ClientSession, prometheus: Process, expr: str) -> list[Any]:
    async with session.get(f"{prometheus.url}/api/v1/query", params={"query": expr}) as resp:
        answer = await resp.json()
    assert answer["status"] == "success", f"{expr}: {answer}"
    result: list[Any] = answer["data"]["result"]
    return result


async def alerts(session: aiohttp.ClientSession, prometheus: Process) -> dict[str, set[str]]:
    """Alert name → its alerts' states and labels, and `health:<rule>` for every rule
    Prometheus could not evaluate."""
    async with session.get(f"{prometheus.url}/api/v1/rules") as resp:
        groups = (await resp.json())["data"]["groups"]
    found: dict[str, set[str]] = {}
    for rule in (r for g in groups for r in g["rules"]):
        if rule["health"] != "ok":
            found.setdefault(f"health:{rule['name']}", set()).add(rule.get("lastError", ""))
        for alert in rule.get("alerts", []):
            labels = alert["labels"]
            keys = ("channel", "account", "reason")
            where = ",".join(f"{k}={labels[k]}" for k in keys if k in labels)
            found.setdefault(rule["name"], set()).add(f"{alert['state']} {where}".strip())
    return found


async def lint(exposition: bytes) -> tuple[int | None, str]:
    """`promtool check metrics` on a scrape's text: Prometheus's own naming and type rules."""
    checked = await asyncio.create_subprocess_exec(
        tool("promtool"), "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=STDOUT
    )
    said, _ = await checked.communicate(exposition)
    return checked.returncode, said.decode()


async def test_every_dashboard_query_returns_series_from_prometheus_scraping_a_gateway(
    gateway: Process, prometheus: Process, own_redis: EmbeddedRedis, fakes: Fakes
) -> None:
    redis = Redis.from_url(own_redis.url)
    await redis.config_set("maxmemory", str(1 << 30))  # so the memory-fill panels have a limit
    async with aiohttp.ClientSession() as session:
        await until_ok(session, gateway, "/readyz")
        await until_ok(session, prometheus, "/-/ready")
        await webhooks(session, gateway.url)
        await commands(redis, fakes)
        await redis_failures(session, gateway, own_redis.url)
        await disconnect(session, gateway)
        # Prometheus scrapes and evaluates the rules every second; a rate needs two samples
        # after a counter's first. Every query is asked again until all have series.
        queries = {where: substituted(expr) for where, expr in expressions()}
        deadline = time.monotonic() + 30
        while True:
            gateway.check()
            empty = {w: e for w, e in queries.items() if not await query(session, prometheus, e)}
            required = {w for w, e in empty.items() if not any(m in e for m in ALLOWED_EMPTY)}
            found = await alerts(session, prometheus)
            if (not required and found.keys() >= EXPECTED_ALERTS) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        exposition = await replayed(session, gateway)
    await redis.aclose()
    assert required == set(), f"no series for: {json.dumps(empty, indent=1)}"
    assert not [name for name in found if name.startswith("health:")], found
    # The shipped rules, evaluated by Prometheus on what the gateway exported.
    assert found["GatewayAccountHalted"] == {f"firing channel=whatsapp,account={NUMBER_B}"}
    assert found["GatewayDeadLetters"] == {
        "firing channel=whatsapp,reason=unknown_account",
        "firing reason=invalid_command",  # a command's letter has no channel
    }
    # Pending (for: 5m): the check found BOT_1's webhook not set; the other accounts' checks
    # failed (no such WABA at the fake, unreachable APIs), which sets no gauge.
    assert found["GatewayWebhookUnsubscribed"] == {f"pending channel=telegram,account={BOT_1}"}
    disconnected = {state.split(" ", 1)[1] for state in found["GatewayAccountDisconnected"]}
    assert disconnected == {f"channel=whatsapp,account={n}" for n in (NUMBER_A, NUMBER_B)}
    # And the exposition passes Prometheus's own lint.
    assert await lint(exposition) == (0, "")
