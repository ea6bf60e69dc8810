"""A missing helm binary: the chart tests skip on a developer's machine and fail in CI.

Cases: binary present (its path); missing without CI, or with CI set to something not true (skip, naming
`make tools`); missing with CI=true, CI=1, CI=yes (fail, saying why); helm.template() under CI (fails).
"""

from __future__ import annotations

import pytest

from joch.devcluster import BinaryNotFoundError
from tests.unit.chart import helm


def _missing(name: str) -> None:
    raise BinaryNotFoundError(f"{name} not found in bin/")


def test_present_binary_is_returned() -> None:
    path = helm.binary("helm")  # skips (or fails in CI) when helm is not built, as every chart test does
    assert path.endswith("helm")


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_missing_binary_skips_outside_ci(monkeypatch: pytest.MonkeyPatch, ci: str | None) -> None:
    monkeypatch.setattr(helm, "find_binary", _missing)
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match=r"bin/helm4 is not built .*make tools"):
        helm.binary("helm4")


@pytest.mark.parametrize("ci", ["true", "TRUE", "1", "yes"])
def test_missing_binary_fails_in_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setattr(helm, "find_binary", _missing)
    monkeypatch.setenv("CI", ci)
    expected = r"bin/helm is not built .*CI is set: the chart tests must run in CI"
    with pytest.raises(pytest.fail.Exception, match=expected):
        helm.binary("helm")


def test_rendering_fails_in_ci_without_helm(monkeypatch: pytest.MonkeyPatch) -> None:
    """What every chart test calls (helm.template) fails, not skips, under CI without the binary."""
    monkeypatch.setattr(helm, "find_binary", _missing)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        helm.template({})
