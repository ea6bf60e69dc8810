"""``joch operator``'s ports, with real sockets: loopback outside a cluster, a taken port stops it at once.

Cases:
- outside a cluster (no $KUBERNETES_SERVICE_HOST) the decision service, metrics and health listen on
  127.0.0.1 (webhooks too, in local mode); in a Pod on every address; --decision-host still wins;
- a port given on the command line that another socket holds: ``joch operator`` exits 1 at once, before
  contacting any API server, with a message naming the address, the flag and the reason;
- a default port that is taken: in local mode replaced by a free port (and printed); in a Pod an error;
- metrics and health on one explicit port share it (one server); any other two listeners on one port
  conflict: an error naming both flags when the port was given, a free port for a default in local mode;
- --api-service (the API Service's names on the serving certificate) is SVC.NS.svc;
- the gRPC server (--grpc-port, default 9090) listens where the API does; its flags (--grpc-*,
  --ext-authz-*) parse into GrpcSettings, bad values stop the operator with a message naming the flag;
  --grpc-service names go on the operator-issued certificate when it is served; the TLS credentials
  follow the certificate's rotations.
"""

from __future__ import annotations

import argparse
import socket
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

from joch.cli import operator as operator_cli
from joch.domain.settings import SettingsError
from joch.kube import errors, webhook_tls
from joch.runtime import options as runtime_options
from joch.runtime import ports, root


