"""The webhook path's metrics: counted in plain numbers between scrapes (one process), they
must expose exactly what prometheus_client's own calls would, at every scrape."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.metrics import LATENCY_BUCKETS, Metrics
from router.outcome import Tally

channels = st.sampled_from(["whatsapp", "telegram"])
latencies = st.one_of(
    st.sampled_from(LATENCY_BUCKETS),  # exactly on a bound: counted in that bucket (le)
    st.floats(min_value=0, max_value=5, allow_nan=False),
)
kinds = st.tuples(
    st.sampled_from(["message", "status", "echo"]),
    st.sampled_from(["text", "", None, "not_a_message_type"]),  # the router counts, unlabelled
)
steps = st.one_of(
    st.tuples(st.just("answered"), channels, st.sampled_from([200, 401, 404, 503])),
    st.tuples(st.just("timed"), channels, latencies, latencies),
    st.tuples(
        st.just("tallied"), channels, st.dictionaries(kinds, st.integers(1, 100), max_size=3)
    ),
    st.tuples(st.just("scrape")),
)


def _samples(metrics: Metrics) -> dict[str, float]:
    """Series → value, without the `_created` timestamps (they differ between instances).
    Compared with approx: the sums are the same numbers added in another order."""
    text = metrics.exposition().decode()
    pairs = (line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    return {series: float(value) for series, value in pairs if "_created" not in series}


@settings(max_examples=200)
@given(st.lists(steps, max_size=40))
def test_deferred_counts_expose_what_direct_increments_expose(ops: list[tuple]) -> None:
    deferred, direct = Metrics(defer=True), Metrics(defer=False)
    for op in ops:
        if op[0] == "scrape":
            assert _samples(deferred) == pytest.approx(_samples(direct), rel=1e-9)
            continue
        for metrics in (deferred, direct):
            if op[0] == "answered":
                metrics.answered(op[1], op[2])
            elif op[0] == "timed":
                metrics.timed(op[1], op[2], op[3])
            else:
                metrics.tallied(op[1], Tally(published=dict(op[2])))
    assert _samples(deferred) == pytest.approx(_samples(direct), rel=1e-9)


def test_a_scrape_sees_every_webhook_answered_before_it() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.answered("whatsapp", 200)
        metrics.timed("whatsapp", 0.0007, 0.002)
        metrics.tallied("whatsapp", Tally(published={("message", "text"): 2}))
    text = metrics.exposition().decode()
    assert 'gateway_http_requests_total{channel="whatsapp",code="200"} 3.0' in text
    assert 'gateway_events_total{channel="whatsapp",kind="message",type="text"} 6.0' in text
    assert 'gateway_publish_seconds_bucket{channel="whatsapp",le="0.0005"} 0.0' in text
    assert 'gateway_publish_seconds_bucket{channel="whatsapp",le="0.001"} 3.0' in text
    assert 'gateway_webhook_seconds_count{channel="whatsapp"} 3.0' in text
    metrics.answered("whatsapp", 200)
    text = metrics.exposition().decode()  # counted once each, across scrapes
    assert 'gateway_http_requests_total{channel="whatsapp",code="200"} 4.0' in text
    assert 'gateway_events_total{channel="whatsapp",kind="message",type="text"} 6.0' in text


def test_the_router_counts_and_the_gateway_makes_the_labels() -> None:
    # A Tally keys events by their own `type`; only MESSAGE_TYPES become label values.
    metrics = Metrics()
    published = {("message", "text"): 1, ("status", None): 2, ("message", "x" * 300): 4}
    metrics.tallied("whatsapp", Tally(published=published, duplicates={"status": 1}))
    text = metrics.exposition().decode()
    assert 'gateway_events_total{channel="whatsapp",kind="message",type="text"} 1.0' in text
    assert 'gateway_events_total{channel="whatsapp",kind="status",type=""} 2.0' in text
    assert 'gateway_events_total{channel="whatsapp",kind="message",type=""} 4.0' in text
    assert 'gateway_duplicates_total{channel="whatsapp",kind="status"} 1.0' in text
