"""Limits, prices and usage in the queen's database (the quotas migration).

Usage rows are added to, never rewritten from memory: `add_usage` upserts a batch of deltas
in one transaction, so a crash loses at most the batch not yet written (queen.usage).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from rbee.api.quotas import USAGE_COLUMNS, Limits, ModelPrices, Prices, Scope, UsageRow
from rbee.storage.db import Database

SUMS = ("requests", "prompt_tokens", "completion_tokens", "audio_seconds", "images",
         "video_seconds", "cost")
# Column names below are this module's constants, never input.
_UPSERT = (f"INSERT INTO usage({', '.join(USAGE_COLUMNS)}) "  # noqa: S608
           f"VALUES ({', '.join('?' * len(USAGE_COLUMNS))}) "
           "ON CONFLICT(day, tenant_id, key_id, model) DO UPDATE SET "
           + ", ".join(f"{c}={c}+excluded.{c}" for c in SUMS))
_TOTALS = ("SELECT {column}, SUM(CASE WHEN day=? THEN prompt_tokens+completion_tokens ELSE 0 "
           "END), SUM(cost) FROM usage WHERE day>=? GROUP BY {column}")


class QuotaStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- limits
    def set_limits(self, scope: Scope, id_: str, limits: Limits) -> None:
        if limits.empty():
            self._db.execute("DELETE FROM quota_limits WHERE scope=? AND id=?", (scope, id_))
            return
        self._db.execute("INSERT INTO quota_limits(scope, id, limits) VALUES (?,?,?) "
                         "ON CONFLICT(scope, id) DO UPDATE SET limits=excluded.limits",
                         (scope, id_, limits.model_dump_json()))

    def all_limits(self) -> list[tuple[Scope, str, Limits]]:
        rows = self._db.query("SELECT scope, id, limits FROM quota_limits ORDER BY scope, id")
        return [(r[0], r[1], Limits.model_validate_json(r[2])) for r in rows]

    # -- prices
    def set_prices(self, model: str, prices: Prices) -> None:
        self._db.execute("INSERT INTO model_prices(model, prices) VALUES (?,?) "
                         "ON CONFLICT(model) DO UPDATE SET prices=excluded.prices",
                         (model, prices.model_dump_json()))

    def delete_prices(self, model: str) -> bool:
        return self._db.execute("DELETE FROM model_prices WHERE model=?", (model,)) > 0

    def all_prices(self) -> list[ModelPrices]:
        rows = self._db.query("SELECT model, prices FROM model_prices ORDER BY model")
        return [ModelPrices(model=r[0], **json.loads(r[1])) for r in rows]

    # -- usage
    def add_usage(self, rows: Iterable[UsageRow]) -> None:
        with self._db.transaction() as conn:
            conn.executemany(_UPSERT, [tuple(getattr(r, c) for c in USAGE_COLUMNS) for r in rows])

    def usage(self, *, tenant_id: str | None = None, key_id: str | None = None,
              model: str | None = None, since: str | None = None, until: str | None = None
              ) -> list[UsageRow]:
        """Rows matching every filter given; `since`/`until` are UTC days, both included."""
        where: list[str] = []
        args: list[Any] = []
        for column, op, value in (("tenant_id", "=", tenant_id), ("key_id", "=", key_id),
                                  ("model", "=", model), ("day", ">=", since),
                                  ("day", "<=", until)):
            if value is not None:
                where.append(f"{column} {op} ?")
                args.append(value)
        sql = f"SELECT {', '.join(USAGE_COLUMNS)} FROM usage"  # noqa: S608 (constants)
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._db.query(f"{sql} ORDER BY day, tenant_id, key_id, model", args)
        return [UsageRow(**dict(zip(USAGE_COLUMNS, r, strict=True))) for r in rows]

    def totals_since(self, day: str, month_start: str) -> Sequence[tuple[str, str, int, float]]:
        """Per (scope, id): tokens used on `day` and cost since `month_start` (both UTC days):
        what the day and budget windows restart from."""
        rows: list[tuple[str, str, int, float]] = []
        for scope, column in (("tenant", "tenant_id"), ("key", "key_id")):
            found = self._db.query(_TOTALS.format(column=column), (day, month_start))
            rows.extend((scope, r[0], int(r[1] or 0), float(r[2] or 0.0)) for r in found)
        return rows
