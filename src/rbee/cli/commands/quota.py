"""`rbee quota set|show|price` (admin keys) and `rbee usage` (any key: a user key sees its
own tenant's)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from rbee.cli.context import Context
from rbee.cli.errors import guarded
from rbee.cli.render import consoles, print_json, table
from rbee.core.errors import InvalidRequest

app = typer.Typer(help="Limits per tenant or key, and prices per model.", no_args_is_help=True)
LIMITS = ("requests_per_minute", "tokens_per_minute", "tokens_per_day", "concurrent_requests",
          "budget")
TenantOpt = Annotated[str | None, typer.Option("--tenant", "-t", help="Tenant id or name")]
KeyOpt = Annotated[str | None, typer.Option("--key", "-k", help="API key id")]
Count = Annotated[int | None, typer.Option(min=0)]


def _path(tenant: str | None, key: str | None) -> str:
    if (tenant is None) == (key is None):
        raise InvalidRequest("name exactly one of --tenant or --key", param="tenant")
    return f"/tenants/{tenant}/limits" if tenant is not None else f"/keys/{key}/limits"


def _show_limits(c: Context, rows: list[dict[str, Any]], title: str) -> int:
    if c.json:
        print_json(rows)
    else:
        consoles()[0].print(table(title, ["scope", "id", "req/min", "tokens/min",
                                          "tokens/day", "concurrent", "budget/month"],
                                  [[r["scope"], r["id"], *(_cell(r[k]) for k in LIMITS)]
                                   for r in rows]))
    return 0


def _cell(value: object) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


@app.command("set")
def quota_set(ctx: typer.Context, tenant: TenantOpt = None, key: KeyOpt = None,
              rpm: Annotated[int | None, typer.Option("--rpm", min=0,
                                                      help="Requests per minute")] = None,
              tpm: Annotated[int | None, typer.Option("--tpm", min=0,
                                                      help="Tokens per minute")] = None,
              tpd: Annotated[int | None, typer.Option("--tpd", min=0,
                                                      help="Tokens per UTC day")] = None,
              concurrent: Count = None,
              budget: Annotated[float | None, typer.Option(
                  min=0, help="Cost units per UTC calendar month")] = None) -> None:
    """Replace a tenant's or key's limits (those left out: none; none at all: removed)."""
    c: Context = ctx.obj

    def run() -> int:
        body = dict(zip(LIMITS, (rpm, tpm, tpd, concurrent, budget), strict=True))
        made = c.client().admin("PUT", _path(tenant, key), body)
        return _show_limits(c, [made], "limits set")

    guarded(run)


@app.command("show")
def quota_show(ctx: typer.Context, tenant: TenantOpt = None, key: KeyOpt = None) -> None:
    """A tenant's or key's limits, or every limit set."""
    c: Context = ctx.obj

    def run() -> int:
        if tenant is None and key is None:
            return _show_limits(c, c.client().admin("GET", "/limits")["data"], "limits")
        return _show_limits(c, [c.client().admin("GET", _path(tenant, key))], "limits")

    guarded(run)


@app.command("price")
def quota_price(ctx: typer.Context,
                model: Annotated[str | None, typer.Argument(help="Model to price")] = None,
                input_tokens: Annotated[float, typer.Option(min=0)] = 0.0,
                output_tokens: Annotated[float, typer.Option(min=0)] = 0.0,
                audio_seconds: Annotated[float, typer.Option(min=0)] = 0.0,
                images: Annotated[float, typer.Option(min=0)] = 0.0,
                video_seconds: Annotated[float, typer.Option(min=0)] = 0.0) -> None:
    """Set a model's prices in cost units per unit (without a model: list them)."""
    c: Context = ctx.obj
    units = ["input_tokens", "output_tokens", "audio_seconds", "images", "video_seconds"]

    def run() -> int:
        client = c.client()
        if model is None:
            rows = client.admin("GET", "/prices")["data"]
        else:
            rows = [client.admin("PUT", f"/prices/{model}", dict(zip(units, (
                input_tokens, output_tokens, audio_seconds, images, video_seconds),
                strict=True)))]
        if c.json:
            print_json(rows)
        else:
            consoles()[0].print(table("prices", ["model", *units],
                                      [[r["model"], *(_cell(r[u]) for u in units)]
                                       for r in rows]))
        return 0

    guarded(run)


COLUMNS = ("day", "tenant_id", "key_id", "model", "requests", "prompt_tokens",
           "completion_tokens", "audio_seconds", "cost")


def usage(ctx: typer.Context, tenant: TenantOpt = None, key: KeyOpt = None,
          model: Annotated[str | None, typer.Option("--model", "-m")] = None,
          since: Annotated[str | None, typer.Option(help="First UTC day, YYYY-MM-DD")] = None,
          until: Annotated[str | None, typer.Option(help="Last UTC day, YYYY-MM-DD")] = None,
          csv: Annotated[bool, typer.Option("--csv", help="CSV on stdout")] = False) -> None:
    """Usage per tenant, key, model and UTC day, from the engines' own counts."""
    c: Context = ctx.obj

    def run() -> int:
        params = {k: v for k, v in (("tenant", tenant), ("key", key), ("model", model),
                                    ("since", since), ("until", until)) if v is not None}
        found = c.client().usage(params, csv=csv)
        if csv:
            sys.stdout.write(found)
        elif c.json:
            print_json(found["data"])
        else:
            consoles()[0].print(table("usage", list(COLUMNS),
                                      [[_cell(r[k]) for k in COLUMNS] for r in found["data"]]))
        return 0

    guarded(run)
