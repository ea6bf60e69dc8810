"""Run the chart's GitOps health checks the way Argo CD and Flux do (shared by unit and integration tests).

- :func:`argocd_health` runs the Lua registered for a kind in charts/joch/argocd/argocd-cm.yaml (the
  shipped artifact) in Lua 5.1 (lupa; Argo CD embeds gopher-lua, a Lua 5.1), with the object as the
  global ``obj``, and returns ``(status, message)``.
- :func:`flux_health` evaluates the kind's charts/joch/flux/health-check-exprs.yaml entry with CEL in
  Flux's order (inProgress, failed, current; none -> InProgress) and returns Flux's status name.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import cel
import pytest
import yaml

from tests.unit.chart import helm

ARGO_TO_FLUX = {"Healthy": "Current", "Progressing": "InProgress", "Degraded": "Failed"}


@functools.cache
def _customizations() -> dict[str, str]:
    data: dict[str, str] = yaml.safe_load((helm.CHART / "argocd" / "argocd-cm.yaml").read_text())["data"]
    return data


@functools.cache
def _flux() -> dict[tuple[str, str], dict[str, str]]:
    entries = yaml.safe_load((helm.CHART / "flux" / "health-check-exprs.yaml").read_text())[
        "healthCheckExprs"
    ]
    return {(e["apiVersion"], e["kind"]): e for e in entries}


def lua_for(obj: dict[str, Any]) -> str:
    group = obj["apiVersion"].split("/")[0]
    key = f"resource.customizations.health.{group}_{obj['kind']}"
    assert key in _customizations(), f"no Argo CD health check for {group}/{obj['kind']}"
    return _customizations()[key]


def argocd_health(obj: dict[str, Any]) -> tuple[str, str]:
    lupa = pytest.importorskip("lupa.lua51", reason="lupa (a dev dependency) runs the Lua health checks")
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)
    # JSON in, as Argo CD does: numbers become Lua numbers, objects tables, arrays 1-based tables.
    runtime.globals().obj = _to_lua(runtime, json.loads(json.dumps(obj)))
    result = runtime.execute(lua_for(obj))
    return str(result["status"]), str(result["message"] or "")


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    raise TypeError(type(value))


def flux_health(obj: dict[str, Any]) -> str | None:
    """Flux's verdict from healthCheckExprs; None for kinds without expressions (kstatus defaults)."""
    entry = _flux().get((obj["apiVersion"], obj["kind"]))
    if entry is None:
        return None
    context = {k: obj.get(k, {}) for k in ("apiVersion", "kind", "metadata", "spec", "status")}
    for field, verdict in (("inProgress", "InProgress"), ("failed", "Failed"), ("current", "Current")):
        if cel.evaluate(entry[field], context) is True:
            return verdict
    return "InProgress"
