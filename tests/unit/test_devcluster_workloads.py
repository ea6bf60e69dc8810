"""The local cluster's controllers, as configured (joch.devcluster.workloads): pure checks of the
addresses, stages and arguments; tests/integration/test_cluster_workloads.py runs them."""

from __future__ import annotations

import ipaddress

import yaml

from joch.devcluster import cluster, workloads


def test_fake_addresses_are_documentation_ranges_apart_from_the_service_range() -> None:
    nodes, pods = ipaddress.ip_network(workloads.NODE_CIDR), ipaddress.ip_network(workloads.POD_CIDR)
    services = ipaddress.ip_network(cluster.SERVICE_CLUSTER_IP_RANGE)
    documentation = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
    assert any(nodes.subnet_of(d) for d in documentation)
    assert any(pods.subnet_of(d) for d in documentation)
    assert not nodes.overlaps(pods)
    assert not services.overlaps(nodes)
    assert not services.overlaps(pods)


def test_every_fake_node_has_its_own_address_inside_the_node_range() -> None:
    nodes = [workloads.fake_node(index, "v1.37.2") for index in range(3)]
    addresses = [
        a["address"] for node in nodes for a in node["status"]["addresses"] if a["type"] == "InternalIP"
    ]
    assert len(set(addresses)) == 3
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network(workloads.NODE_CIDR) for a in addresses)
    assert [n["metadata"]["name"] for n in nodes] == workloads.fake_node_names(3)
    assert all(n["metadata"]["annotations"][workloads.FAKE_NODE_ANNOTATION] == "fake" for n in nodes)
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes} == {"v1.37.2"}


def test_kwok_config_has_the_stages_a_job_needs_and_only_manages_fake_nodes() -> None:
    documents = list(yaml.safe_load_all(yaml.safe_dump_all(workloads.kwok_config())))
    options, *stages = documents
    assert options["kind"] == "KwokConfiguration"
    assert options["options"]["manageNodesWithAnnotationSelector"] == f"{workloads.FAKE_NODE_ANNOTATION}=fake"
    assert options["options"]["cidr"] == workloads.POD_CIDR
    assert ipaddress.ip_address(options["options"]["nodeIP"]) in ipaddress.ip_network(workloads.NODE_CIDR)
    assert options["options"]["serverAddress"] == ""  # no kubelet-like server
    names = {stage["metadata"]["name"]: stage for stage in stages}
    assert set(names) == {
        "node-initialize",
        "node-heartbeat-with-lease",
        "pod-ready",
        "pod-complete",
        "pod-delete",
    }
    assert {stage["kind"] for stage in stages} == {"Stage"}
    complete = names["pod-complete"]["spec"]
    assert {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]} in complete[
        "selector"
    ]["matchExpressions"]
    assert workloads.RUN_FOR_ANNOTATION in complete["delay"]["durationFrom"]["expressionFrom"]
    assert workloads.EXIT_CODE_ANNOTATION in complete["next"]["statusTemplate"]
    assert names["pod-delete"]["spec"]["next"] == {"delete": True}


def test_the_controllers_serve_no_port_and_elect_no_leader() -> None:
    manager = workloads.controller_manager_args(
        kubeconfig="k",
        root_ca="ca",
        service_account_key="sa",
        signing_cert="c",
        signing_key="key",
        service_cluster_ip_range="10.0.0.0/24",
        cluster_name="joch-dev",
    )
    scheduler = workloads.scheduler_args(kubeconfig="k")
    for argv in (manager, scheduler):
        assert "--secure-port=0" in argv
        assert "--leader-elect=false" in argv
    assert "--use-service-account-credentials=false" in manager  # one identity: a fast start
