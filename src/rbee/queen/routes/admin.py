"""The admin API: tenants, users and API keys (admin keys only: queen.identity.path_role).

Created keys are in the answer once; the database holds only their hash.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from rbee.api.identity import (
    KeyCreate,
    KeyCreated,
    KeyInfo,
    Listed,
    Tenant,
    TenantCreate,
    TenantUpdate,
    User,
    UserCreate,
)
from rbee.queen.audit import Person
from rbee.queen.auth import principal_of
from rbee.queen.deps import ServicesDep
from rbee.queen.routes.openai import client_ip
from rbee.queen.services import QueenServices
from rbee.web.body import parse_model

router = APIRouter(prefix="/v1/admin")


def audit_change(request: Request, svc: QueenServices, what: str, subject: str | Person,
           details: dict[str, Any]) -> None:
    """An admin change, in the audit log with who made it (a key's id, never the key)."""
    actor = principal_of(request).actor(client_ip(request))
    svc.audit.admin_change(what, actor=actor, subject=subject, outcome="ok", details=details)


@router.post("/tenants")
async def create_tenant(request: Request, svc: ServicesDep) -> Tenant:
    body = parse_model(await request.body(), TenantCreate, request.headers.get("content-type"))
    tenant = await asyncio.to_thread(svc.keys.create_tenant, body)
    audit_change(request, svc, "tenant.create", tenant.name,
           {"tenant_id": tenant.id, "regions": tenant.regions})
    return tenant


@router.get("/tenants")
async def list_tenants(svc: ServicesDep) -> Listed[Tenant]:
    return Listed(data=await asyncio.to_thread(svc.keys.tenants))


@router.patch("/tenants/{tenant}")
async def update_tenant(tenant: str, request: Request, svc: ServicesDep) -> Tenant:
    body = parse_model(await request.body(), TenantUpdate, request.headers.get("content-type"))
    changed = await asyncio.to_thread(svc.keys.update_tenant, tenant, body)
    audit_change(request, svc, "tenant.update", changed.name,
                 {"tenant_id": changed.id, "requires_consent": changed.requires_consent})
    return changed


@router.post("/users")
async def create_user(request: Request, svc: ServicesDep) -> User:
    body = parse_model(await request.body(), UserCreate, request.headers.get("content-type"))
    user = await asyncio.to_thread(svc.keys.create_user, body)
    audit_change(request, svc, "user.create", Person(user.id), {"tenant_id": user.tenant_id})
    return user


@router.get("/users")
async def list_users(svc: ServicesDep,
                     tenant: Annotated[str | None, Query(max_length=64)] = None
                     ) -> Listed[User]:
    return Listed(data=await asyncio.to_thread(svc.keys.users, tenant))


@router.post("/keys")
async def create_key(request: Request, svc: ServicesDep) -> KeyCreated:
    body = parse_model(await request.body(), KeyCreate, request.headers.get("content-type"))
    made = await asyncio.to_thread(svc.keys.create_key, body)
    audit_change(request, svc, "key.create", made.id, {"tenant_id": made.tenant_id,
                                                 "role": made.role, "models": made.models})
    return made


@router.get("/keys")
async def list_keys(svc: ServicesDep,
                    tenant: Annotated[str | None, Query(max_length=64)] = None
                    ) -> Listed[KeyInfo]:
    return Listed(data=await asyncio.to_thread(svc.keys.keys, tenant))


@router.delete("/keys/{key_id}")
async def revoke_key(key_id: str, request: Request, svc: ServicesDep) -> KeyInfo:
    info = await asyncio.to_thread(svc.keys.revoke, key_id)
    audit_change(request, svc, "key.revoke", info.id, {"tenant_id": info.tenant_id})
    return info
