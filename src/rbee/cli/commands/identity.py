"""`rbee tenant|user|key ...`: the admin API from the command line (an admin key needed).

A new key is printed once, alone on stdout (`KEY=$(rbee key create ...)`); the queen keeps
only its hash.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from rbee.cli.context import Context
from rbee.cli.errors import guarded
from rbee.cli.render import consoles, print_json, table, when
from rbee.core.errors import InvalidRequest

tenants = typer.Typer(help="Tenants: who the keys, quotas and usage belong to.",
                      no_args_is_help=True)
users = typer.Typer(help="Users of a tenant.", no_args_is_help=True)
keys = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
TenantOpt = Annotated[str | None, typer.Option("--tenant", "-t", help="Tenant id or name")]


def _admin(ctx: typer.Context, method: str, path: str, body: dict[str, Any] | None = None,
           params: dict[str, str] | None = None) -> Any:
    c: Context = ctx.obj
    return c.client().admin(method, path, body, params)


def _show(ctx: typer.Context, data: Any, title: str, columns: list[str],
          row: Any) -> int:
    c: Context = ctx.obj
    if c.json:
        print_json(data)
    else:
        consoles()[0].print(table(title, columns, [row(d) for d in data]))
    return 0


@tenants.command("create")
def tenant_create(ctx: typer.Context, name: Annotated[str, typer.Argument()],
                  label: Annotated[list[str] | None, typer.Option(
                      help="key=value, repeatable")] = None,
                  region: Annotated[list[str] | None, typer.Option(
                      help="Data residency: run only on hives of this Region (repeatable); "
                           "default: anywhere")] = None,
                  requires_consent: Annotated[bool, typer.Option(
                      help="GDPR: refuse its users' inference until they consent to "
                           "'processing'")] = False) -> None:
    """Create a tenant."""
    def run() -> int:
        labels = dict(_pair(x) for x in label or ())
        made = _admin(ctx, "POST", "/tenants", {"name": name, "labels": labels,
                                                "regions": region or None,
                                                "requires_consent": requires_consent})
        return _show(ctx, [made], "tenant created",
                     ["id", "name", "labels", "regions", "consent"], _tenant_row)
    guarded(run)


def _tenant_row(t: dict[str, Any]) -> list[str]:
    return [t["id"], t["name"], ", ".join(f"{k}={v}" for k, v in t["labels"].items()),
            ", ".join(t["regions"] or ["any"]), "required" if t["requires_consent"] else ""]


@tenants.command("set")
def tenant_set(ctx: typer.Context, tenant: Annotated[str, typer.Argument(
                   help="Tenant id or name")],
               requires_consent: Annotated[bool, typer.Option(
                   "--requires-consent/--no-requires-consent",
                   help="GDPR: refuse its users' inference until they consent to "
                        "'processing'")]) -> None:
    """Change a tenant's GDPR consent rule (its keys meet it on their next request)."""
    guarded(lambda: _show(ctx, [_admin(ctx, "PATCH", f"/tenants/{tenant}",
                                       {"requires_consent": requires_consent})],
                          "tenant changed", ["id", "name", "labels", "regions", "consent"],
                          _tenant_row))


@tenants.command("list")
def tenant_list(ctx: typer.Context) -> None:
    """Every tenant."""
    guarded(lambda: _show(ctx, _admin(ctx, "GET", "/tenants")["data"], "tenants",
                          ["id", "name", "labels", "regions", "consent", "created"],
                          lambda t: [*_tenant_row(t), when(t["created_at"])]))


@users.command("create")
def user_create(ctx: typer.Context, tenant: Annotated[str, typer.Argument(
                    help="Tenant id or name")],
                name: Annotated[str, typer.Argument()],
                email: Annotated[str | None, typer.Option()] = None) -> None:
    """Create a user of a tenant."""
    guarded(lambda: _show(ctx, [_admin(ctx, "POST", "/users", {
        "tenant": tenant, "name": name, "email": email})], "user created",
        ["id", "tenant", "name", "email"],
        lambda u: [u["id"], u["tenant_id"], u["name"], u["email"] or ""]))


@users.command("list")
def user_list(ctx: typer.Context, tenant: TenantOpt = None) -> None:
    """Users (of one tenant, or all)."""
    params = {"tenant": tenant} if tenant else None
    guarded(lambda: _show(ctx, _admin(ctx, "GET", "/users", params=params)["data"], "users",
                          ["id", "tenant", "name", "email"],
                          lambda u: [u["id"], u["tenant_id"], u["name"], u["email"] or ""]))


@keys.command("create")
def key_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="The user's id")],
    name: Annotated[str, typer.Option(help="What the key is for")] = "",
    role: Annotated[str, typer.Option(help="user, operator or admin")] = "user",
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="A model it may use (repeatable; default: all)")] = None,
    max_priority: Annotated[str, typer.Option(help="interactive or batch")] = "interactive",
    expires_in_days: Annotated[float | None, typer.Option(min=0.001)] = None,
) -> None:
    """Create an API key: printed once on stdout; the queen keeps only its hash."""
    c: Context = ctx.obj

    def run() -> int:
        made = _admin(ctx, "POST", "/keys", {
            "user": user, "name": name, "role": role, "models": model or None,
            "max_priority": max_priority, "expires_in_days": expires_in_days})
        if c.json:
            print_json(made)
            return 0
        consoles()[1].print(f"[green]key {made['id']} created[/green] ({made['role']}); "
                            "shown this once:", soft_wrap=True)
        consoles()[0].print(made["key"], markup=False, highlight=False, soft_wrap=True)
        return 0

    guarded(run)


@keys.command("list")
def key_list(ctx: typer.Context, tenant: TenantOpt = None) -> None:
    """API keys (never the keys themselves: their ids)."""
    params = {"tenant": tenant} if tenant else None
    guarded(lambda: _show(ctx, _admin(ctx, "GET", "/keys", params=params)["data"], "API keys",
                          ["id", "user", "role", "models", "expires", "revoked"],
                          lambda k: [k["id"], k["user_id"], k["role"],
                                     ", ".join(k["models"] or ["all"]),
                                     when(k["expires_at"]), when(k["revoked_at"])]))


@keys.command("revoke")
def key_revoke(ctx: typer.Context, key_id: Annotated[str, typer.Argument()]) -> None:
    """Revoke a key: refused from the next request on."""
    guarded(lambda: _show(ctx, [_admin(ctx, "DELETE", f"/keys/{key_id}")], "key revoked",
                          ["id", "user", "revoked"],
                          lambda k: [k["id"], k["user_id"], when(k["revoked_at"])]))


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InvalidRequest(f"--label {text!r} must be key=value", param="label")
    return key, value
