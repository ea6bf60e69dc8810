"""Integration fixtures: the generated CRDs installed once per session into the real API server."""

from __future__ import annotations

import pytest

from tests import helpers


@pytest.fixture(scope="session")
def crds_installed(kubectl: helpers.Kubectl) -> list[str]:
    """Apply crds/ with real kubectl and wait until every CRD is Established; the CRD names."""
    return helpers.install_crds(kubectl)
