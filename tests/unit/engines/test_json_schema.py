"""The schema subset rbee enforces: what is refused (and why), bounds on hostile schemas."""

from __future__ import annotations

import json
import time

import pytest
from pydantic import BaseModel, Field

from rbee.engines.grammar import for_schema, for_tools
from rbee.engines.json_schema import SchemaError, check, minimal_instance


class Address(BaseModel):
    street: str
    city: str


class Person(BaseModel):
    name: str
    age: int
    tags: list[str]
    home: Address | None = None
    kind: str = Field(default="cat", json_schema_extra={"enum": ["cat", "dog"]})


class Tree(BaseModel):
    label: str
    children: list[Tree]


def test_pydantic_schemas_are_accepted_and_have_a_minimal_instance() -> None:
    for model in (Person, Address, Tree):
        schema = check(model.model_json_schema())
        model.model_validate(minimal_instance(schema))  # valid against the model itself
        assert "root ::=" in for_schema(schema)


@pytest.mark.parametrize(("schema", "keyword"), [
    ({"type": "integer", "minimum": 0}, "minimum"),
    ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "oneOf"),
    ({"type": "string", "pattern": "^a+$"}, "pattern"),
    ({"type": "string", "format": "email"}, "format"),
    ({"type": "object", "properties": {"a": {"not": {}}}}, "not"),
    ({"type": "array", "uniqueItems": True}, "uniqueItems"),
    ({"type": "thing"}, "type"),
    ({"$ref": "https://example.com/x.json"}, "$ref"),
    ({"$ref": "#/$defs/Missing"}, "$ref"),
    ({"type": "object", "required": ["a"]}, "required"),
    ({"type": "string", "maxLength": 100_000}, "maxLength"),
    ({"type": "array", "items": {}, "minItems": 5, "maxItems": 2}, "minItems"),
])
def test_what_cannot_be_enforced_is_refused_by_name(schema: dict[str, object],
                                                    keyword: str) -> None:
    with pytest.raises(SchemaError, match=keyword.replace("$", r"\$")):
        check(schema)


def test_a_required_self_reference_has_no_finite_value() -> None:
    schema = {"$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}},
                              "required": ["next"]}}, "$ref": "#/$defs/N"}
    with pytest.raises(SchemaError, match="no finite value"):
        check(schema)


def test_hostile_schemas_fail_fast() -> None:
    deep: dict[str, object] = {"type": "string"}
    for _ in range(500):
        deep = {"type": "object", "properties": {"a": deep}, "required": ["a"]}
    wide = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(5000)}}
    # anyOf over mutual recursion: exponential to explore without a budget.
    defs = {f"D{i}": {"anyOf": [{"$ref": f"#/$defs/D{(i + 1) % 12}"},
                                {"$ref": f"#/$defs/D{(i + 2) % 12}"}]} for i in range(12)}
    cyclic = {"$defs": defs, "$ref": "#/$defs/D0"}
    for schema in (deep, wide, cyclic, [1, 2], {"type": "object", "properties": []}):
        started = time.perf_counter()
        with pytest.raises(SchemaError):
            check(schema)
        assert time.perf_counter() - started < 2


def test_type_lists_and_tuples_are_normalized() -> None:
    schema = check({"type": "object", "properties": {
        "x": {"type": ["string", "null"], "maxLength": 3},
        "t": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}],
              "items": False, "minItems": 2, "maxItems": 2}},
        "required": ["x", "t"], "additionalProperties": False})
    assert schema["properties"]["x"] == {"anyOf": [{"type": "string", "maxLength": 3},
                                                   {"type": "null", "maxLength": 3}]}
    assert minimal_instance(schema) == {"x": "", "t": [0, False]}


def test_two_tools_with_the_same_def_name_do_not_collide() -> None:
    a = check({"$defs": {"Item": {"type": "string"}}, "type": "object",
               "properties": {"i": {"$ref": "#/$defs/Item"}}, "required": ["i"]})
    b = check({"$defs": {"Item": {"type": "integer"}}, "type": "object",
               "properties": {"i": {"$ref": "#/$defs/Item"}}, "required": ["i"]})
    grammar = for_tools([("a", a), ("b", b)], parallel=True)
    assert "string" in grammar and "integer" in grammar
    assert json.dumps("a") in grammar.replace('\\"', '"')
