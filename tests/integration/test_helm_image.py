"""The operator image the chart deploys (Dockerfile). No Docker engine here, so:

- the Dockerfile is checked for what the chart relies on: multi-stage, a slim final base, a numeric
  non-root USER matching the chart's runAsUser, no build tools installed in the final stage, exec-form
  ENTRYPOINT and CMD, the chart's ports exposed;
- its install step is replayed in a clean virtual environment (``pip install`` of this project with
  constraints.txt and the Dockerfile's pip settings, from a working directory outside the checkout), and
  the exact ENTRYPOINT + CMD run there with ``--help``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from joch.manifests import chart
from tests import helpers

pytestmark = pytest.mark.integration

DOCKERFILE = helpers.ROOT / "Dockerfile"
BUILD_TOOLS = ("gcc", "g++", "make", "build-essential", "cargo", "rustc", "clang", "cmake", "git")


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    steps = _instructions()
    last = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last:]


def _exec_form(word: str) -> list[str]:
    values = [rest for w, rest in _final_stage() if w == word]
    assert len(values) == 1, f"one {word} in the final stage"
    parsed = json.loads(values[0])
    assert isinstance(parsed, list), f"{word} must be exec form"
    assert all(isinstance(p, str) for p in parsed), f"{word} must be exec form"
    return parsed


def test_dockerfile_shape() -> None:
    steps = _instructions()
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) >= 2, "multi-stage: build and runtime"
    final = _final_stage()
    assert "slim" in final[0][1], final[0]
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the final stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "a numeric USER (runAsNonRoot can verify it)"
    assert int(uid) != 0, "a non-root USER"
    assert int(uid) == chart.Values().pod_security_context["runAsUser"]
    for word, rest in final:
        if word == "RUN":
            tokens = set(re.split(r"[\s;&|]+", rest))
            assert "install" not in tokens or not tokens & set(BUILD_TOOLS), f"build tools in runtime: {rest}"
            assert "apt-get install" not in rest, rest
            assert "apk add" not in rest, rest
    exposed = {int(p) for word, rest in final if word == "EXPOSE" for p in rest.split()}
    defaults = chart.Values()
    served = {defaults.metrics.port, defaults.health.port, defaults.webhook.port}
    assert served | {defaults.decisions.port, defaults.api.port, defaults.grpc.port} <= exposed
    assert _exec_form("ENTRYPOINT") == ["/opt/joch/bin/joch"]
    assert _exec_form("CMD")[0] == "operator"
    ignore = (helpers.ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[0 if not ignore[0].startswith("#") else 1] == "*", ".dockerignore starts from nothing"


def _pip_settings() -> tuple[dict[str, str], list[str]]:
    """The build stage's ENV (PIP_*) and the options of its `pip install`."""
    env: dict[str, str] = {}
    options: list[str] = []
    for word, rest in _instructions():
        if word == "ENV":
            env.update(dict(re.findall(r"(PIP_[A-Z_]+)=(\S+)", rest)))
        if word == "RUN" and "pip install" in rest:
            command = rest.split("&&")[0]
            words = shlex.split(command)
            options = [
                w for w in words[words.index("install") + 1 :] if w.startswith("-") or w.endswith(".txt")
            ]
            options = [o for o in options if o != "-c" and not o.endswith(".txt")]
    return env, options


@pytest.mark.timeout(900)
def test_entrypoint_runs_in_a_clean_virtual_environment(tmp_path: Path) -> None:
    venv = tmp_path / "opt-joch"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip_env, options = _pip_settings()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_"))}
    env.update(pip_env)
    env.pop("PIP_NO_CACHE_DIR", None)  # reuse this machine's wheel cache; the result is the same
    install = subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            *options,
            "-c",
            str(helpers.ROOT / "constraints.txt"),
            str(helpers.ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=840,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    entrypoint = _exec_form("ENTRYPOINT")
    command = [entrypoint[0].replace("/opt/joch", str(venv)), *entrypoint[1:], *_exec_form("CMD"), "--help"]
    run_env = {
        **env,
        "PATH": f"{venv / 'bin'}:{env.get('PATH', '')}",
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
    }
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=run_env, cwd=tmp_path, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
    assert "operator" in done.stdout
    # The installed package is the one that ran, not the checkout.
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import joch; print(joch.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=run_env,
        check=True,
    )
    assert where.stdout.strip().startswith(str(venv))
