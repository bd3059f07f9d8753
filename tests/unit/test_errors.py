from __future__ import annotations

import pytest

from rbee.core.errors import (
    BodyTooLarge,
    ConsentRequired,
    JobNotFound,
    ModelNotFound,
    RbeeError,
    UnknownOperation,
    UpstreamError,
    WorkerUnavailable,
    from_envelope,
)


@pytest.mark.parametrize("cls", [ModelNotFound, JobNotFound, UnknownOperation, BodyTooLarge,
                                 WorkerUnavailable, ConsentRequired])
def test_envelope_round_trip_keeps_class_status_and_param(cls: type[RbeeError]) -> None:
    err = cls("boom", param="model")
    back = from_envelope(err.http_status, err.to_envelope())
    assert type(back) is cls and back.message == "boom" and back.param == "model"
    assert back.http_status == err.http_status


def test_envelope_shape() -> None:
    assert ModelNotFound("nope").to_envelope() == {"error": {
        "message": "nope", "type": "invalid_request_error", "param": None,
        "code": "model_not_found"}}


@pytest.mark.parametrize("body", [None, "text", {"detail": "x"}, {"error": "flat"}])
def test_garbage_from_upstream_is_an_upstream_error(body: object) -> None:
    err = from_envelope(500, body)
    assert type(err) is UpstreamError and err.http_status == 502


def test_unknown_code_is_an_upstream_error_with_its_message() -> None:
    err = from_envelope(418, {"error": {"message": "teapot", "code": "teapot"}})
    assert type(err) is UpstreamError and err.message == "teapot"


def test_scope_and_residency_refusals_reach_the_client_unchanged() -> None:
    from rbee.core.errors import Forbidden, NoRegionCapacity, from_envelope

    for cls, status in ((Forbidden, 403), (NoRegionCapacity, 503)):
        err = from_envelope(status, cls("no", param="model").to_envelope())
        assert type(err) is cls and err.http_status == status and err.param == "model"
