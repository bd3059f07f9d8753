"""GBNF grammars (llama.cpp's format) for structured outputs and tool calls.

Built from a schema `json_schema.check` accepted, so every keyword here is enforced. Our own
converter rather than llama-cpp-python's `json_schema_to_gbnf`: that one silently drops
keywords it does not know (`minimum`, most formats), lets raw control characters into strings
(invalid JSON), allows unbounded whitespace (a small model can loop on it) and names `$defs`
rules by their last path segment (two tools with a `$defs/Item` each collide).

The output is compact JSON: one optional space after ':' and ',' and nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from rbee.engines.json_schema import JsonSchema

TOOL_OPEN = "<tool_call>["
TOOL_CLOSE = "]</tool_call>"
MAX_PARALLEL_CALLS = 8

_BASE = {
    "space": '" "?',
    "value": "object | array | string | number | integer | boolean | null",
    "object": '"{" ( string ":" space value ( "," space string ":" space value )* )? "}"',
    "array": '"[" ( value ( "," space value )* )? "]"',
    "string": '"\\"" char* "\\""',
    "char": '[^"\\\\\\x7F\\x00-\\x1F] | "\\\\" ( ["\\\\/bfnrt] | "u" [0-9a-fA-F]{4} )',
    "int-part": "[0-9] | [1-9] [0-9]{1,15}",
    "integer": '"-"? int-part',
    "number": '"-"? int-part ( "." [0-9]{1,15} )? ( [eE] [-+]? [0-9]{1,3} )?',
    "boolean": '"true" | "false"',
    "null": '"null"',
    "date": '[0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [1-2] [0-9] | "3" [0-1] )',
    "time": '( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{3} )? '
            '( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )',
    "date-time": 'date "T" time',
    "uuid": "[0-9a-fA-F]{8} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} "
            "\"-\" [0-9a-fA-F]{12}",
}
_TYPE_RULES = {"string": "string", "number": "number", "integer": "integer",
               "boolean": "boolean", "null": "null"}


def literal(text: str) -> str:
    """A GBNF string literal matching `text` exactly."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def json_literal(value: object) -> str:
    return literal(json.dumps(value, ensure_ascii=False, separators=(", ", ": ")))


class Grammar:
    """Accumulates rules; `schema` adds one schema's rules under its own prefix."""

    def __init__(self) -> None:
        self.rules: dict[str, str] = dict(_BASE)
        self._count = 0

    def text(self, root: str) -> str:
        lines = [f"root ::= {root}"]
        lines += [f"{name} ::= {body}" for name, body in self.rules.items()]
        return "\n".join(lines) + "\n"

    def add(self, prefix: str, body: str) -> str:
        self._count += 1
        name = f"{prefix}-{self._count}"
        self.rules[name] = body
        return name

    def schema(self, schema: JsonSchema, prefix: str) -> str:
        """The rule name matching `schema` (normalized by json_schema.check)."""
        return _Visitor(self, schema.get("$defs", {}), prefix).rule(schema)


