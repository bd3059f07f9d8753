"""The JSON Schema subset rbee enforces while decoding, checked at the API edge.

Engines constrain output with a grammar built from a schema (`engines.grammar`), so a schema
is accepted only when every keyword in it is one the grammar enforces: otherwise a client
would get JSON that parses but does not validate. `check` refuses the rest with the keyword
and where it sits, bounds what a hostile schema can cost (nodes, depth, repetition counts,
recursion without a finite instance), and returns a normalized copy: one root `$defs` table
and type lists rewritten as `anyOf`. `minimal_instance` is the smallest valid value (the fake
engine's answer, and the proof that a finite one exists).

Pure: no I/O, no engine imports; the queen validates with it too.
"""

from __future__ import annotations

import json
import re
from typing import Any

JsonSchema = dict[str, Any]

ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$schema", "$id",
                         "$comment", "deprecated", "readOnly", "writeOnly"})
ENFORCED = frozenset({"type", "properties", "required", "additionalProperties", "items",
                      "prefixItems", "minItems", "maxItems", "enum", "const", "anyOf", "$ref",
                      "minLength", "maxLength", "format"})
TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
FORMATS = frozenset({"date", "time", "date-time", "uuid"})
MAX_NODES = 2_000  # schema objects in one schema, $defs included
MAX_DEPTH = 32  # nesting of schema objects (a recursive $ref is not nesting)
MAX_REPEAT = 256  # minItems/maxItems/minLength/maxLength: each becomes grammar rules
MAX_ENUM = 512
MAX_STEPS = 20_000  # work allowed to find a finite instance (anyOf over recursion explodes)
_REF = re.compile(r"^#/(\$defs|definitions)/([A-Za-z0-9_.\-]{1,128})$")


class SchemaError(ValueError):
    """A schema rbee cannot enforce; the message names the keyword and where it is."""


def check(schema: object, *, what: str = "schema") -> JsonSchema:
    """The normalized schema, or SchemaError saying what cannot be enforced."""
    if not isinstance(schema, dict):
        raise SchemaError(f"{what} must be a JSON object")
    defs: dict[str, JsonSchema] = {}
    walker = _Walker(what, defs)
    for table in ("$defs", "definitions"):
        raw = schema.get(table, {})
        if not isinstance(raw, dict):
            raise SchemaError(f"{what}: '{table}' must be an object")
        for name in raw:
            defs.setdefault(name, {})
    body = {k: v for k, v in schema.items() if k not in ("$defs", "definitions")}
    for table in ("$defs", "definitions"):
        for name, sub in schema.get(table, {}).items():
            if not _REF.match(f"#/$defs/{name}"):
                raise SchemaError(f"{what}: definition name {name!r} is not supported")
            defs[name] = walker.walk(sub, f"#/{table}/{name}", 1)
    root = walker.walk(body, "#", 0)
    out: JsonSchema = {**root, "$defs": defs} if defs else root
    minimal_instance(out, what=what)
    return out


