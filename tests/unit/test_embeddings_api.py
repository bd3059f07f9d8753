"""The embeddings request's `input` rules and the base64 encoding (OpenAI's wire format)."""

from __future__ import annotations

import base64
import struct

import pytest

from rbee.api.embeddings import MAX_INPUTS, EmbeddingRequest, decode_base64, encode_base64
from rbee.core.errors import InvalidRequest
from rbee.web.body import parse_model


def _parse(body: str) -> EmbeddingRequest:
    return parse_model(body, EmbeddingRequest, "application/json")


@pytest.mark.parametrize(("raw", "inputs"), [
    ('"a cat"', ["a cat"]),
    ('["a", "b"]', ["a", "b"]),
    ("[1, 2, 3]", [[1, 2, 3]]),
    ("[[1, 2], [3]]", [[1, 2], [3]]),
    ('" "', [" "]),  # blank is text (the model reads its special tokens); empty is not
])
def test_every_input_shape_becomes_a_list(raw: str, inputs: object) -> None:
    assert _parse(f'{{"model": "m", "input": {raw}}}').inputs() == inputs


@pytest.mark.parametrize(("raw", "says"), [
    ('""', "item 0 is an empty string"),
    ("[]", "must not be empty"),
    ('["a", ""]', "item 1 is an empty string"),
    ("[[1], []]", "item 1 is an empty array"),
    ("[[]]", "item 0 is an empty array"),
    ("5", "must be a string"),
    ("null", "must be a string"),
    ('{"text": "a"}', "must be a string"),
    ('["a", 1]', "item 1 is neither"),
    ('["a", ["b"]]', "item 1 is neither"),
    ("[1.5]", "item 0 is neither"),
    ("[-1]", "item 0 is neither"),
    ("[true]", "item 0 is neither"),
    ("[[1, 2], [3, true]]", "item 1 is neither"),
    ("[99999999999]", "item 0 is neither"),
    ('[["a"]]', "item 0 is neither"),
])
def test_bad_input_is_a_400_naming_input(raw: str, says: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        _parse(f'{{"model": "m", "input": {raw}}}')
    assert info.value.param == "input"
    assert says in info.value.message
    assert info.value.http_status == 400


def test_missing_input_names_input() -> None:
    with pytest.raises(InvalidRequest) as info:
        _parse('{"model": "m"}')
    assert info.value.param == "input"


def test_too_many_inputs_is_refused() -> None:
    items = ",".join(['"x"'] * (MAX_INPUTS + 1))
    body = f'{{"model": "m", "input": [{items}]}}'
    with pytest.raises(InvalidRequest) as info:
        _parse(body)
    assert info.value.param == "input" and str(MAX_INPUTS) in info.value.message


@pytest.mark.parametrize(("field", "value"), [
    ("encoding_format", '"int8"'), ("encoding_format", "1"), ("dimensions", "0"),
    ("dimensions", '"384"'), ("dimensions", "3.5"), ("user", "5"),
])
def test_other_fields_are_checked(field: str, value: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        _parse(f'{{"model": "m", "input": "x", "{field}": {value}}}')
    assert info.value.param == field


def test_unknown_fields_are_accepted() -> None:
    assert _parse('{"model": "m", "input": "x", "extra_thing": 1}').inputs() == ["x"]


def test_base64_is_little_endian_float32() -> None:
    vector = [1.0, -0.5, 0.25, 3.0e-8]
    text = encode_base64(vector)
    assert base64.b64decode(text) == struct.pack("<4f", *vector)
    assert decode_base64(text) == pytest.approx(vector)
    assert base64.b64decode(encode_base64([1.0]))[::-1][0] == 0x3F  # last byte is the MSB
