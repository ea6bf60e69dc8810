"""joch.metrics: the recording functions move the right series, and serve() answers /metrics, /healthz
and /readyz over real HTTP on loopback (port 0).

The scrape after real operator traffic is tests/integration/test_helm_operator.py.
"""

from __future__ import annotations

import asyncio
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

import joch
from joch import metrics


def _samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(name: str, **labels: str) -> float:
    return _samples().get((name, tuple(sorted(labels.items()))), 0.0)


def test_recording_moves_the_counts() -> None:
    before_ok = _value("joch_reconciles_total", kind="Agent", result="success")
    before_err = _value("joch_reconciles_total", kind="Agent", result="error")
    metrics.record_reconcile("Agent", "success", seconds=0.01)
    metrics.record_reconcile("Agent", "error")
    assert _value("joch_reconciles_total", kind="Agent", result="success") == before_ok + 1
    assert _value("joch_reconciles_total", kind="Agent", result="error") == before_err + 1

    compiles = _value("joch_compile_duration_seconds_count")
    with metrics.compile_timer():
        pass
    metrics.observe_compile(0.002)
    assert _value("joch_compile_duration_seconds_count") == compiles + 2

    denials = _value(
        "joch_admission_denials_total", webhook="validating", kind="Agent", reason="PolicyDenied"
    )
    latency = _value(
        "joch_admission_duration_seconds_count", webhook="validating", kind="Agent", operation="CREATE"
    )
    metrics.record_admission(
        webhook="validating", kind="Agent", operation="CREATE", seconds=0.003, allowed=True
    )
    metrics.record_admission(
        webhook="validating",
        kind="Agent",
        operation="CREATE",
        seconds=0.004,
        allowed=False,
        reason="PolicyDenied",
    )
    assert (
        _value("joch_admission_denials_total", webhook="validating", kind="Agent", reason="PolicyDenied")
        == denials + 1
    )
    assert (
        _value(
            "joch_admission_duration_seconds_count", webhook="validating", kind="Agent", operation="CREATE"
        )
        == latency + 2
    )

    decisions = _value("joch_policy_decisions_total", outcome="deny", source="preflight")
    metrics.record_policy_decision("deny", source="preflight")
    assert _value("joch_policy_decisions_total", outcome="deny", source="preflight") == decisions + 1

    metrics.set_queue_depth(7)
    assert _value("joch_fanout_queue_depth") == 7
    metrics.track_queue_depth(lambda: 3)
    assert _value("joch_fanout_queue_depth") == 3

    transitions = _value("joch_leader_transitions_total")
    metrics.set_leader(True)
    metrics.set_leader(True)
    metrics.set_leader(False)
    assert _value("joch_leader") == 0
    assert _value("joch_leader_transitions_total") == transitions + 2
    assert _value("joch_build_info", version=joch.__version__) == 1


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_serve_metrics_and_probes() -> None:
    async def scenario() -> None:
        health = metrics.Health()
        ready = {"webhooks": False}
        health.add_liveness("loop", lambda: True)
        health.add_readiness("webhooks", lambda: ready["webhooks"])
        servers = await metrics.serve(host="127.0.0.1", metrics_port=0, health_port=0, health=health)
        try:
            base_m = f"http://127.0.0.1:{servers.ports['metrics']}"
            base_h = f"http://127.0.0.1:{servers.ports['health']}"
            loop = asyncio.get_running_loop()
            status, body = await loop.run_in_executor(None, _get, base_m + "/metrics")
            assert status == 200
            assert "joch_build_info" in body
            assert "process_cpu_seconds_total" in body
            assert (await loop.run_in_executor(None, _get, base_h + "/healthz"))[0] == 200
            status, body = await loop.run_in_executor(None, _get, base_h + "/readyz")
            assert (status, body) == (503, "failing: webhooks\n")
            ready["webhooks"] = True
            assert (await loop.run_in_executor(None, _get, base_h + "/readyz"))[0] == 200
            assert (await loop.run_in_executor(None, _get, base_m + "/healthz"))[0] == 404
        finally:
            await servers.close()

    asyncio.run(scenario())
