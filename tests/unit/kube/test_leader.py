"""Leader election on a Lease (joch.kube.leader) against the in-memory API server (tests/fake_kube.py).

| case                                   | expected                                                  |
|----------------------------------------|-----------------------------------------------------------|
| no Lease                               | first replica creates it and leads                        |
| held and fresh                         | others stay followers                                     |
| holder stops renewing (crash)          | a follower takes over after lease_duration, transitions+1 |
| holder releases                        | a follower takes over at once                             |
| renew fails past renew_deadline        | the leader steps down (on_stopped), before expiry         |
| two replicas race for an expired Lease | exactly one wins (409 for the other)                      |
| timings                                | retry < deadline < duration enforced                      |
"""

from __future__ import annotations

import asyncio
import copy
import datetime
from typing import Any

import pytest

from joch.kube import leader
from tests.fake_kube import FakeKube


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def now(self) -> datetime.datetime:
        return datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(seconds=self.t)


def _elector(kube: FakeKube, clock: FakeClock, identity: str) -> leader.LeaderElector:
    config = leader.LeaseConfig(name="joch-leader", namespace="joch-system", identity=identity)
    return leader.LeaderElector(kube, config, monotonic=clock, now=clock.now)  # type: ignore[arg-type]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_first_replica_creates_the_lease_and_leads() -> None:
    kube, clock = FakeKube(), FakeClock()
    a = _elector(kube, clock, "a")
    assert run(a.try_acquire_or_renew())
    spec = kube.one("leases")["spec"]
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["renewTime"].endswith("Z")
    assert "." in spec["renewTime"]


def test_a_fresh_lease_keeps_others_out_until_it_expires() -> None:
    kube, clock = FakeKube(), FakeClock()
    a, b = _elector(kube, clock, "a"), _elector(kube, clock, "b")
    assert run(a.try_acquire_or_renew())
    assert not run(b.try_acquire_or_renew())
    clock.t += 10
    assert run(a.try_acquire_or_renew())  # renewed: the record changed
    assert not run(b.try_acquire_or_renew())
    clock.t += 14.9  # b saw the last renewal 14.9 s ago (its own clock)
    assert not run(b.try_acquire_or_renew())
    clock.t += 0.2  # a crashed: no renewal for more than lease_duration
    assert run(b.try_acquire_or_renew())
    spec = kube.one("leases")["spec"]
    assert spec["holderIdentity"] == "b"
    assert spec["leaseTransitions"] == 1
    assert not run(a.try_acquire_or_renew())  # the old leader is now a follower


def test_release_hands_over_at_once() -> None:
    async def scenario() -> None:
        kube, clock = FakeKube(), FakeClock()
        a, b = _elector(kube, clock, "a"), _elector(kube, clock, "b")
        assert await a.acquire()
        assert not await b.try_acquire_or_renew()
        await a.release()
        assert kube.one("leases")["spec"]["holderIdentity"] is None
        assert await b.try_acquire_or_renew()
        assert not a.is_leader
        assert a.released

    run(scenario())


def test_two_replicas_racing_for_an_expired_lease_one_wins() -> None:
    kube, clock = FakeKube(), FakeClock()
    a, b, c = (_elector(kube, clock, n) for n in "abc")
    assert run(a.try_acquire_or_renew())
    assert not run(b.try_acquire_or_renew())
    assert not run(c.try_acquire_or_renew())
    clock.t += 20
    stale = copy.deepcopy(kube.one("leases"))

    real_request = kube.request

    async def racing(method: str, path: str, **kwargs: Any) -> Any:
        if method == "GET":
            return copy.deepcopy(stale)  # both read the same expired record
        return await real_request(method, path, **kwargs)

    kube.request = racing  # type: ignore[method-assign]
    results = [run(b.try_acquire_or_renew()), run(c.try_acquire_or_renew())]
    assert sorted(results) == [False, True]


def test_leader_steps_down_when_it_cannot_renew() -> None:
    async def scenario() -> list[str]:
        kube, clock = FakeKube(), FakeClock()
        config = leader.LeaseConfig(
            name="l", namespace="n", identity="a", lease_duration=1.5, renew_deadline=1.0, retry_period=0.1
        )
        a = leader.LeaderElector(kube, config)  # type: ignore[arg-type]
        seen: list[str] = []

        async def started() -> None:
            seen.append("started")
            kube.down = True  # the API server becomes unreachable

        async def stopped() -> None:
            seen.append("stopped")
            await a.release()

        await asyncio.wait_for(a.run(on_started=started, on_stopped=stopped), timeout=5)
        del clock
        return seen

    assert run(scenario()) == ["started", "stopped"]


@pytest.mark.parametrize(
    ("duration", "deadline", "retry"), [(10, 10, 2), (15, 10, 10), (15, 20, 2), (15, 10, 0)]
)
def test_timings_must_nest(duration: float, deadline: float, retry: float) -> None:
    with pytest.raises(ValueError, match="retry_period < renew_deadline < lease_duration"):
        leader.LeaseConfig(
            name="l",
            namespace="n",
            identity="i",
            lease_duration=duration,
            renew_deadline=deadline,
            retry_period=retry,
        )


def test_default_identity_is_unique_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "joch-7d9f-abcde")
    first, second = leader.default_identity(), leader.default_identity()
    assert first.startswith("joch-7d9f-abcde_")
    assert first != second
