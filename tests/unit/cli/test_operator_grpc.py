"""``joch operator``'s gRPC server: its flags, its port, how the composition root builds and serves it.

Cases:
- by default the gRPC server listens on 9090 where the /v1 API does (127.0.0.1 outside a cluster, every
  address in a Pod); --grpc-port=0 turns it off; an explicit port must be free (as --api-port);
- --grpc-max-message-bytes, --grpc-deadline and the --ext-authz-* flags parse into GrpcSettings (its
  ExtAuthzSettings), and a bad value stops the operator (exit 2) with a message naming the flag;
- the start-up line prints the gRPC address, and ``joch dev run`` reads it from there;
- --grpc-service: its names go on the operator-issued certificate while gRPC is served;
- one decision service, budget step and caller gate for the HTTP endpoint and gRPC: built when either is
  served, the HTTP endpoint authenticating only with decision_callers;
- TLS in a Pod: the credentials serve the webhooks' certificate and, on new connections, the one loaded
  after a rotation (real TLS handshakes against a real grpc.aio server);
- a gRPC port that cannot be bound fails the start-up with kopf.PermanentError naming --grpc-port.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import pathlib
import socket
import types
from collections.abc import Iterator
from typing import Any

import grpc
import kopf
import kubernetes
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from joch import decision_service
from joch.cli import dev as dev_cli
from joch.cli import operator as operator_cli
from joch.controllers.reservations import BudgetGate
from joch.decision_service.callers import CallerGate
from joch.decision_service.service import DecisionService
from joch.domain.settings import OperatorSettings
from joch.grpc import ext_authz
from joch.grpc.server import GrpcSettings
from joch.kube import webhook_tls
from joch.runtime import options as runtime_options
from joch.runtime import ports, root

POD = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "POD_NAMESPACE": "joch"}


def parse(*argv: str) -> argparse.Namespace:
    return operator_cli.build_parser().parse_args(list(argv))


def serving(*argv: str, environ: dict[str, str] | None = None) -> runtime_options.Serving:
    return operator_cli.options_from(parse(*argv), environ=environ or {}).serving


@pytest.fixture
def occupied() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        yield held.getsockname()[1]


def _grpc_listener(s: runtime_options.Serving) -> ports.Listener | None:
    return next((x for x in s.listeners() if x.name == "grpc"), None)


def test_grpc_listens_on_9090_where_the_api_does_and_0_turns_it_off() -> None:
    local = serving()
    assert runtime_options.DEFAULT_PORTS["grpc"] == 9090
    assert local.grpc_port == 9090
    assert _grpc_listener(local) == ports.Listener("grpc", "--grpc-port", "127.0.0.1", 9090, explicit=False)
    assert local.grpc == GrpcSettings()  # limits and ext_authz defaults; host and port come from Serving

    pod = serving(
        "--webhook-tls-secret", "joch/tls", "--webhook-service", "joch-webhook.joch.svc", environ=POD
    )
    api = next(x for x in pod.listeners() if x.name == "api")
    assert _grpc_listener(pod) == ports.Listener("grpc", "--grpc-port", api.host, 9090, explicit=False)
    assert api.host == "0.0.0.0"

    explicit = serving("--grpc-port", "9555")
    assert _grpc_listener(explicit) == ports.Listener("grpc", "--grpc-port", "127.0.0.1", 9555, explicit=True)
    assert _grpc_listener(serving("--grpc-port=0")) is None
    assert serving().with_ports({"grpc": 9999}).grpc_port == 9999


def test_an_explicit_grpc_port_that_is_taken_stops_the_operator(
    occupied: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code = operator_cli.main(
        [
            "--kubeconfig",
            "/nonexistent/kubeconfig",
            "--no-webhooks",
            "--decision-port=0",
            "--metrics-port=0",
            "--health-port=0",
            "--api-port=0",
            f"--grpc-port={occupied}",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{occupied} for the grpc (--grpc-port)" in err
    assert "Traceback" not in err


def test_grpc_flags_parse_into_the_settings() -> None:
    got = serving(
        "--grpc-max-message-bytes",
        "2048",
        "--grpc-deadline",
        "2.5",
        "--ext-authz-header",
        "agent=X-Gateway-Agent",
        "--ext-authz-header",
        "tool=",  # not from a header
        "--ext-authz-approval-status",
        "409",
        "--ext-authz-approval-header",
        "X-Approval",
        "--ext-authz-metadata-namespace",
        "gateway",
    ).grpc
    assert got.max_message_bytes == 2048
    assert got.deadline_seconds == 2.5
    authz = got.ext_authz
    assert authz.headers["agent"] == "x-gateway-agent"
    assert "tool" not in authz.headers
    assert authz.headers["environment"] == ext_authz.DEFAULT_HEADERS["environment"]  # the others kept
    assert authz.approval_status == 409
    assert authz.approval_header == "x-approval"
    assert authz.metadata_namespace == "gateway"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--ext-authz-header", "agent"), "--ext-authz-header must be FIELD=HEADER, not 'agent'"),
        (("--ext-authz-header", "=x-agent"), "--ext-authz-header must be FIELD=HEADER"),
        (
            ("--ext-authz-header", "agnet=x-agent"),
            "--ext-authz-header 'agnet=x-agent': unknown field 'agnet'",
        ),
        (("--ext-authz-header", "tool=x tool"), "'x tool' is not an HTTP header name"),
        (("--ext-authz-approval-status", "99"), "--ext-authz-approval-status: "),
        (("--ext-authz-approval-status", "600"), "100..599"),
        (("--ext-authz-approval-header", ""), "--ext-authz-approval-header: "),
        (("--ext-authz-metadata-namespace", ""), "--ext-authz-metadata-namespace: "),
        (("--grpc-max-message-bytes", "512"), "--grpc-max-message-bytes must be at least 1024, not 512"),
        (("--grpc-service", "joch-grpc"), "--grpc-service must be SVC.NS.svc, not 'joch-grpc'"),
    ],
)
def test_bad_grpc_values_stop_the_operator_naming_the_flag(
    argv: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert operator_cli.main(["--kubeconfig", "/nonexistent/kubeconfig", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("joch operator: error: ")
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--grpc-port", "65536"), "argument --grpc-port: a port is 0-65535, not 65536"),
        (("--grpc-deadline", "0"), "argument --grpc-deadline: must be a finite number above 0"),
        (("--grpc-max-message-bytes", "lots"), "argument --grpc-max-message-bytes: 'lots' is not a whole"),
        (("--ext-authz-approval-status", "teapot"), "argument --ext-authz-approval-status: invalid int"),
    ],
)
def test_unparsable_grpc_values_are_usage_errors(
    argv: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(*argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_help_documents_the_grpc_flags() -> None:
    text = operator_cli.build_parser().format_help()
    assert "gRPC:" in text
    for flag in (
        "--grpc-port N",
        "--grpc-service",
        "--grpc-max-message-bytes N",
        "--grpc-deadline SECONDS",
        "--ext-authz-header FIELD=HEADER",
        "--ext-authz-approval-status N",
        "--ext-authz-approval-header NAME",
        "--ext-authz-metadata-namespace NS",
    ):
        assert flag in text, flag
    assert "default 9090; 0 disables" in text


def test_the_start_up_line_prints_the_grpc_address(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    options = operator_cli.options_from(parse("--no-webhooks", "--grpc-port", "9555"), environ={})
    operator_cli._announce(options)
    line = capsys.readouterr().out
    assert "grpc on 127.0.0.1:9555" in line
    log = tmp_path / "operator.log"
    log.write_text("starting\n" + line)
    assert dev_cli._grpc_address(log) == "127.0.0.1:9555"
    assert dev_cli._api_url(log) == "http://127.0.0.1:8090"
    log.write_text("joch operator: api on 127.0.0.1:8090\n")
    assert dev_cli._grpc_address(log) is None


def test_the_operator_issued_certificate_names_the_grpc_service_while_grpc_is_served() -> None:
    argv = ("--webhook-tls-secret", "joch/tls", "--webhook-service", "joch-webhook.joch.svc")
    controller: Any = types.SimpleNamespace(kube=None)
    for extra, named in (
        (("--grpc-service", "joch-grpc.joch.svc"), True),
        (("--grpc-service", "joch-grpc.joch.svc", "--grpc-port=0"), False),
        ((), False),
    ):
        tls = root._webhook_tls(serving(*argv, *extra, environ=POD), controller)
        assert isinstance(tls, webhook_tls.SecretTLS)
        assert "joch-webhook.joch.svc" in tls.config.dns_names
        assert ("joch-grpc.joch.svc" in tls.config.dns_names) is named, extra
        assert ("joch-grpc.joch.svc.cluster.local" in tls.config.dns_names) is named, extra


def _controller(callers: tuple[str, ...] = ()) -> Any:
    return types.SimpleNamespace(
        settings=OperatorSettings(decision_callers=callers), programs=None, feeds=[], kube=None
    )


@pytest.mark.parametrize(
    ("argv", "callers", "built", "http", "http_gate"),
    [
        pytest.param((), (), True, True, False, id="both, no decision_callers"),
        pytest.param((), ("system:serviceaccount:gw:envoy",), True, True, True, id="both, decision_callers"),
        pytest.param(("--decision-port=0",), (), True, False, False, id="gRPC only"),
        pytest.param(("--grpc-port=0",), (), True, True, False, id="HTTP only"),
        pytest.param(("--decision-port=0", "--grpc-port=0"), (), False, False, False, id="neither"),
    ],
)
def test_one_decision_service_for_http_and_grpc(
    monkeypatch: pytest.MonkeyPatch,
    argv: tuple[str, ...],
    callers: tuple[str, ...],
    built: bool,
    http: bool,
    http_gate: bool,
) -> None:
    registered: list[dict[str, Any]] = []
    monkeypatch.setattr(decision_service, "register", lambda registry, **kw: registered.append(kw))
    options = operator_cli.options_from(parse(*argv), environ={})
    controller = _controller(callers)
    decisions = root._decisions(options, kopf.OperatorRegistry(), controller)
    if not built:
        assert decisions is None
        assert controller.feeds == []
        assert registered == []
        return
    assert decisions is not None
    assert controller.feeds == [decisions.service]  # fed once, whoever serves it
    assert isinstance(decisions.budgets, BudgetGate)
    assert isinstance(decisions.gate, CallerGate)
    assert decisions.gate.allowed == (frozenset(callers) if callers else None)  # gRPC: any identity
    assert len(registered) == int(http)
    if http:
        assert registered[0]["service"] is decisions.service
        assert registered[0]["budgets"] is decisions.budgets
        assert registered[0]["callers"] is (decisions.gate if http_gate else None)


# --- TLS ------------------------------------------------------------------------------------------------


def _issue(now: datetime.datetime) -> tuple[bytes, bytes, bytes]:
    """(CA certificate, serving certificate, key) naming localhost."""
    year = datetime.timedelta(days=365)
    ca_cert, ca_key = webhook_tls.new_ca(now=now, validity=year)
    cert, key = webhook_tls.issue(
        ca_cert=ca_cert, ca_key=ca_key, dns_names=["localhost"], now=now, validity=year
    )
    return ca_cert, cert, key


async def _health(port: int, ca_cert: bytes) -> int:
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_cert)
    async with grpc.aio.secure_channel(f"localhost:{port}", credentials) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    status: int = answer.status
    return status


def test_grpc_tls_serves_the_webhook_certificate_and_follows_its_rotation() -> None:
    asyncio.run(_tls_and_rotation())


async def _tls_and_rotation() -> None:
    assert root._grpc_credentials(None) is None
    tls = webhook_tls.DirectoryTLS("/nonexistent")
    assert root._grpc_credentials(tls) is None  # nothing loaded yet

    now = datetime.datetime.now(datetime.UTC)
    first_ca, first_cert, first_key = _issue(now)
    tls.load(first_cert, first_key)
    assert tls.key_pair == (first_key, first_cert)
    credentials = root._grpc_credentials(tls)
    assert credentials is not None

    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        assert await _health(port, first_ca) == health_pb2.HealthCheckResponse.SERVING

        second_ca, second_cert, second_key = _issue(now)  # a new CA, as a rotation that replaces it
        tls.load(second_cert, second_key)
        assert await _health(port, second_ca) == health_pb2.HealthCheckResponse.SERVING  # new connection
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _health(port, first_ca)  # the old certificate is no longer served
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(None)


def test_a_grpc_port_that_cannot_be_bound_fails_the_start_up_naming_the_flag(occupied: int) -> None:
    asyncio.run(_start_on(occupied))


async def _start_on(occupied: int) -> None:
    options = operator_cli.options_from(parse("--no-webhooks", f"--grpc-port={occupied}"), environ={})
    decisions = root._Decisions(
        DecisionService(),
        BudgetGate(_controller()),
        CallerGate(None, lambda token: pytest.fail("no call is made")),
    )
    controller: Any = types.SimpleNamespace(
        kube=types.SimpleNamespace(configuration=kubernetes.client.Configuration())
    )
    with pytest.raises(kopf.PermanentError, match=rf"--grpc-port={occupied}"):
        await root._start_grpc(options.serving, controller, decisions, None, None)
