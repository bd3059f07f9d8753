"""Data residency (issue 13): a tenant bound to regions is routed to and placed on hives of
those regions only, by the scheduler itself (a script sees no other hive), and "no capacity
there" is an explicit error, never a fallback to another region."""

from __future__ import annotations

from typing import cast

import pytest

from rbee import __version__
from rbee.api.cluster import HiveTelemetry, WorkerInfo
from rbee.core.clock import FakeClock
from rbee.core.errors import NoRegionCapacity
from rbee.models.catalog import parse_ref
from rbee.queen.dispatch import Dispatcher, Hints, Silent
from rbee.queen.hive_client import HiveClient
from rbee.queen.policy import JobFacts, SchedulingPolicy
from rbee.queen.registry import Registry
from rbee.queen.scripts import compile_script
from tests.unit.queen.test_scheduling import GB, INTERVAL, FakeHives, device, ready

CHAT = parse_ref("rbee-fake")
REGIONS = {"acme-eu": frozenset({"eu"})}
EU = Hints(job=JobFacts(tenant="acme-eu"))
ANYONE = Hints(job=JobFacts(tenant="globex"))
# A script that always picks the US hive's worker / device when it can see one.
TO_THE_US = """
function route(req, workers)
  for _, w in ipairs(workers) do if w.region == "us" then return w end end
  return nil
end
function place(model, devices)
  for _, d in ipairs(devices) do if d.region == "us" then return d end end
  return nil
end"""


def _report(registry: Registry, hive: str, region: str | None, *workers: WorkerInfo) -> None:
    registry.report(HiveTelemetry(hive_id=hive, url=f"http://{hive}", version=__version__,
                                  pid=1, devices=[device("cpu", "cpu", 64 * GB)],
                                  workers=list(workers), region=region))


def _rig(policy: SchedulingPolicy | None = None, regions: dict[str, str | None] | None = None
         ) -> tuple[FakeClock, Registry, FakeHives, Dispatcher]:
    clock = FakeClock()
    registry = Registry(clock, INTERVAL)
    for hive, region in (regions or {"us-box": "us", "eu-box": "eu"}).items():
        _report(registry, hive, region)
    hives = FakeHives(registry)
    dispatcher = Dispatcher(registry, cast(HiveClient, hives), spawn_timeout=5,
                            default_threads=None, estimator=lambda _ref: GB, policy=policy,
                            residency=REGIONS.get)
    return clock, registry, hives, dispatcher


@pytest.mark.parametrize("script", [None, TO_THE_US], ids=["built-in", "script"])
async def test_an_eu_tenant_is_placed_and_routed_in_the_eu_only(script: str | None) -> None:
    policy = SchedulingPolicy("least-loaded", "most-free")
    if script is not None:
        policy.use(await compile_script(script, "to-the-us"))
    _, registry, hives, dispatcher = _rig(policy)
    us = await dispatcher.spawn(CHAT, Hints(hive_id="us-box"), Silent())
    _report(registry, "us-box", "us", ready(us))
    # Another tenant is routed to the US worker that exists...
    assert (await dispatcher.worker_for(CHAT, ANYONE, Silent())).id == us.id
    # ...the EU tenant gets a worker of its own, placed in the EU, and keeps using it.
    for _ in range(3):
        spawned = len(hives.spawned)
        eu = await _ready_worker(dispatcher, registry, EU)
        assert eu.hive_id == "eu-box", eu
        assert len(hives.spawned) <= spawned + 1


async def _ready_worker(dispatcher: Dispatcher, registry: Registry, hints: Hints
                        ) -> WorkerInfo:
    found = [w for w in registry.workers() if w.hive_id == "eu-box"]
    if not found:
        info = await dispatcher.spawn(CHAT, hints, Silent())
        _report(registry, "eu-box", "eu", ready(info))
    return await dispatcher.worker_for(CHAT, hints, Silent())


async def test_no_eu_capacity_is_an_explicit_error_never_a_fallback() -> None:
    _, registry, hives, dispatcher = _rig(regions={"us-box": "us", "lab": None})
    us = await dispatcher.spawn(CHAT, Hints(hive_id="us-box"), Silent())
    _report(registry, "us-box", "us", ready(us))
    for call in (dispatcher.worker_for(CHAT, EU, Silent()),
                 dispatcher.spawn(CHAT, EU, Silent())):
        with pytest.raises(NoRegionCapacity, match="acme-eu may only run in eu"):
            await call
    assert NoRegionCapacity.http_status == 503 and NoRegionCapacity.code == "no_region_capacity"
    # pinned to a hive outside its regions: that hive is not there for it
    with pytest.raises(NoRegionCapacity):
        await dispatcher.spawn(CHAT, Hints(hive_id="us-box", job=EU.job), Silent())
    assert [s.model for s in hives.spawned] == [CHAT.name]  # nothing placed for it


async def test_a_full_eu_is_an_explicit_error_too() -> None:
    _, _, _, dispatcher = _rig()
    big = Dispatcher(dispatcher._registry, dispatcher._hives,  # type: ignore[attr-defined]
                     spawn_timeout=5, default_threads=None, estimator=lambda _r: 100 * GB,
                     residency=REGIONS.get)
    with pytest.raises(NoRegionCapacity, match="no hive in eu can host"):
        await big.spawn(CHAT, EU, Silent())