class _Walker:
    def __init__(self, what: str, defs: dict[str, JsonSchema]) -> None:
        self.what = what
        self.defs = defs
        self.nodes = 0

    def fail(self, where: str, message: str) -> SchemaError:
        return SchemaError(f"{self.what} at {where}: {message}")

    def walk(self, node: object, where: str, depth: int) -> JsonSchema:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(where, f"more than {MAX_NODES} subschemas")
        if depth > MAX_DEPTH:
            raise self.fail(where, f"nested deeper than {MAX_DEPTH} levels")
        if node is True:
            return {}
        if not isinstance(node, dict):
            raise self.fail(where, "a subschema must be an object")
        for key in node:
            if key not in ENFORCED and key not in ANNOTATIONS:
                raise self.fail(where, f"keyword '{key}' is not supported (rbee cannot "
                                "enforce it while decoding)")
        out = {k: v for k, v in node.items() if k in ENFORCED}
        self._scalars(out, where)
        if "$ref" in out:
            return self._ref(out, where)
        self._children(out, where, depth)
        if isinstance(out.get("type"), list):
            if "anyOf" in out:
                raise self.fail(where, "a 'type' list together with 'anyOf' is not supported")
            kinds = out.pop("type")
            return {"anyOf": [{**out, "type": t} for t in kinds]}
        return out

    def _tuple(self, node: JsonSchema, where: str) -> None:
        """A tuple is written with exactly its prefix items: the bounds must allow that."""
        fixed = node.get("prefixItems", node.get("items"))
        if not isinstance(fixed, list):
            return
        if node.get("items") is False:
            del node["items"]
        elif "prefixItems" in node and "items" in node:
            raise self.fail(where, "'items' next to 'prefixItems' must be false")
        if not node.get("minItems", 0) <= len(fixed) <= node.get("maxItems", len(fixed)):
            raise self.fail(where, "'minItems'/'maxItems' exclude the tuple's own length")

    def _children(self, out: JsonSchema, where: str, depth: int) -> None:
        if "properties" in out:
            out["properties"] = self._properties(out["properties"], where, depth)
        self._required(out, where)
        extra = out.get("additionalProperties")
        if isinstance(extra, dict):
            out["additionalProperties"] = self.walk(extra, f"{where}/additionalProperties",
                                                    depth + 1)
        elif extra not in (None, True, False):
            raise self.fail(where, "'additionalProperties' must be a boolean or a schema")
        self._tuple(out, where)
        if "items" in out:
            out["items"] = self._items(out["items"], f"{where}/items", depth)
        if "prefixItems" in out:
            out["prefixItems"] = self._list(out["prefixItems"], f"{where}/prefixItems", depth)
        if "anyOf" in out:
            out["anyOf"] = self._list(out["anyOf"], f"{where}/anyOf", depth)

    def _ref(self, node: JsonSchema, where: str) -> JsonSchema:
        match = _REF.match(str(node["$ref"]))
        if match is None or match.group(2) not in self.defs:
            raise self.fail(where, "'$ref' must point into this schema's '$defs' or "
                            "'definitions' (#/$defs/Name)")
        if len(node) > 1:
            raise self.fail(where, "'$ref' with sibling keywords is not supported")
        return {"$ref": f"#/$defs/{match.group(2)}"}

    def _properties(self, props: object, where: str, depth: int) -> JsonSchema:
        if not isinstance(props, dict):
            raise self.fail(where, "'properties' must be an object")
        return {str(k): self.walk(v, f"{where}/properties/{k}", depth + 1)
                for k, v in props.items()}

    def _required(self, node: JsonSchema, where: str) -> None:
        req = node.get("required", [])
        if not isinstance(req, list) or not all(isinstance(r, str) for r in req):
            raise self.fail(where, "'required' must be a list of property names")
        missing = [r for r in req if r not in node.get("properties", {})]
        if missing:
            raise self.fail(where, f"'required' names {missing[0]!r}, which is not in "
                            "'properties'")

    def _items(self, items: object, where: str, depth: int) -> JsonSchema | list[JsonSchema]:
        if isinstance(items, list):  # draft-4 tuple form
            return self._list(items, where, depth)
        return self.walk(items, where, depth + 1)

    def _list(self, items: object, where: str, depth: int) -> list[JsonSchema]:
        if not isinstance(items, list) or not items:
            raise self.fail(where, "must be a non-empty list of schemas")
        return [self.walk(s, f"{where}/{i}", depth + 1) for i, s in enumerate(items)]

    def _scalars(self, node: JsonSchema, where: str) -> None:
        kinds = node.get("type")
        names = kinds if isinstance(kinds, list) else [kinds] if kinds is not None else []
        if (not names and kinds is not None) or any(t not in TYPES for t in names):
            raise self.fail(where, f"'type' must be one of {sorted(TYPES)} or a list of them")
        if "format" in node and node["format"] not in FORMATS:
            raise self.fail(where, f"'format' {str(node['format'])[:40]!r} is not supported "
                            f"(supported: {sorted(FORMATS)})")
        for key in ("minItems", "maxItems", "minLength", "maxLength"):
            value = node.get(key)
            if value is not None and (type(value) is not int or not 0 <= value <= MAX_REPEAT):
                raise self.fail(where, f"'{key}' must be an integer from 0 to {MAX_REPEAT}")
        for low, high in (("minItems", "maxItems"), ("minLength", "maxLength")):
            if node.get(low, 0) > node.get(high, MAX_REPEAT):
                raise self.fail(where, f"'{low}' is above '{high}'")
        if "enum" in node and (not isinstance(node["enum"], list) or not node["enum"]
                               or len(node["enum"]) > MAX_ENUM):
            raise self.fail(where, f"'enum' must list 1 to {MAX_ENUM} values")


class _NoInstance(Exception):
    pass


class _Instance:
    """Builds the smallest instance; a `$ref` already being built on this path is a cycle."""

    def __init__(self, schema: JsonSchema, what: str) -> None:
        self.defs: dict[str, JsonSchema] = schema.get("$defs", {})
        self.what = what
        self.steps = 0

    def build(self, node: JsonSchema, visiting: frozenset[str]) -> object:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise SchemaError(f"{self.what} is too complex to check (recursion through "
                              "'anyOf')")
        if "$ref" in node:
            name = str(node["$ref"]).rsplit("/", 1)[1]
            if name in visiting:
                raise _NoInstance
            return self.build(self.defs[name], visiting | {name})
        if "const" in node:
            return node["const"]
        if "enum" in node:
            return node["enum"][0]
        if "anyOf" in node:
            return self._first(node["anyOf"], visiting)
        return self._typed(node, visiting)

    def _first(self, branches: list[JsonSchema], visiting: frozenset[str]) -> object:
        for branch in branches:
            try:
                return self.build(branch, visiting)
            except _NoInstance:
                continue
        raise _NoInstance

    def _typed(self, node: JsonSchema, visiting: frozenset[str]) -> object:
        kind = node.get("type")
        if kind == "object" or (kind is None and "properties" in node):
            props = node.get("properties", {})
            return {k: self.build(props[k], visiting) for k in node.get("required", [])}
        if kind == "array" or (kind is None and ("items" in node or "prefixItems" in node)):
            fixed = node.get("prefixItems") or node.get("items")
            if isinstance(fixed, list):
                return [self.build(s, visiting) for s in fixed]
            return [self.build(fixed or {}, visiting) for _ in range(node.get("minItems", 0))]
        return _scalar(node)


def minimal_instance(schema: JsonSchema, *, what: str = "schema") -> object:
    """The smallest value valid against a normalized schema; SchemaError if only infinite
    ones are (a required property that refers back to itself)."""
    try:
        return _Instance(schema, what).build(schema, frozenset())
    except _NoInstance:
        raise SchemaError(f"{what} admits no finite value (a required property refers back "
                          "to itself)") from None


def _scalar(node: JsonSchema) -> object:
    kind = node.get("type")
    fmt = node.get("format")
    if kind == "string" or (kind is None and fmt is not None):
        samples = {"date": "2000-01-01", "time": "00:00:00Z",
                   "date-time": "2000-01-01T00:00:00Z",
                   "uuid": "00000000-0000-0000-0000-000000000000"}
        return samples.get(str(fmt), "a" * int(node.get("minLength", 0)))
    return {"integer": 0, "number": 0, "boolean": False, "null": None}.get(str(kind), {})


def dumps(value: object) -> str:
    """Compact JSON as rbee's engines write it (one space after ':' and ',')."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
