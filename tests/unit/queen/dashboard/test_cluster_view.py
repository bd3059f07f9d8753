"""The dashboard's cluster JSON, from a Registry on a fake clock."""

from __future__ import annotations

from rbee.api.cluster import Device, HiveTelemetry, WorkerInfo
from rbee.core.clock import FakeClock
from rbee.core.states import WorkerState
from rbee.queen.dashboard.cluster_view import RunningJob, cluster_view
from rbee.queen.identity import Principal
from rbee.queen.registry import Registry
from rbee.queen.watchdog import IdleTTL
from rbee.remote.hives_conf import HiveEntry

GIB = 1024**3
ADMIN = Principal(role="admin", key_id="bootstrap")
USER = Principal(role="user", key_id="k1", tenant_id="ten_a", tenant="a")


def worker(wid: str, device: str = "cuda:0", state: WorkerState = WorkerState.READY
           ) -> WorkerInfo:
    return WorkerInfo(id=wid, hive_id="gpu1", model="m", model_path="/m", device=device,
                      engine="fake", url="http://w", state=state, memory_bytes=GIB)


def registry(clock: FakeClock, *workers: WorkerInfo, interval: float = 2.0) -> Registry:
    reg = Registry(clock, telemetry_interval=interval)
    reg.report(HiveTelemetry(
        hive_id="gpu1", url="http://gpu1", version="1", pid=7, region="eu", labels={"a": "b"},
        devices=[Device(id="cuda:0", kind="cuda", name="H100", memory_total=80 * GIB,
                        memory_free=60 * GIB)], workers=list(workers)))
    return reg


def test_hives_devices_and_workers_with_idle_time_before_unload() -> None:
    clock = FakeClock()
    reg = registry(clock, worker("w1"), worker("w2"), interval=1000.0)
    reg.keep_warm("w2")
    reg.idle_for(reg.find_worker("w1"))  # type: ignore[arg-type]  # first seen idle now
    clock.advance(100.0)
    reg.acquire("w1")
    reg.release("w1")
    clock.advance(30.0)
    view = cluster_view(reg, {}, IdleTTL(300.0), [], ADMIN)
    (hive,) = view["hives"]
    assert hive["state"] == "up" and hive["region"] == "eu" and hive["labels"] == {"a": "b"}
    assert hive["last_report_s"] == 130.0 and not hive["remote"]
    (device,) = hive["devices"]
    assert device["memory_total"] == 80 * GIB and device["memory_free"] == 60 * GIB
    w1, w2 = device["workers"]
    assert (w1["idle_s"], w1["unload_in_s"], w1["keep_warm"]) == (30.0, 270.0, False)
    assert (w2["keep_warm"], w2["unload_in_s"]) == (True, None)


def test_a_silent_hive_is_down_and_its_workers_unknown() -> None:
    clock = FakeClock()
    reg = registry(clock, worker("w1"))
    clock.advance(7.0)  # three intervals of 2 s missed
    (hive,) = cluster_view(reg, {}, IdleTTL(), [], ADMIN)["hives"]
    assert hive["state"] == "down"
    assert hive["devices"][0]["workers"][0]["state"] == "unknown"


def test_configured_hives_show_before_they_register_and_while_installing() -> None:
    reg = registry(FakeClock())
    entries = {"m2": HiveEntry(name="m2", hostname="10.0.0.2", user="rbee", region="us")}
    jobs = [RunningJob("job-1", "hive_install", "m2", None)]
    hives = {h["id"]: h for h in cluster_view(reg, entries, IdleTTL(), jobs, ADMIN)["hives"]}
    assert hives["m2"]["state"] == "installing" and hives["m2"]["remote"] is True
    assert hives["m2"]["region"] == "us" and hives["m2"]["devices"] == []
    assert hives["gpu1"]["state"] == "up"


