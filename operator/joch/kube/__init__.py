"""joch.kube: the only code that talks to the API server.

- client: configuration loading (kubeconfig or in-cluster), :class:`~client.Kube` (JSON over aiohttp
  on the caller's event loop with at most ``Limits.concurrency`` requests in flight, a write token
  bucket, 429 Retry-After and 5xx retries), :class:`~client.Limits`.
- errors: API failures translated into joch errors (NotFound, Conflict, Forbidden, TooManyRequests...).
- paths: REST paths of joch kinds and the core kinds used (Namespace, ConfigMap, Event).
- listing: paginated LIST.
- configmaps: CompiledAgentManifest ConfigMaps (idempotent apply, delete, list by label).
- status: status subresource merge patches.
- events: core/v1 Events.
- leader (Lease leader election) and webhook_tls (the webhook serving certificate) build on the client;
  they are imported on their own (``from joch.kube import leader``), not re-exported here.
"""

from joch.kube import client, configmaps, errors, events, listing, paths, status
from joch.kube.client import Kube, Limits, load_configuration, new_api_client

__all__ = [
    "Kube",
    "Limits",
    "client",
    "configmaps",
    "errors",
    "events",
    "listing",
    "load_configuration",
    "new_api_client",
    "paths",
    "status",
]
