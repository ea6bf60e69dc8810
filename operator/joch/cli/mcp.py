"""``joch mcp pin NAME``: accept what the MCP gateway discovered as an MCPServer's new pins.

Reads the MCPServer's ``status.discovered`` (version, tools with schema hashes) and writes them into
``spec.security.pinnedVersion`` and ``spec.security.pinnedTools`` by server-side apply (field manager
``joch-mcp-pin``), so the ``Drifted`` condition clears and gateways accept the server again. A GitOps
repository that owns those fields would undo the pin on its next sync: the command then fails with the
owner's name (``--force-conflicts`` takes the fields over) and prints the YAML to commit instead.

Exit 0 pinned (or, with ``--dry-run``, would pin), 1 nothing to pin or the API server refused, 2 usage or
connection errors.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO
from urllib.parse import quote

import yaml

from joch.api.v1alpha1.mcpserver import MCPServer
from joch.cli import flags
from joch.kube.rest import Cluster, ClusterError

__all__ = ["pins_of", "register", "run_pin"]

FIELD_MANAGER = "joch-mcp-pin"


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "mcp", help="MCP servers: accept discovered tools and versions as pins"
    )
    actions = parser.add_subparsers(dest="mcp_command", metavar="ACTION", required=True)
    pin = actions.add_parser(
        "pin",
        help="accept what the MCP gateway discovered as the server's pins (clears Drifted)",
        description="Copy MCPServer status.discovered (version and tool schema hashes) into "
        "spec.security.pinnedVersion and spec.security.pinnedTools. Exit 0 pinned, 1 nothing discovered "
        "or refused, 2 usage or connection errors.",
    )
    pin.add_argument("name", metavar="NAME", help="the MCPServer")
    pin.add_argument("-n", "--namespace", default="default", help="its namespace (default: default)")
    pin.add_argument("--dry-run", action="store_true", help="show the pins; write nothing")
    pin.add_argument(
        "--force-conflicts", action="store_true", help="take the pin fields over from another field manager"
    )
    flags.add_kube_flags(pin)
    pin.set_defaults(handler=run_pin)


def pins_of(server: dict[str, Any]) -> dict[str, Any] | None:
    """``spec.security`` pins from the server's discovery (None when nothing was discovered)."""
    discovered = (server.get("status") or {}).get("discovered")
    if not isinstance(discovered, dict):
        return None
    security: dict[str, Any] = {}
    if discovered.get("version"):
        security["pinnedVersion"] = discovered["version"]
    tools = [
        {"name": item["name"], "schemaSha": item["schemaSha"]}
        for item in discovered.get("tools") or ()
        if isinstance(item, dict) and item.get("name") and item.get("schemaSha")
    ]
    security["pinnedTools"] = sorted(tools, key=lambda item: item["name"])
    return security


def run_pin(args: argparse.Namespace, *, out: TextIO | None = None, cluster: Cluster | None = None) -> int:
    out = out or sys.stdout
    crd = MCPServer.crd
    path = (
        f"/apis/{crd.group}/v1alpha1/namespaces/{quote(args.namespace, safe='')}/{crd.plural}/"
        f"{quote(args.name, safe='')}"
    )
    where = f"MCPServer {args.namespace}/{args.name}"
    try:
        cluster = cluster or Cluster.connect(
            args.kubeconfig, args.context, impersonate=getattr(args, "as_user", None)
        )
        found = cluster.call("GET", path)
        problem = f"{where} not found" if found.status == 404 else found.error and f"{where}: {found.error}"
        security = pins_of(found.body) if not problem else None
        if security is None:
            problem = problem or (
                f"{where} has no status.discovered yet (the MCP gateway has not reported a discovery): "
                "nothing to pin"
            )
            sys.stderr.write(f"joch mcp pin: error: {problem}\n")
            return 1
        body = {
            "apiVersion": crd.api_version,
            "kind": "MCPServer",
            "metadata": {"name": args.name, "namespace": args.namespace},
            "spec": {"security": security},
        }
        snippet = yaml.safe_dump({"spec": {"security": security}}, sort_keys=False)
        if args.dry_run:
            out.write(f"{where}: would pin\n{snippet}")
            return 0
        query = {"fieldManager": FIELD_MANAGER, **({"force": "true"} if args.force_conflicts else {})}
        answer = cluster.call("PATCH", path, query=query, body=body)
    except ClusterError as exc:
        sys.stderr.write(f"joch mcp pin: error: {exc}\n")
        return 2
    if answer.error is not None:
        hint = " (another field manager owns the pins: commit them there, or pass --force-conflicts)"
        sys.stderr.write(
            f"joch mcp pin: error: {where}: {answer.error}{hint if answer.status == 409 else ''}\n"
            f"the pins, for a GitOps repository:\n{snippet}"
        )
        return 1
    tools = len(security["pinnedTools"])
    version = security.get("pinnedVersion", "unchanged")
    out.write(f"{where}: pinned version {version} and {tools} tool schema(s)\n")
    return 0