class _Visitor:
    def __init__(self, grammar: Grammar, defs: dict[str, JsonSchema], prefix: str) -> None:
        self.g = grammar
        self.defs = defs
        self.prefix = prefix
        self.def_rules: dict[str, str] = {}

    def rule(self, node: JsonSchema) -> str:
        if "$ref" in node:
            return self._ref(str(node["$ref"]).rsplit("/", 1)[1])
        if "const" in node:
            return self.g.add(self.prefix, json_literal(node["const"]))
        if "enum" in node:
            return self.g.add(self.prefix, " | ".join(json_literal(v) for v in node["enum"]))
        if "anyOf" in node:
            return self.g.add(self.prefix, " | ".join(self.rule(b) for b in node["anyOf"]))
        kind = node.get("type")
        if kind == "object" or (kind is None and "properties" in node):
            return self._object(node)
        if kind == "array" or (kind is None and ("items" in node or "prefixItems" in node)):
            return self._array(node)
        if kind == "string" or (kind is None and "format" in node):
            return self._string(node)
        return _TYPE_RULES.get(str(kind), "value")

    def _ref(self, name: str) -> str:
        if name not in self.def_rules:  # named before visiting: recursion refers to it
            self.def_rules[name] = rule = self.g.add(self.prefix, "null")
            self.g.rules[rule] = self.rule(self.defs[name])
        return self.def_rules[name]

    def _object(self, node: JsonSchema) -> str:
        props: dict[str, JsonSchema] = node.get("properties", {})
        extra = node.get("additionalProperties")
        if not props:
            if extra is False:
                return self.g.add(self.prefix, '"{" "}"')
            value = self.rule(extra) if isinstance(extra, dict) else "value"
            pair = f'string ":" space {value}'
            return self.g.add(self.prefix, f'"{{" ( {pair} ( "," space {pair} )* )? "}}"')
        kv = {k: f'{json_literal(k)} ":" space {self.rule(v)}' for k, v in props.items()}
        required = [k for k in props if k in node.get("required", [])]
        optional = [k for k in props if k not in required]
        body = ' "," space '.join(kv[k] for k in required)
        if required:
            body += "".join(f' ( "," space {kv[k]} )?' for k in optional)
        elif optional:
            body = f"( {self._optional_chain([kv[k] for k in optional])} )?"
        return self.g.add(self.prefix, f'"{{" {body} "}}"')

    def _optional_chain(self, kvs: Sequence[str]) -> str:
        """Any subset of `kvs` in order, comma-separated: k1 rest2 | k2 rest3 | ... | kn,
        with rest_i ::= ( "," k_i )? rest_{i+1} (linear in size, not quadratic)."""
        rest = ""
        rests: list[str] = []
        for kv in reversed(kvs[1:]):
            rest = self.g.add(self.prefix, f'( "," space {kv} )? {rest}'.strip())
            rests.append(rest)
        rests.reverse()
        alts = [f"{kv} {rests[i]}" if i < len(rests) else kv for i, kv in enumerate(kvs)]
        return " | ".join(alts)

    def _array(self, node: JsonSchema) -> str:
        fixed = node.get("prefixItems", node.get("items"))
        if isinstance(fixed, list):
            items = ' "," space '.join(self.rule(s) for s in fixed)
            return self.g.add(self.prefix, f'"[" {items} "]"')
        item = self.rule(fixed) if isinstance(fixed, dict) else "value"
        low, high = int(node.get("minItems", 0)), node.get("maxItems")
        if high == 0:
            return self.g.add(self.prefix, '"[" "]"')
        more = _repeat(f'( "," space {item} )', max(low - 1, 0),
                       None if high is None else int(high) - 1)
        body = f"{item} {more}" if low else f"( {item} {more} )?"
        return self.g.add(self.prefix, f'"[" {body} "]"')

    def _string(self, node: JsonSchema) -> str:
        fmt = node.get("format")
        if fmt is not None:
            return self.g.add(self.prefix, f'"\\"" {fmt} "\\""')
        if "minLength" not in node and "maxLength" not in node:
            return "string"
        chars = _repeat("char", int(node.get("minLength", 0)), node.get("maxLength"))
        return self.g.add(self.prefix, f'"\\"" {chars} "\\""')


def _repeat(item: str, low: int, high: int | None) -> str:
    if high is None:
        return f"{item}{{{low},}}" if low else f"{item}*"
    return f"{item}{{{low},{high}}}" if high else ""


def for_schema(schema: JsonSchema) -> str:
    g = Grammar()
    return g.text(g.schema(schema, "s"))


def free_text_or(alternative: str) -> str:
    """Text that does not start with '<' (our tool-call marker), or `alternative`."""
    return f'{alternative} | ( [^<] [^\\x00]* )?'


def for_tools(tools: Sequence[tuple[str, JsonSchema | None]], *, parallel: bool,
              text_schema: JsonSchema | None = None, allow_text: bool = False) -> str:
    """Tool calls in SmolLM2's trained format `<tool_call>[{"name": ..., "arguments": {...}}]
    </tool_call>`, the arguments held to each function's parameter schema. With `allow_text`
    (tool_choice auto) the root may instead be text (or JSON for `text_schema`)."""
    g = Grammar()
    alts = []
    for i, (name, params) in enumerate(tools):
        args = g.schema(params, f"t{i}") if params is not None else g.add(f"t{i}", '"{" "}"')
        head = literal(f'{{"name": {json.dumps(name)}, "arguments": ')
        alts.append(f'{head} {args} "}}"')
    call = g.add("call", " | ".join(alts))
    more = f'( "," space {call} ){{0,{MAX_PARALLEL_CALLS - 1}}}' if parallel else ""
    calls = g.add("calls", f'{literal(TOOL_OPEN)} {call} {more} {literal(TOOL_CLOSE)}')
    if not allow_text:
        return g.text(calls)
    if text_schema is not None:
        return g.text(f"{calls} | {g.schema(text_schema, 's')}")
    return g.text(free_text_or(calls))
