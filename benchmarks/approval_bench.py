"""Approval benchmark: the operator's Approval timeouts (one timer for every deadline), against baselines.

Run: ``python benchmarks/approval_bench.py [--approvals 10000] [--idle 20] [--spread 60]`` (about 10
minutes). It starts its own control plane (joch.devcluster: etcd and kube-apiserver alone, nothing else
acting on the API) in a temporary directory, reusing benchmarks/operator_bench.py's bare client,
watch-based progress and operator process. The operator is ``joch operator --write-rate 1000
--no-webhooks --decision-port=0 --metrics-port=0 --health-port=0 --api-port=0
--approval-minute-seconds=1`` managing the namespace bench-approvals; the bare client keeps 32 requests
in flight. Each figure is printed next to a baseline measured in the same run (ratio = figure /
baseline, lower is better):

1. idle cost: the operator's resident memory (VmRSS, /proc/<pid>/status, at the end of the window) and
   CPU seconds over an idle window (``--idle`` seconds) while N Approvals (kind Approval, spec action
   promotion, routing approvers [user:alice], onTimeout deny) are Pending and none is due. Baseline:
   the same operator over the same window with 0 Approvals, before they are created. The N are created
   by the bare client (32 in flight); the window starts once every one is Pending (a watch) and the
   operator's Requested Events have drained (its recorder sends 20/s from a queue of 1,000: without the
   wait the window would measure the Event sender, not N Pending deadlines).
2. deadline -> Expired: as the deadlines pass (spread evenly over ``--spread`` seconds, about N/spread
   a second), the time from each Approval's ``status.expiresAt`` to the arrival (client clock,
   time.time()) of the watch event showing phase Expired; p50 and p99 (nearest rank) over every
   Approval. Baseline: with the operator stopped, the same client patches the status of 200 other
   Approvals (namespace bench-approvals-base, never managed) from Pending to the operator's own Expired
   status, conditioned on their resourceVersion as the operator's write is, paced at the same mean rate;
   each one's delay runs from the patch's send to its watch event: the floor of one write plus one watch
   delivery. Also checked: every Approval Expired exactly once by system:joch:timeout (one Pending ->
   Expired transition per object on the watch, none left Pending), and the API server's write requests
   during the expiry wave (apiserver_request_total).

Deadlines: ``expiresAt`` = creationTimestamp + timeoutMinutes x ``--approval-minute-seconds``, whole
seconds. A minute of 1 s lets each create choose its deadline to the second: Approval i gets
timeoutMinutes = (first deadline + i x spread / N) - now, so the deadlines fall in one even wave starting
``--lead`` seconds after the first create (after the creates, the Pending writes, the Event drain and the
idle window) rather than in ten bursts. The benchmark fails rather than measure an idle window that a
deadline falls in, or one that starts while the Requested Events are still being sent. It fails (exit
status 1) too when a check does not hold. It also prints the operator's own lateness (decidedAt -
expiresAt, whole seconds), its CPU during each phase, the total time and the machine's load.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import os
import pathlib
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import execution_bench as eb
import operator_bench as ob

from joch.devcluster import ControlPlane

CONCURRENCY = 32
MINUTE_SECONDS = 1
ISOLATED = ("--no-webhooks", "--decision-port=0", "--metrics-port=0", "--health-port=0", "--api-port=0")
NS, NS_BASE = "bench-approvals", "bench-approvals-base"
APPROVALS_PATH = "/apis/runtime.joch.dev/v1alpha1/namespaces/{ns}/approvals"
EVENTS_PATH = "/api/v1/namespaces/{ns}/events"
TIMEOUT_USER = "system:joch:timeout"
BASELINE_PATCHES = 200
EXPIRED_FIELDS = ("phase", "decision", "decidedBy", "decidedAt", "rationale", "conditions")


# --- the workload -------------------------------------------------------------------------------------------


def approval_body(ns: str, name: str, minutes: int) -> dict[str, Any]:
    return {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Approval",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "action": {"type": "promotion"},
            "routing": {"approvers": ["user:alice"], "timeoutMinutes": minutes, "onTimeout": "deny"},
        },
    }


def parse_time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def phase_of(obj: dict[str, Any]) -> str | None:
    return (obj.get("status") or {}).get("phase")


# --- watching phases change ---------------------------------------------------------------------------------


class Transitions(ob.Progress):
    """ob.Progress that records, per object, the arrival (time.time()) of each watch event that moves its
    phase from Pending to Expired, counts the operator's first write (no phase -> Pending) and every other
    phase change; ``changes`` counts them all."""

    def __init__(self, bare: ob.Bare, ns: str) -> None:
        self.expired: dict[str, list[float]] = collections.defaultdict(list)
        self.requested = 0
        self.other: collections.Counter[str] = collections.Counter()
        self.changes = 0
        self.lock = threading.Lock()
        super().__init__(bare, ns, APPROVALS_PATH)

    def _event(self, event: dict[str, Any]) -> None:
        arrived = time.time()
        if event["type"] == "MODIFIED":
            obj = event["object"]
            name = obj["metadata"]["name"]
            before, after = phase_of(self.state.get(name) or {}), phase_of(obj)
            if before != after:
                with self.lock:
                    self.changes += 1
                    if before == "Pending" and after == "Expired":
                        self.expired[name].append(arrived)
                    elif before is None and after == "Pending":
                        self.requested += 1
                    else:
                        self.other[f"{before} -> {after}"] += 1
        super()._event(event)


# --- the operator and the cluster ---------------------------------------------------------------------------


def wait_events_drained(bare: ob.Bare, ns: str, *, quiet: float, until: float) -> tuple[int, float, bool]:
    """Poll the Events of ``ns`` (metadata only) until their count stays the same for ``quiet`` seconds or
    the wall clock passes ``until``; (how many, seconds waited, whether they stopped growing)."""
    accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
    t0 = time.monotonic()
    count, since = -1, time.monotonic()
    while True:
        listing = bare.call("GET", EVENTS_PATH.format(ns=ns), accept=accept)
        now = len(listing.get("items") or ())
        if now != count:
            count, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return count, time.monotonic() - t0, True
        if time.time() >= until:
            return count, time.monotonic() - t0, False
        time.sleep(0.5)


def idle(operator: ob.Operator, seconds: float) -> tuple[float, float]:
    """(CPU seconds over ``seconds`` of idling, VmRSS in MB at the end)."""
    cpu0 = operator.cpu()
    time.sleep(seconds)
    return operator.cpu() - cpu0, operator.memory()[0]


def create_all(bare: ob.Bare, ns: str, names: list[str], deadline: Callable[[int], float]) -> float:
    """Create the Approvals, each with timeoutMinutes (of MINUTE_SECONDS) chosen at its send so that its
    expiresAt falls on ``deadline(i)``; the seconds until every create returned."""
    t0 = time.monotonic()

    def create(i: int, name: str) -> None:
        now = time.time()  # creationTimestamp is this second, truncated (same machine, same clock)
        minutes = max(1, round((deadline(i) - int(now)) / MINUTE_SECONDS))
        bare.call("POST", APPROVALS_PATH.format(ns=ns), approval_body(ns, name, minutes))

    bare.many([lambda i=i, n=name: create(i, n) for i, name in enumerate(names)])
    return time.monotonic() - t0


def patch_paced(
    bare: ob.Bare, ns: str, rvs: dict[str, str], status: dict[str, Any], rate: float
) -> dict[str, float]:
    """Patch each object's status to ``status`` (merge patch on its resourceVersion, as the operator
    writes) at ``rate`` per second, each in the pool; each patch's send time (time.time())."""
    sent: dict[str, float] = {}
    lock = threading.Lock()

    def patch(name: str) -> None:
        body = {"metadata": {"resourceVersion": rvs[name]}, "status": {**status, "decidedAt": now_stamp()}}
        start = time.time()
        bare.call(
            "PATCH",
            f"{APPROVALS_PATH.format(ns=ns)}/{name}/status",
            body,
            content_type="application/merge-patch+json",
        )
        with lock:
            sent[name] = start

    futures = []
    t0 = time.monotonic()
    for i, name in enumerate(rvs):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        futures.append(bare.pool.submit(patch, name))
    for future in futures:
        future.result()
    return sent


