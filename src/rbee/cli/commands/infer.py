"""`rbee infer PROMPT`: stream an answer token by token (starting a queen if needed)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from rbee.cli.context import Context
from rbee.cli.errors import guarded
from rbee.cli.jobrun import JobPrinter, cancelled, submit
from rbee.cli.render import fail, print_json
from rbee.client import QueenClient
from rbee.core.errors import InvalidRequest


def infer(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="What to ask")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model name or reference")] = "",
    system: Annotated[str | None, typer.Option(help="System message")] = None,
    max_tokens: Annotated[int | None, typer.Option(min=1, help="Most tokens to generate")] = None,
    temperature: Annotated[float | None, typer.Option(min=0.0, max=2.0)] = None,
    top_p: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = None,
    top_k: Annotated[int | None, typer.Option(min=0)] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed (reproducible answers)")] = None,
    stop: Annotated[list[str] | None, typer.Option(help="Stop sequence (repeatable)")] = None,
    hive: Annotated[str | None, typer.Option(help="Run on this hive")] = None,
    device: Annotated[str | None, typer.Option(help='Device, e.g. "cpu" or "cuda:0"')] = None,
    worker: Annotated[str | None, typer.Option(help="Use this worker")] = None,
    stats: Annotated[bool, typer.Option("--stats", help="Print time to first token and tok/s")]
    = False,
    json_schema: Annotated[Path | None, typer.Option(
        "--json-schema", exists=True, dir_okay=False, help="Answer with JSON valid for this "
        "JSON Schema file (enforced while generating)")] = None,
    tools: Annotated[Path | None, typer.Option(
        "--tools", exists=True, dir_okay=False, help="A JSON file of tools the model may call "
        "(OpenAI's `tools` list, or a list of functions: name, description, parameters)")]
    = None,
    tool_choice: Annotated[str | None, typer.Option(
        help="auto, none, required, or a function's name [default: auto]")] = None,
) -> None:
    c: Context = ctx.obj
    fields: dict[str, Any] = dict(
        model=model, max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
        seed=seed, stop=stop or None, hive_id=hive, device=device, worker_id=worker)
    if system is not None:
        fields["messages"] = [{"role": "system", "content": system},
                              {"role": "user", "content": prompt}]
    else:
        fields["prompt"] = prompt

    def run() -> int:
        if json_schema is not None:
            fields["response_format"] = _schema_format(json_schema)
        if tools is not None:
            fields["tools"] = _tools(tools)
        if tool_choice is not None:
            fields["tool_choice"] = (tool_choice if tool_choice in ("auto", "none", "required")
                                     else {"type": "function", "function": {"name": tool_choice}})
        return _run(c, fields, stats)

    guarded(run)


def _load(path: Path, option: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(f"{option} {path}: not a JSON file ({exc})", param=option) from None


def _schema_format(path: Path) -> dict[str, Any]:
    """A bare JSON Schema, or OpenAI's `json_schema` object (name, schema, strict)."""
    doc = _load(path, "--json-schema")
    if not isinstance(doc, dict):
        raise InvalidRequest(f"--json-schema {path}: a JSON Schema is an object",
                             param="--json-schema")
    if isinstance(doc.get("schema"), dict) and "name" in doc:
        return {"type": "json_schema", "json_schema": doc}
    name = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in path.stem)[:64]
    return {"type": "json_schema",
            "json_schema": {"name": name or "answer", "schema": doc, "strict": True}}


def _tools(path: Path) -> list[dict[str, Any]]:
    doc = _load(path, "--tools")
    if not isinstance(doc, list) or not all(isinstance(t, dict) for t in doc):
        raise InvalidRequest(f"--tools {path}: a JSON list of tools", param="--tools")
    return [t if t.get("type") == "function" and "function" in t
            else {"type": "function", "function": t} for t in doc]


def _run(c: Context, fields: dict[str, Any], stats: bool) -> int:
    client = c.client()
    # A queen we start warms the asked-for model while it boots (unless placement was pinned).
    pinned = any(fields.get(k) for k in ("hive_id", "device", "worker_id"))
    preload = None if pinned else (fields.get("model") or c.settings().default_model)
    started = time.perf_counter()
    job_id = submit(c, client, "infer", fields, preload)
    structured = "response_format" in fields
    try:
        return _follow(c, client, job_id, started, stats, structured)
    except KeyboardInterrupt:
        return cancelled(c, client, job_id)


def _follow(c: Context, client: QueenClient, job_id: str, started: float, stats: bool,
            structured: bool) -> int:
    printer = JobPrinter(c.json)
    result = printer.follow(client, job_id)
    if result is None:
        return 1
    cut = structured and result.get("finish_reason") == "length"
    ttft_ms = round(((printer.first or time.perf_counter()) - started) * 1000, 1)
    if c.json:
        print_json({"job_id": job_id, "state": "done", **result, "client_ttft_ms": ttft_ms})
        return _incomplete() if cut else 0
    sys.stdout.write("\n")
    for call in result.get("tool_calls", ()):
        fn = call["function"]
        sys.stdout.write(f"tool call {call['id']}: {fn['name']}({fn['arguments']})\n")
    if stats:
        t = result.get("timings", {})
        usage = result.get("usage", {})
        printer.err.print(f"[dim]time to first token {ttft_ms} ms · "
                          f"{t.get('tokens_per_s')} tokens/s · "
                          f"{usage.get('completion_tokens')} tokens · "
                          f"worker {result.get('worker_id')}[/dim]")
    return _incomplete() if cut else 0


def _incomplete() -> int:
    # JSON cut short by the token limit does not parse: a script piping it on must learn so
    # from the exit status (the text is still printed: nothing the model wrote is lost).
    return fail("the answer reached --max-tokens before its JSON was complete "
                "(finish_reason: length); raise --max-tokens")
