"""joch.grpc: the operator's gRPC server, beside the HTTP decision service (docs/grpc.md).

- gen: code generated from proto/joch/v1 (hack/protos.py, ``make manifests``);
- convert: joch.v1 messages <-> the decision service's JSON shapes (pure);
- ext_authz: Envoy's CheckRequest -> a decision context, a Decision -> the CheckResponse (pure);
- auth: bearer tokens reviewed by the API server (TokenReview, cached), allowed subjects;
- server: :class:`~server.GrpcServer` (grpc.aio): PolicyService, ext_authz, health, reflection.

Layer: beside joch.decision_service (it imports joch.decision_service, joch.kube, joch.metrics,
joch.domain and joch.api; never the controllers or the webhooks).
"""

from joch.grpc.server import GrpcServer, GrpcSettings

__all__ = ["GrpcServer", "GrpcSettings"]