def now_stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the run ------------------------------------------------------------------------------------------------


def run(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n", 1)[0],
        epilog=(__doc__ or "").split("\n\n", 1)[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--approvals", type=int, default=10000, help="Approvals created (N)")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of each idle window")
    parser.add_argument("--spread", type=float, default=60.0, help="seconds the deadlines are spread over")
    parser.add_argument(
        "--lead",
        type=float,
        help="seconds from the first create to the first deadline (default: 60 + idle + N/30)",
    )
    parser.add_argument(
        "--sample",
        type=int,
        default=0,
        help="measure the deadline -> Expired delay of this many Approvals only (default 0: all)",
    )
    parser.add_argument(
        "--baseline-patches", type=int, default=BASELINE_PATCHES, help="status patches of the baseline"
    )
    parser.add_argument("--state-dir", type=pathlib.Path, help="the control plane's files and logs go here")
    parser.add_argument(
        "--operator-arg",
        action="append",
        help=f"a `joch operator` argument (repeatable; default: {' '.join(ob.OPERATOR_ARGS)})",
    )
    args = parser.parse_args(argv)
    given = " ".join(argv if argv is not None else sys.argv[1:])
    command = "benchmarks/approval_bench.py" + (f" {given}" if given else "")
    n, window, spread = args.approvals, args.idle, args.spread
    # N/30: on the shared 2-core machine 10,000 creates took 117 s and their Pending writes until 174 s
    # (load 4-7), and the Requested Events then drain for up to 50 s more (1,000 queued at 20/s).
    lead = args.lead if args.lead is not None else 60 + window + n / 30
    base_n = args.baseline_patches
    base_args = args.operator_arg if args.operator_arg is not None else list(ob.OPERATOR_ARGS)
    extra = [*ISOLATED, *base_args, f"--approval-minute-seconds={MINUTE_SECONDS}"]
    state = args.state_dir or pathlib.Path(tempfile.mkdtemp(prefix="joch-approval-bench-"))
    began = time.monotonic()
    load_start = eb.loadavg()
    taken = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    names = [f"approval-{i:05d}" for i in range(n)]
    cp = ControlPlane(state / "control-plane", workloads=False)
    cp.start()
    try:
        kubeconfig = cp.kubeconfig
        ob.install_crds(kubeconfig)
        bare = ob.Bare(kubeconfig, CONCURRENCY)
        watcher = ob.Bare(kubeconfig, 4)  # the watches' own connections
        for ns in (NS, NS_BASE):
            ob.namespace(bare, ns)
        print(
            f"joch approval benchmark: {n} Approvals, deadlines over {spread:g}s starting {lead:.0f}s after "
            f"the first create, idle windows of {window:g}s; operator `joch operator {' '.join(extra)}`, "
            f"client {CONCURRENCY} in flight; logs in {state}",
            flush=True,
        )

        # --- 1. idle cost: 0 Approvals, then N Pending ------------------------------------------------------
        operator = ob.Operator(kubeconfig, NS, state / "operator.log", extra)
        operator.wait_synced()
        time.sleep(2)
        cpu_idle0, rss_idle0 = idle(operator, window)
        print(f"  1  idle, 0 Approvals: {rss_idle0:.1f} MB, {cpu_idle0:.2f} s CPU", flush=True)

        watch = Transitions(watcher, NS)
        cpu0, writes0 = operator.cpu(), eb.api_writes(bare)
        t0 = time.monotonic()
        first_deadline = int(time.time() + lead)

        def deadline(i: int) -> float:
            return first_deadline + spread * i / n

        created = create_all(bare, NS, names, deadline)
        pending = watch.wait(lambda obj: phase_of(obj) == "Pending", n, timeout=600) - t0
        cpu_create = operator.cpu() - cpu0
        writes_create = eb.describe_writes(writes0, eb.api_writes(bare))
        print(
            f"  1  {n} creates returned after {created:.1f}s, all Pending after {pending:.1f}s",
            flush=True,
        )
        deadlines = {
            name: parse_time((obj.get("status") or {}).get("expiresAt")) for name, obj in watch.state.items()
        }
        missing = [name for name, at in deadlines.items() if at is None]
        if missing:
            raise RuntimeError(f"{len(missing)} Pending Approvals without expiresAt, e.g. {missing[0]}")
        earliest = min(at for at in deadlines.values() if at is not None)
        latest = max(at for at in deadlines.values() if at is not None)
        events, drain, drained = wait_events_drained(bare, NS, quiet=3, until=earliest - window - 3)
        left = earliest - time.time()
        if left < window + 1 or not drained:
            raise RuntimeError(
                f"the first deadline is {left:.1f}s away and the Events are "
                f"{'drained' if drained else f'still being sent ({events} so far)'}: too soon for a "
                f"{window:g}s idle window, raise --lead (now {lead:.0f}s)"
            )
        print(
            f"  1  {events} Events in {NS} ({'drained' if drained else 'still growing'} after "
            f"{drain:.0f}s); first deadline in {left:.0f}s",
            flush=True,
        )
        template_pending = dict(watch.state[names[0]]["status"])
        changes0 = watch.changes
        cpu_idle, rss_idle = idle(operator, window)
        changed = watch.changes - changes0
        if changed or time.time() >= earliest:
            raise RuntimeError(f"the idle window was not idle: {changed} phase changes")
        print(f"  1  idle, {n} Pending: {rss_idle:.1f} MB, {cpu_idle:.2f} s CPU", flush=True)

        # --- 2. deadline -> Expired, every Approval ---------------------------------------------------------
        writes0 = eb.api_writes(bare)
        time.sleep(max(0.0, earliest - time.time() - 1))
        cpu0 = operator.cpu()
        try:
            watch.wait(lambda obj: phase_of(obj) == "Expired", n, timeout=latest - time.time() + 180)
        except TimeoutError as exc:
            print(f"  2  warning: {exc}", flush=True)
        time.sleep(2)  # writes in flight (the Expired Events follow at 20/s and are not waited for)
        cpu_expire = operator.cpu() - cpu0
        writes_expire = eb.api_writes(bare)
        rss_after = operator.memory()[0]
        watch.stop()
        operator.stop()
        listing = bare.call("GET", APPROVALS_PATH.format(ns=NS))
        final = {item["metadata"]["name"]: item.get("status") or {} for item in listing["items"]}
        phases = collections.Counter(status.get("phase") for status in final.values())
        by_timeout = sum(
            1
            for status in final.values()
            if status.get("phase") == "Expired"
            and status.get("decidedBy") == TIMEOUT_USER
            and status.get("decision") == "reject"
        )
        stuck = phases.get("Pending", 0)
        once = sum(1 for name in names if len(watch.expired.get(name) or ()) == 1)
        twice = sum(1 for name in names if len(watch.expired.get(name) or ()) > 1)
        measured = names if not args.sample else names[:: max(1, n // args.sample)][: args.sample]
        delays = [
            (watch.expired[name][0] - at) * 1000
            for name in measured
            if watch.expired.get(name) and (at := parse_time(final[name].get("expiresAt"))) is not None
        ]
        lateness = collections.Counter(
            round(decided - at)
            for status in final.values()
            if (decided := parse_time(status.get("decidedAt"))) is not None
            and (at := parse_time(status.get("expiresAt"))) is not None
        )
        template_expired = {k: final[names[0]][k] for k in EXPIRED_FIELDS if k in final[names[0]]}
        print(f"  2  operator: p50 {eb.p50(delays):.1f} ms over {len(delays)} Approvals", flush=True)

        # --- 2. baseline: status patches Pending -> Expired, no operator ------------------------------------
        base_names = [f"base-{i:05d}" for i in range(base_n)]
        bare.many(
            [
                lambda nm=name: bare.call(
                    "POST", APPROVALS_PATH.format(ns=NS_BASE), approval_body(NS_BASE, nm, 60)
                )
                for name in base_names
            ]
        )
        pending_bodies = bare.many(
            [
                lambda nm=name: bare.call(
                    "PATCH",
                    f"{APPROVALS_PATH.format(ns=NS_BASE)}/{nm}/status",
                    {"status": template_pending},
                    content_type="application/merge-patch+json",
                )
                for name in base_names
            ]
        )
        rvs = {body["metadata"]["name"]: body["metadata"]["resourceVersion"] for body in pending_bodies}
        base_watch = Transitions(watcher, NS_BASE)
        time.sleep(1)
        rate = min(n / spread, 1000.0)
        sent = patch_paced(bare, NS_BASE, rvs, template_expired, rate)
        base_watch.wait(lambda obj: phase_of(obj) == "Expired", base_n, timeout=120)
        base_watch.stop()
        base_delays = [(base_watch.expired[name][0] - sent[name]) * 1000 for name in base_names]
        bare.close()
        watcher.close()
    finally:
        for started in ob.STARTED:
            started.stop()
        cp.stop()
    load_end = eb.loadavg()

    lines: list[str] = []
    out = lines.append
    out(f"  {'figure (baseline: same run)':<76} {'value':>9}  ratio")
    out(
        ob.row(
            f"1  operator RSS, idle {window:g}s with {n} Approvals Pending, none due",
            rss_idle,
            rss_idle0,
            "MB",
        )
    )
    out(ob.row(f"   baseline: the same operator idle {window:g}s with 0 Approvals", rss_idle0, None, "MB"))
    out(ob.row(f"1  operator CPU over the {window:g}s idle window, {n} Pending", cpu_idle, cpu_idle0))
    out(ob.row("   baseline: the same window with 0 Approvals", cpu_idle0, None))
    label = f"2  deadline (expiresAt) -> Expired watch event, {len(delays)} Approvals: p50"
    out(ob.row(label, eb.p50(delays), eb.p50(base_delays), "ms"))
    out(ob.row(f"{' ' * (len(label) - 3)}p99", eb.p99(delays), eb.p99(base_delays), "ms"))
    out(
        f"     baseline: {base_n} status patches Pending -> Expired (no operator) at {rate:.0f}/s -> watch "
        f"event: p50 {eb.p50(base_delays):.1f} ms, p99 {eb.p99(base_delays):.1f} ms"
    )
    out(
        f"     delay min {min(delays):.0f} ms, max {max(delays):.0f} ms; the operator's decidedAt - "
        f"expiresAt (whole s): " + ", ".join(f"{k} s x{v}" for k, v in sorted(lateness.items()))
    )
    out(
        f"     Expired by {TIMEOUT_USER} (decision reject): {by_timeout}/{n}; still Pending: {stuck}; "
        f"phases {dict(phases)}"
    )
    out(
        f"     watch: {once} Approvals moved Pending -> Expired exactly once, {twice} more than once, "
        f"other phase changes {dict(watch.other) or 'none'}"
    )
    writes_wave = eb.describe_writes(writes0, writes_expire)
    out(f"     API writes during the expiry wave (every client): {writes_wave}")
    out(
        f"     deadlines {latest - earliest:.0f}s from first to last "
        f"({n / max(1.0, latest - earliest):.0f}/s); "
        f"operator RSS after the wave {rss_after:.1f} MB"
    )
    out(
        f"     operator CPU: {cpu_create:.1f}s creating {n} (until all Pending, {pending:.0f}s), "
        f"{cpu_expire:.1f}s over the expiry wave ({os.cpu_count()} cores in all)"
    )
    out(
        f"     creates returned after {created:.1f}s; {events} Requested Events "
        f"({'drained' if drained else 'still being sent'} {drain:.0f}s later)"
    )
    failed = [
        what
        for what, bad in (
            (f"{n - by_timeout} not Expired by {TIMEOUT_USER}", by_timeout != n),
            (f"{stuck} still Pending", stuck),
            (f"{n - once} not seen Pending -> Expired exactly once", once != n),
            (f"other phase changes {dict(watch.other)}", watch.other),
        )
        if bad
    ]
    out(f"     checks: {'FAILED: ' + '; '.join(failed) if failed else 'all hold'}")
    out(f"  API writes while creating (every client): {writes_create}")

    print()
    print("\n".join(lines))
    total = time.monotonic() - began
    print(f"  total benchmark time {total:.0f}s; load {load_start} at the start, {load_end} at the end")
    print()
    print("--- markdown for BENCHMARKS.md ---")
    print("## Approvals")
    print()
    print(
        f"`benchmarks/approval_bench.py`: the operator's Approval timeouts (one timer for every deadline). "
        f"(1) The operator's RSS and CPU over a {window:g} s idle window with {n} Approvals Pending and none "
        f"due, against the same operator over the same window with 0 Approvals. (2) The delay from each "
        f"Approval's `status.expiresAt` to the watch event showing it Expired, for all {n} with deadlines "
        f"spread over {spread:g} s, against {base_n} bare status patches (Pending -> Expired, another "
        f"namespace, no operator) from their send to their watch event at the same mean rate: the floor "
        f"of one write and one watch delivery. Same run, same client ({CONCURRENCY} in flight)."
    )
    print()
    print(
        f"Command: `.venv/bin/python {command}` (taken {taken}, load {load_start} "
        f"at the start and {load_end} at the end, {total:.0f}s in all):"
    )
    print()
    print("```text")
    print("\n".join(line for line in lines if not line.startswith("  API writes")))
    print("```")
    print("--- end ---")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    finally:
        for operator in ob.STARTED:  # only the operators this benchmark started
            operator.stop()


if __name__ == "__main__":
    sys.exit(main())
