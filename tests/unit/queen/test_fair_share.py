"""Fair share (issue 13): tenants take turns in a model's admission queue, so a tenant that
floods it cannot starve another. Measured against a real worker app (fake engine, one slot),
with a control: the same requests made by the flooding tenant wait behind its flood."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.unit.queen.quota_rig import Rig, rig

FLOOD, FEW = 200, 5


async def _timed(queen: Rig, key: str) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    answer = await queen.chat(key, max_tokens=1)
    return time.monotonic() - started, answer


async def _round(queen: Rig, flooder: str, other: str) -> tuple[list[float], float, int]:
    """A floods; once its requests are queued, `other` sends a few. Their waits, the flood's
    whole time, and how many of the flood's were still unanswered when the few were done."""
    started = time.monotonic()
    flood = [asyncio.create_task(queen.chat(flooder, max_tokens=1)) for _ in range(FLOOD)]
    while queen.svc.admission.queued("rbee-fake") < FLOOD // 2:
        await asyncio.sleep(0.001)
    few = await asyncio.gather(*(_timed(queen, other) for _ in range(FEW)))
    pending = sum(not t.done() for t in flood)
    answers = await asyncio.gather(*flood)
    whole = time.monotonic() - started
    assert all(a.status_code == 200 for a in answers)
    assert all(a.status_code == 200 for _, a in few)
    return [wait for wait, _ in few], whole, pending


async def test_one_tenant_flooding_does_not_starve_another(tmp_path: Path) -> None:
    async with rig(tmp_path, slots=1, tokens_per_second=500, max_queue=1000) as queen:
        a = (await queen.key("flood"))["key"]
        a2 = (await queen.key("flood"))["key"]  # the same tenant: no turn of its own
        b = (await queen.key("quiet"))["key"]
        fair, whole, pending = await _round(queen, a, b)
        # B's requests each waited for about one of A's per turn, not for A's queue: they
        # were all answered while most of A's flood was still waiting.
        assert max(fair) < whole / 4, (fair, whole)
        assert pending > FLOOD // 3, pending
        unfair, _, pending_same = await _round(queen, a, a2)
        assert max(unfair) > 4 * max(fair), (unfair, fair)  # the control: behind the flood
        assert pending_same < pending
