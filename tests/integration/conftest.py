"""Integration fixtures: the generated CRDs installed once per session into the real API server."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tests import helpers


@pytest.fixture(scope="session")
def crds_installed(kubectl: helpers.Kubectl) -> list[str]:
    """Apply crds/ with real kubectl and wait until every CRD is Established; the CRD names."""
    return helpers.install_crds(kubectl)


@pytest.fixture(autouse=True)
def _collect_what_the_test_left() -> Iterator[None]:
    """Collect garbage at the end of every test, so a connection a test leaves unclosed is reported (a
    ResourceWarning, an error here) by that test's teardown, not by whichever later test in the same
    worker happens to run the collector."""
    yield
    gc.collect()
