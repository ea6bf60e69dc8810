"""`make run` (``joch dev run``): the main job on the embedded default store, twice on one state folder.

One test, as a user does it: the first run starts kube-apiserver on SQLite (kine) under the state
folder, installs the CRDs, runs the operator, applies examples/ and shows every Agent Ready; once the
fleet has settled, Ctrl-C (SIGINT) stops everything. The second run on the same folder finds the fleet
as it was (the same manifest), and the restarted operator writes nothing: its initial sync compiles
every Agent and writes no ConfigMap and no status. Nothing is left running after either run.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests import helpers

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
STAYS_UP = "stay up until Ctrl-C"
MANIFEST = re.compile(r"CompiledAgentManifest (\S+) \(sha256 (\w+)")


class DevRun:
    """``joch dev run`` in the background, as `make run` runs it; its output collected."""

    def __init__(self, state: Path) -> None:
        self.state = state
        argv = [
            sys.executable,
            "-m",
            "joch.cli.main",
            "dev",
            "run",
            f"--state-dir={state}",
            f"--examples={REPO / 'examples'}",
            f"--crds={REPO / 'crds'}",
        ]
        self.out = (state.parent / f"{state.name}-{time.monotonic_ns()}.out").open("w+")
        self.process = subprocess.Popen(argv, stdout=self.out, stderr=subprocess.STDOUT, text=True, cwd=REPO)

    def output(self) -> str:
        self.out.flush()
        return Path(self.out.name).read_text()

    def wait_for(self, text: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if text in out:
                return out
            assert self.process.poll() is None, f"joch dev run exited ({self.process.returncode}):\n{out}"
            time.sleep(0.5)
        pytest.fail(f"joch dev run never printed {text!r}:\n{self.output()}")

    def interrupt(self) -> str:
        """Ctrl-C: every process stops, exit 0."""
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(timeout=60) == 0, self.output()
        self.out.close()
        assert helpers.wait_no_processes(self.state) == []
        return Path(self.out.name).read_text()


def versions(kubeconfig: Path) -> dict[str, str]:
    """resourceVersion of every joch object (status writes move it)."""
    got = helpers.make_kubectl(str(kubeconfig))("get", "joch", "-A", "-o", "json")
    assert got.returncode == 0, got.stderr
    items = json.loads(got.stdout)["items"]
    return {
        f"{i['kind']}/{i['metadata'].get('namespace')}/{i['metadata']['name']}": i["metadata"][
            "resourceVersion"
        ]
        for i in items
    }


def settled(kubeconfig: Path, quiet: float = 3.0, timeout: float = 120) -> None:
    """Wait until no joch object changed for ``quiet`` seconds (the operator has caught up)."""
    deadline = time.monotonic() + timeout
    last, since = versions(kubeconfig), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = versions(kubeconfig)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    pytest.fail("the fleet kept changing")


def initial_syncs(log: Path) -> list[dict[str, int]]:
    """The counters of every 'initial sync complete' line the operator logged, in order."""
    return [
        {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line)}
        for line in log.read_text().splitlines()
        if "initial sync complete" in line
    ]


def test_a_second_run_finds_the_fleet_as_it_was_and_writes_nothing(tmp_path: Path) -> None:
    state = tmp_path / "dev"
    run = state / "run"

    first = DevRun(state)
    out = first.wait_for("/v1/namespaces/default/agents")  # the last line printed: the API's
    assert STAYS_UP in out
    assert "on the sqlite store" in out
    assert "Agent support/support-triage: phase Ready" in out
    api = re.search(r"The /v1 API \(docs/api.md\) listens on (http://127\.0\.0\.1:\d+);", out)
    assert api is not None, out
    with urllib.request.urlopen(api.group(1) + "/healthz", timeout=30) as answer:
        assert json.loads(answer.read()) == {"status": "ok"}
    manifest = MANIFEST.search(out)
    assert manifest is not None, out
    assert (run / "store").read_text().strip() == "sqlite"
    assert (run / "kine" / "state.db").is_file()
    settled(run / "kubeconfig")
    first.interrupt()
    before = initial_syncs(run / "operator.log")

    second = DevRun(state)
    out = second.wait_for(STAYS_UP)
    assert "on the sqlite store" in out
    again = MANIFEST.search(out)
    assert again is not None, out
    assert again.groups() == manifest.groups()  # the same manifest, not a new one
    deadline = time.monotonic() + 120
    while len(initial_syncs(run / "operator.log")) == len(before) and time.monotonic() < deadline:
        time.sleep(0.5)
    second.interrupt()
    restart = initial_syncs(run / "operator.log")[len(before) :]
    assert len(restart) == 1, restart
    (counts,) = restart
    assert counts["compiles"] >= 1  # it did compile every Agent again ...
    assert counts["configmaps_written"] == 0  # ... and found everything already right
    assert counts["configmaps_deleted"] == 0
    assert counts["status_patches"] == 0
