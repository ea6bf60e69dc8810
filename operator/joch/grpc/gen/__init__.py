"""Generated protobuf and gRPC code of proto/joch/v1 (hack/protos.py)."""
