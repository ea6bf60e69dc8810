# syntax=docker/dockerfile:1
# The joch operator image (docs/install.md):
#
#   docker build -t ghcr.io/joch-dev/joch:dev .
#
# Two stages: "build" installs the joch wheel and its pinned dependencies (constraints.txt) into a
# virtual environment at /opt/joch; "runtime" is the slim Python image with only that environment copied
# in, pip/setuptools removed, running as a non-root user. No compiler or build tool is installed in
# either stage (every dependency ships wheels); the runtime has none.
# tests/integration/test_helm_image.py runs this ENTRYPOINT + CMD in a clean virtual environment.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ONLY_BINARY=:all:
WORKDIR /src
RUN python -m venv /opt/joch
COPY pyproject.toml constraints.txt README.md ./
COPY operator/ ./operator/
# The project itself is pure Python: build its wheel from source, every dependency from wheels only.
RUN /opt/joch/bin/pip install --no-binary=joch -c constraints.txt . \
 && /opt/joch/bin/pip uninstall --yes pip \
 && /opt/joch/bin/python -m compileall -q /opt/joch/lib

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="joch" \
      org.opencontainers.image.description="Joch operator: Kubernetes-native control plane for AI agent fleets" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN python -m pip uninstall --yes --root-user-action=ignore pip setuptools wheel 2>/dev/null || true \
 && groupadd --system --gid 65532 joch \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin joch
COPY --from=build /opt/joch /opt/joch
ENV PATH=/opt/joch/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp
USER 65532:65532
# 8080 metrics, 8081 health probes, 8082 policy decisions, 8090 the /v1 API, 9090 gRPC, 9443 admission
# webhooks (the chart's defaults).
EXPOSE 8080 8081 8082 8090 9090 9443
ENTRYPOINT ["/opt/joch/bin/joch"]
CMD ["operator"]
