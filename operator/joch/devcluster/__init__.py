"""The dev/test control plane: a real kube-apiserver on loopback ports on a store (etcd, or kine over
SQLite or PostgreSQL: joch.devcluster.stores), no Docker.

``ControlPlane`` starts it in-process (tests use it through the pytest fixtures in tests/conftest.py);
``python -m joch.devcluster up|down|status`` runs it in the background for ``make dev-up``.
The binaries come from ``make tools`` (hack/tools.sh) and are found via $JOCH_BIN_DIR, <repo>/bin or $PATH.
"""

from joch.devcluster.certs import (
    ADMIN_COMMON_NAME,
    ADMIN_GROUP,
    ControlPlaneCerts,
    ensure_certs,
    generate_certs,
)
from joch.devcluster.cluster import (
    CLUSTER_NAME,
    BinaryNotFoundError,
    ControlPlane,
    ControlPlaneError,
    ControlPlaneState,
    find_binary,
    pinned_versions,
    read_state,
    repo_root,
)

__all__ = [
    "ADMIN_COMMON_NAME",
    "ADMIN_GROUP",
    "CLUSTER_NAME",
    "BinaryNotFoundError",
    "ControlPlane",
    "ControlPlaneCerts",
    "ControlPlaneError",
    "ControlPlaneState",
    "ensure_certs",
    "find_binary",
    "generate_certs",
    "pinned_versions",
    "read_state",
    "repo_root",
]
