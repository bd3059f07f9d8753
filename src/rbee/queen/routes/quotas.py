"""Limits and prices (admin keys: /v1/admin/...) and usage (/v1/usage: a user key sees its
own tenant's, operators and admins every tenant's), as JSON or CSV.

A limit or price set here is in the queen's memory, and so in force, before the answer goes
out: the next request is checked against it.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from rbee.api.identity import Listed
from rbee.api.quotas import USAGE_COLUMNS, Limits, LimitsInfo, ModelPrices, Prices, UsageRow
from rbee.core.errors import Forbidden, InvalidRequest, NotFound, RbeeError
from rbee.models.catalog import parse_ref
from rbee.queen.auth import principal_of
from rbee.queen.deps import ServicesDep
from rbee.queen.routes.admin import audit_change
from rbee.queen.services import QueenServices
from rbee.web.body import parse_model

admin = APIRouter(prefix="/v1/admin")
usage = APIRouter(prefix="/v1")
Day = Annotated[str | None, Query(max_length=10)]
Name = Annotated[str | None, Query(max_length=512)]


@admin.get("/limits")
async def list_limits(svc: ServicesDep) -> Listed[LimitsInfo]:
    found = await asyncio.to_thread(svc.usage.store.all_limits)
    return Listed(data=[LimitsInfo(scope=s, id=i, **lim.model_dump()) for s, i, lim in found])


@admin.put("/tenants/{tenant}/limits")
async def set_tenant_limits(tenant: str, request: Request, svc: ServicesDep) -> LimitsInfo:
    limits = parse_model(await request.body(), Limits, request.headers.get("content-type"))
    found = await asyncio.to_thread(svc.keys.tenant, tenant)
    await asyncio.to_thread(svc.usage.store.set_limits, "tenant", found.id, limits)
    svc.quotas.set_limits("tenant", found.id, limits)
    audit_change(request, svc, "quota.set", found.name,
                 {"tenant_id": found.id, **limits.model_dump(exclude_none=True)})
    return LimitsInfo(scope="tenant", id=found.id, **limits.model_dump())


@admin.get("/tenants/{tenant}/limits")
async def get_tenant_limits(tenant: str, svc: ServicesDep) -> LimitsInfo:
    found = await asyncio.to_thread(svc.keys.tenant, tenant)
    limits = svc.quotas.limits("tenant", found.id)
    return LimitsInfo(scope="tenant", id=found.id, **limits.model_dump())


@admin.put("/keys/{key_id}/limits")
async def set_key_limits(key_id: str, request: Request, svc: ServicesDep) -> LimitsInfo:
    limits = parse_model(await request.body(), Limits, request.headers.get("content-type"))
    await asyncio.to_thread(svc.keys.key, key_id)
    await asyncio.to_thread(svc.usage.store.set_limits, "key", key_id, limits)
    svc.quotas.set_limits("key", key_id, limits)
    audit_change(request, svc, "quota.set", key_id, {"key": key_id,
                                                     **limits.model_dump(exclude_none=True)})
    return LimitsInfo(scope="key", id=key_id, **limits.model_dump())


@admin.get("/keys/{key_id}/limits")
async def get_key_limits(key_id: str, svc: ServicesDep) -> LimitsInfo:
    await asyncio.to_thread(svc.keys.key, key_id)
    return LimitsInfo(scope="key", id=key_id, **svc.quotas.limits("key", key_id).model_dump())


@admin.get("/prices")
async def list_prices(svc: ServicesDep) -> Listed[ModelPrices]:
    return Listed(data=await asyncio.to_thread(svc.usage.store.all_prices))


@admin.put("/prices/{model:path}")
async def set_prices(model: str, request: Request, svc: ServicesDep) -> ModelPrices:
    prices = parse_model(await request.body(), Prices, request.headers.get("content-type"))
    name = parse_ref(model).name  # as requests name it: an alias is its model
    await asyncio.to_thread(svc.usage.store.set_prices, name, prices)
    svc.quotas.set_prices(name, prices)
    audit_change(request, svc, "price.set", name, prices.model_dump(exclude_none=True))
    return ModelPrices(model=name, **prices.model_dump())


@admin.delete("/prices/{model:path}")
async def delete_prices(model: str, request: Request, svc: ServicesDep) -> ModelPrices:
    name = parse_ref(model).name
    if not await asyncio.to_thread(svc.usage.store.delete_prices, name):
        raise NotFound(f"model {name!r} has no prices", param="model")
    svc.quotas.set_prices(name, None)
    audit_change(request, svc, "price.delete", name, {})
    return ModelPrices(model=name)


@usage.get("/usage", response_model=None)
async def get_usage(request: Request, svc: ServicesDep, tenant: Name = None, key: Name = None,
                    model: Name = None, since: Day = None, until: Day = None,
                    format: Annotated[Literal["json", "csv"] | None, Query()] = None
                    ) -> Listed[UsageRow] | Response:
    """Usage per tenant, key, model and UTC day; `since`/`until`: YYYY-MM-DD, included."""
    principal = principal_of(request)
    for name, day in (("since", since), ("until", until)):
        if day is not None:
            _check_day(name, day)
    tenant_id = await _tenant_filter(svc, principal.sees_all_tenants(), principal.tenant_id,
                                     tenant)
    await svc.usage.flush()  # what the engines reported up to now, not a second ago
    rows = await asyncio.to_thread(
        svc.usage.store.usage, tenant_id=tenant_id, key_id=key,
        model=_model_name(model), since=since, until=until)
    wants_csv = format == "csv" or (format is None and "text/csv" in
                                    request.headers.get("accept", ""))
    if wants_csv:
        return Response(_csv(rows), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="usage.csv"'})
    return Listed(data=rows)


async def _tenant_filter(svc: QueenServices, sees_all: bool, own: str | None,
                         asked: str | None) -> str | None:
    if not sees_all:  # a user key: its own tenant's, whatever it asked for
        if asked is not None and asked != own:
            found = await asyncio.to_thread(svc.keys.tenant, asked)
            if found.id != own:
                raise Forbidden("a user key sees its own tenant's usage only", param="tenant")
        return own
    if asked is None:
        return None
    return (await asyncio.to_thread(svc.keys.tenant, asked)).id


def _model_name(model: str | None) -> str | None:
    """As requests name it (an alias is its model); a model no longer known by its own name:
    its usage stays."""
    if model is None:
        return None
    try:
        return parse_ref(model).name
    except RbeeError:
        return model


def _check_day(name: str, day: str) -> None:
    try:
        dt.date.fromisoformat(day)
    except ValueError:
        raise InvalidRequest(f"{name} must be a UTC day as YYYY-MM-DD", param=name) from None
    if len(day) != 10:
        raise InvalidRequest(f"{name} must be a UTC day as YYYY-MM-DD", param=name)


def _csv(rows: list[UsageRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(USAGE_COLUMNS)
    for row in rows:
        writer.writerow([_cell(getattr(row, c)) for c in USAGE_COLUMNS])
    return out.getvalue()


def _cell(value: object) -> object:
    # Ids and model names are ours, but a spreadsheet runs a cell starting with = + - @:
    # neutralised anyway (CSV injection).
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return f"'{value}"
    return value