def test_a_user_sees_only_their_tenants_running_jobs() -> None:
    reg = registry(FakeClock())
    jobs = [RunningJob("job-a", "infer", "m", "ten_a"), RunningJob("job-b", "infer", "m", "ten_b"),
            RunningJob("job-c", "hive_stop", "gpu1", None)]
    assert [j["id"] for j in cluster_view(reg, {}, IdleTTL(), jobs, USER)["jobs"]] == ["job-a"]
    seen = cluster_view(reg, {}, IdleTTL(), jobs, ADMIN)
    assert len(seen["jobs"]) == 3 and seen["hives"][0]["state"] == "stopping"


def test_new_device_fields_pass_through_and_orphan_workers_still_show() -> None:
    reg = registry(FakeClock(), worker("w1"), worker("w9", device="cuda:7"))
    (hive,) = cluster_view(reg, {}, IdleTTL(), [], ADMIN)["hives"]
    assert [d["id"] for d in hive["devices"]] == ["cuda:0", "cuda:7"]
    assert [w["id"] for w in hive["devices"][1]["workers"]] == ["w9"]
    assert hive["devices"][0]["reserved"] == 0


def test_a_chat_workers_tokens_per_second_come_from_its_recent_streams() -> None:
    clock = FakeClock()
    reg = registry(clock, worker("w1"), worker("w2"))
    assert cluster_view(reg, {}, IdleTTL(0.0), [], ADMIN)["hives"][0]["devices"][0][
        "workers"][0]["tokens_per_s"] is None  # no stream yet: nothing to say
    reg.observed_rate("w1", 20.0)
    reg.observed_rate("w1", 10.0)  # a moving average: the last streams count most
    reg.observed_rate("gone", 99.0)  # a worker dropped meanwhile: ignored
    w1, w2 = cluster_view(reg, {}, IdleTTL(0.0), [], ADMIN)["hives"][0]["devices"][0]["workers"]
    assert w1["tokens_per_s"] == 17.0 and w2["tokens_per_s"] is None
    reg.drop_worker("gpu1", "w1")
    assert reg.tokens_per_second("w1") is None


async def test_a_stream_s_rate_is_its_data_frames_per_second() -> None:
    import asyncio

    from rbee.queen.calls import Watch

    loop = asyncio.get_running_loop()
    watch = Watch(loop, lambda reason: None, first=60.0, idle=60.0, until=None)
    watch.progress()
    assert watch.rate() is None  # one frame tells no rate
    for _ in range(10):
        await asyncio.sleep(0.01)
        watch.progress()
    watch.cancel()
    rate = watch.rate()
    assert rate is not None and 10 < rate < 110  # 10 gaps of ~10 ms (a busy machine: slower)


def test_a_user_is_not_shown_ssh_hosts_or_worker_errors() -> None:
    failed = WorkerInfo(id="w1", hive_id="gpu1", model="m", model_path="/m", device="cuda:0",
                        engine="fake", url="http://w", state=WorkerState.CRASHED,
                        error="cannot read /srv/models/secret.gguf")
    reg = registry(FakeClock(), failed)
    entries = {"gpu1": HiveEntry(name="gpu1", hostname="10.0.0.9", user="rbee")}
    as_user = cluster_view(reg, entries, IdleTTL(), [], USER)["hives"][0]
    as_admin = cluster_view(reg, entries, IdleTTL(), [], ADMIN)["hives"][0]
    assert (as_user["host"], as_admin["host"]) == (None, "10.0.0.9")
    errors = [h["devices"][0]["workers"][0]["error"] for h in (as_user, as_admin)]
    assert errors == [None, "cannot read /srv/models/secret.gguf"]


async def test_a_change_while_the_pusher_was_busy_is_not_missed() -> None:
    """The dashboard's pusher looks at `changes`, pushes, then waits: a hive that went down
    (and maybe up again) meanwhile must wake it at once, not a tick later."""
    reg = registry(FakeClock(), worker("w1"))
    seen = reg.changes
    reg.suspect("gpu1")  # the hive died while the pusher was sending
    assert await reg.wait_change(10.0, since=seen) is True  # at once, not in 10 s
    reg.suspect("gpu1")  # already down: no news
    assert reg.changes == seen + 1
    assert await reg.wait_change(0.01, since=reg.changes) is False
