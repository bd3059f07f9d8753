"""The admin API: tenants, users and API keys (admin keys only: queen.identity.path_role).

Created keys are in the answer once; the database holds only their hash.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request

from rbee.api.identity import (
    KeyCreate,
    KeyCreated,
    KeyInfo,
    Listed,
    Tenant,
    TenantCreate,
    User,
    UserCreate,
)
from rbee.queen.deps import ServicesDep
from rbee.web.body import parse_model

router = APIRouter(prefix="/v1/admin")


@router.post("/tenants")
async def create_tenant(request: Request, svc: ServicesDep) -> Tenant:
    body = parse_model(await request.body(), TenantCreate, request.headers.get("content-type"))
    return await asyncio.to_thread(svc.keys.create_tenant, body)


@router.get("/tenants")
async def list_tenants(svc: ServicesDep) -> Listed[Tenant]:
    return Listed(data=await asyncio.to_thread(svc.keys.tenants))


@router.post("/users")
async def create_user(request: Request, svc: ServicesDep) -> User:
    body = parse_model(await request.body(), UserCreate, request.headers.get("content-type"))
    return await asyncio.to_thread(svc.keys.create_user, body)


@router.get("/users")
async def list_users(svc: ServicesDep,
                     tenant: Annotated[str | None, Query(max_length=64)] = None
                     ) -> Listed[User]:
    return Listed(data=await asyncio.to_thread(svc.keys.users, tenant))


@router.post("/keys")
async def create_key(request: Request, svc: ServicesDep) -> KeyCreated:
    body = parse_model(await request.body(), KeyCreate, request.headers.get("content-type"))
    return await asyncio.to_thread(svc.keys.create_key, body)


@router.get("/keys")
async def list_keys(svc: ServicesDep,
                    tenant: Annotated[str | None, Query(max_length=64)] = None
                    ) -> Listed[KeyInfo]:
    return Listed(data=await asyncio.to_thread(svc.keys.keys, tenant))


@router.delete("/keys/{key_id}")
async def revoke_key(key_id: str, svc: ServicesDep) -> KeyInfo:
    return await asyncio.to_thread(svc.keys.revoke, key_id)
