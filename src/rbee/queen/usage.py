"""The usage table's writer: rows add up in memory and go to SQLite in one transaction a
second (and at shutdown), so a request pays a dictionary update, not a disk write."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import replace

from rbee.api.quotas import UsageRow
from rbee.queen.erased import Erased
from rbee.queen.quotas import Account, Used
from rbee.storage.gdpr import ERASED
from rbee.storage.quotas import SUMS, QuotaStore

logger = logging.getLogger(__name__)
FLUSH_SECONDS = 1.0


def day_of(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d")


DAY = 86_400


class UsageLog:
    def __init__(self, store: QuotaStore, erased: Erased | None = None) -> None:
        self.store = store
        self._erased = erased or Erased()
        self._pending: dict[tuple[str, str, str, str], UsageRow] = {}
        self._task: asyncio.Task[None] | None = None
        self._day: tuple[int, str] = (-1, "")  # (UTC day number, its name): one strftime a day

    def record(self, account: Account, model: str, used: Used | None, cost: float,
               now: float) -> None:
        if self._erased.key(account.key_id):  # outlived its person's erasure: theirs too
            account = replace(account, key_id=ERASED)
        number = int(now // DAY)
        if number != self._day[0]:
            self._day = (number, day_of(now))
        key = (self._day[1], account.tenant_id, account.key_id, model)
        row = self._pending.get(key)
        if row is None:
            row = self._pending[key] = UsageRow(day=key[0], tenant_id=key[1], key_id=key[2],
                                                model=model)
        row.requests += 1
        if used is not None:
            row.prompt_tokens += used.prompt_tokens
            row.completion_tokens += used.completion_tokens
            row.audio_seconds += used.audio_seconds
            row.images += used.images
            row.video_seconds += used.video_seconds
            row.cost += cost

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            await asyncio.to_thread(self.store.add_usage, list(pending.values()))
        except BaseException:  # not written: kept for the next flush, added to what came since
            for key, row in pending.items():
                newer = self._pending.get(key)
                if newer is not None:
                    for column in SUMS:
                        setattr(row, column, getattr(row, column) + getattr(newer, column))
                self._pending[key] = row
            raise

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-log")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
            except Exception:  # a locked or full disk: logged, the queen keeps serving
                logger.exception("writing usage failed")
