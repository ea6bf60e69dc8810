"""Integration fixtures: the generated CRDs installed once per session into the real API server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests import helpers


@pytest.fixture(scope="session")
def crds_installed(kubectl: Callable[..., Any]) -> list[str]:
    """Apply crds/ with real kubectl and wait until every CRD is Established; the CRD names."""
    applied = kubectl("apply", "--server-side", "--force-conflicts", "-f", str(helpers.CRDS))
    assert applied.returncode == 0, applied.stderr
    names = [d["metadata"]["name"] for d in helpers.load_documents(helpers.CRDS)]
    waited = kubectl("wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names])
    assert waited.returncode == 0, waited.stderr
    return names