@pytest.fixture
def occupied() -> Iterator[int]:
    """A port some other process listens on (127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        yield held.getsockname()[1]


def parse(*argv: str) -> argparse.Namespace:
    return operator_cli.build_parser().parse_args(list(argv))


def test_local_mode_listens_on_loopback_and_a_pod_on_every_address() -> None:
    local = operator_cli.options_from(parse(), environ={}).serving
    assert local.local is True
    assert {(x.name, x.host, x.port) for x in local.listeners()} == {
        ("webhooks", "127.0.0.1", 9443),
        ("decisions", "127.0.0.1", 8082),
        ("metrics", "127.0.0.1", 8080),
        ("health", "127.0.0.1", 8081),
        ("api", "127.0.0.1", 8090),
        ("grpc", "127.0.0.1", 9090),
    }
    assert not any(x.explicit for x in local.listeners())

    pod = operator_cli.options_from(
        parse("--webhook-tls-dir", "/tls", "--metrics-port", "9091"),
        environ={"KUBERNETES_SERVICE_HOST": "10.0.0.1", "POD_NAMESPACE": "joch"},
    ).serving
    assert pod.local is False
    assert {(x.name, x.host, x.port, x.explicit) for x in pod.listeners()} == {
        ("webhooks", "0.0.0.0", 9443, False),
        ("decisions", "0.0.0.0", 8082, False),
        ("metrics", "0.0.0.0", 9091, True),
        ("health", "0.0.0.0", 8081, False),
        ("api", "0.0.0.0", 8090, False),  # HTTPS with the webhooks' certificate
        ("grpc", "0.0.0.0", 9090, False),  # TLS with the webhooks' certificate
    }
    chosen = operator_cli.options_from(parse("--decision-host", "192.0.2.1"), environ={}).serving
    assert chosen.decision_host == "192.0.2.1"
    assert chosen.listen_host == "127.0.0.1"
    disabled = operator_cli.options_from(
        parse(
            "--no-webhooks",
            "--decision-port=0",
            "--metrics-port=0",
            "--health-port=0",
            "--api-port=0",
            "--grpc-port=0",
        ),
        environ={},
    ).serving
    assert disabled.listeners() == []
    api = operator_cli.options_from(parse("--api-service", "joch-api.joch.svc"), environ={}).serving
    assert api.api_service == "joch-api.joch.svc"
    with pytest.raises(SettingsError, match="--api-service must be SVC"):
        operator_cli.options_from(parse("--api-service", "joch-api"), environ={})


def test_a_taken_port_given_as_a_flag_stops_the_operator_at_once(
    occupied: int, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    code = operator_cli.main(
        [
            "--kubeconfig",
            "/nonexistent/kubeconfig",  # reached only if the port check let it through
            "--no-webhooks",
            "--decision-port=0",
            "--health-port=0",
            f"--metrics-port={occupied}",
        ]
    )
    assert code == 1
    assert time.monotonic() - started < 5
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{occupied} for the metrics (--metrics-port)" in err
    assert "in use" in err.lower()
    assert "Traceback" not in err
    assert "kubeconfig" not in err


def test_a_taken_default_port_is_replaced_locally_and_refused_in_a_pod(occupied: int) -> None:
    taken = ports.Listener("metrics", "--metrics-port", "127.0.0.1", occupied, explicit=False)
    chosen = ports.reserve([taken], local=True)
    assert chosen["metrics"] not in (0, occupied)
    with socket.socket() as check:  # the free port really is free
        check.bind(("127.0.0.1", chosen["metrics"]))

    with pytest.raises(ports.PortError, match=rf"127\.0\.0\.1:{occupied} .*\(--metrics-port\)"):
        ports.reserve([taken], local=False)
    explicit = ports.Listener("health", "--health-port", "127.0.0.1", occupied, explicit=True)
    with pytest.raises(ports.PortError, match=r"health \(--health-port\)"):
        ports.reserve([explicit], local=True)


def test_free_ports_are_chosen_and_shared_ports_bound_once() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    chosen = ports.reserve(
        [
            ports.Listener("metrics", "--metrics-port", "127.0.0.1", port),
            ports.Listener("health", "--health-port", "127.0.0.1", port),
            ports.Listener("decisions", "--decision-port", "127.0.0.1", 0),
        ],
        local=True,
    )
    assert chosen["metrics"] == chosen["health"] == port
    assert chosen["decisions"] not in (0, port)


def test_two_servers_asking_for_one_port_conflict() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics = ports.Listener("metrics", "--metrics-port", "127.0.0.1", port)
    with pytest.raises(
        ports.PortError, match=r"for the grpc \(--grpc-port\): the metrics \(--metrics-port\)"
    ):
        ports.reserve([metrics, ports.Listener("grpc", "--grpc-port", "127.0.0.1", port)], local=True)
    chosen = ports.reserve(
        [metrics, ports.Listener("grpc", "--grpc-port", "127.0.0.1", port, explicit=False)], local=True
    )
    assert chosen["metrics"] == port
    assert chosen["grpc"] not in (0, port)


def test_the_chosen_ports_are_printed_and_used(
    capsys: pytest.CaptureFixture[str], occupied: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A default port taken (as by a second ``make run``): a free one is used, printed, and handed on.
    monkeypatch.setitem(runtime_options.DEFAULT_PORTS, "metrics", occupied)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    built: list[runtime_options.Options] = []

    def build(options: runtime_options.Options) -> None:
        # The composition root builds the process from the options with the chosen ports; stop there.
        built.append(options)
        raise errors.KubeError("no cluster in this test")

    monkeypatch.setattr(root, "build", build)
    code = operator_cli.main(
        ["--no-webhooks", "--decision-port=0", "--health-port=0", "--api-port=0", "--grpc-port=0"]
    )
    assert code == 1
    [options] = built
    serving = options.serving
    assert serving.metrics_port not in (0, occupied)
    captured = capsys.readouterr()
    assert f"joch operator: metrics on 127.0.0.1:{serving.metrics_port}\n" in captured.out
    assert "joch operator: error: no cluster in this test" in captured.err


def test_the_operator_issued_certificate_names_the_api_service_when_it_is_served() -> None:
    argv = ("--webhook-tls-secret", "joch/tls", "--webhook-service", "joch-webhook.joch.svc")
    pod = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "POD_NAMESPACE": "joch"}
    controller: Any = types.SimpleNamespace(kube=None)
    for extra, api_names in (
        (("--api-service", "joch-api.joch.svc"), True),
        (("--api-service", "joch-api.joch.svc", "--api-port=0"), False),
        ((), False),
    ):
        serving = operator_cli.options_from(parse(*argv, *extra), environ=pod).serving
        tls = root._webhook_tls(serving, controller)
        assert isinstance(tls, webhook_tls.SecretTLS)
        assert "joch-webhook.joch.svc" in tls.config.dns_names
        assert ("joch-api.joch.svc" in tls.config.dns_names) is api_names, extra


def test_services_none_runs_the_cache_and_servers_without_a_service() -> None:
    options = operator_cli.options_from(parse("--services", "none", "--no-webhooks"), environ={})
    assert options.controller.services == ("none",)
    assert [x.name for x in options.serving.listeners()] == ["decisions", "metrics", "health", "api", "grpc"]
    with pytest.raises(SystemExit):
        parse("--services", "none,compile")  # none means none: not mixed with names
