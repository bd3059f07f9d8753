"""The rbee error tree. Each class knows its HTTP status and OpenAI error type.

    RbeeError
    ├── InvalidRequest (400 invalid_request_error)
    │   ├── UnknownOperation (400, code unknown_operation)
    │   ├── ContextLengthExceeded (400, code context_length_exceeded)
    │   ├── WrongModelKind (400, code wrong_model_kind: a chat request to an embedding model)
    │   └── BodyTooLarge (413, code body_too_large)
    ├── Unauthorized (401 authentication_error, code invalid_api_key)
    ├── Forbidden (403 permission_error: a valid key outside its scope)
    │   ├── CsrfFailed (code csrf_failed: a session's write without its CSRF token)
    │   ├── PolicyRefused (code policy_refused: the scheduling script's reason)
    │   └── ConsentRequired (code consent_required: the tenant demands GDPR consent)
    ├── NotFound (404)
    │   ├── ModelNotFound (code model_not_found)
    │   ├── JobNotFound (code job_not_found)
    │   ├── WorkerNotFound (code worker_not_found)
    │   └── HiveNotFound (code hive_not_found)
    ├── Conflict (409)
    ├── NoCapacity (503 service_unavailable, code no_capacity; Retry-After)
    │   └── NoRegionCapacity (code no_region_capacity: nothing in the tenant's regions)
    ├── QueueFull (429 rate_limit_error, code queue_full; Retry-After)
    ├── UpstreamError (502, a hive or worker failed)
    │   ├── WorkerUnavailable (503, code worker_unavailable)
    │   │   └── WorkerUnreachable (nothing was sent or received: safe to retry elsewhere)
    │   └── RemoteError (502: a machine reached over SSH; message ends with a hint)
    │       ├── SshUnreachable, SshAuthFailed, SshTimeout, SshHostKey
    │       ├── RemotePythonMissing, HiveNotInstalled
    │       └── RemoteCommandFailed
    ├── VersionMismatch (409, code version_mismatch)
    └── EngineError (500 server_error: the engine itself failed)

Foreign exceptions are converted once, at the adapter that meets them.
"""

from __future__ import annotations


class RbeeError(Exception):
    """Base of every error rbee raises on purpose."""

    http_status = 500
    openai_type = "server_error"
    code: str | None = None
    retry_after: float | None = None  # seconds, sent as Retry-After on 429/503

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def to_envelope(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.openai_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(RbeeError):
    http_status = 400
    openai_type = "invalid_request_error"
    code = "invalid_request"


class UnknownOperation(InvalidRequest):
    code = "unknown_operation"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class WrongModelKind(InvalidRequest):
    code = "wrong_model_kind"


class BodyTooLarge(InvalidRequest):
    http_status = 413
    code = "body_too_large"


class Unauthorized(RbeeError):
    http_status = 401
    openai_type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(RbeeError):
    """A valid key asked for something its scope does not allow (role, model, priority)."""

    http_status = 403
    openai_type = "permission_error"
    code = "permission_denied"


class CsrfFailed(Forbidden):
    """A dashboard session's state-changing request without its X-CSRF-Token."""

    code = "csrf_failed"


class ConsentRequired(Forbidden):
    """The key's tenant demands its users' consent before processing, and there is none."""

    code = "consent_required"


class PolicyRefused(Forbidden):
    """The scheduling script refused this request for its tenant (`{refuse = "reason"}`):
    the script's reason is the message; no fallback overrides it."""

    code = "policy_refused"


class NotFound(RbeeError):
    http_status = 404
    openai_type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


class WorkerNotFound(NotFound):
    code = "worker_not_found"


class HiveNotFound(NotFound):
    code = "hive_not_found"


class Conflict(RbeeError):
    http_status = 409
    openai_type = "invalid_request_error"
    code = "conflict"


class NoCapacity(RbeeError):
    http_status = 503
    openai_type = "service_unavailable"
    code = "no_capacity"


class NoRegionCapacity(NoCapacity):
    """A tenant bound to some regions asked while none of their hives could serve: an
    explicit error, never a fallback to another region."""

    code = "no_region_capacity"


class QueueFull(RbeeError):
    """Admission refused: the model's queue is full. Try again later, not a timeout."""

    http_status = 429
    openai_type = "rate_limit_error"
    code = "queue_full"

    def __init__(self, message: str, *, retry_after: float, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.retry_after = retry_after


class UpstreamError(RbeeError):
    http_status = 502
    openai_type = "server_error"
    code = "upstream_error"


class WorkerUnavailable(UpstreamError):
    http_status = 503
    code = "worker_unavailable"


class WorkerUnreachable(WorkerUnavailable):
    code = "worker_unreachable"


class WorkerNotReady(WorkerUnreachable):
    """A worker refused before answering anything (still loading, stopping): try another.
    Reaches a client, if every try fails, as the worker's own 503 `worker_unavailable`."""

    code = "worker_unavailable"


class DeadlineExceeded(RbeeError):
    """The request's own deadline (the client's timeout) passed before it was answered."""

    http_status = 504
    openai_type = "timeout_error"
    code = "deadline_exceeded"


class RemoteError(UpstreamError):
    """A failure on a machine reached over SSH. The message says what and how to fix it."""

    code = "remote_error"

    def __init__(self, message: str, *, hint: str, param: str | None = None) -> None:
        super().__init__(f"{message}. Hint: {hint}", param=param)
        self.hint = hint


class SshUnreachable(RemoteError):
    code = "ssh_unreachable"


class SshAuthFailed(RemoteError):
    code = "ssh_auth_failed"


class SshTimeout(RemoteError):
    code = "ssh_timeout"


class SshHostKey(RemoteError):
    code = "ssh_host_key"


class RemotePythonMissing(RemoteError):
    code = "remote_python_missing"


class HiveNotInstalled(RemoteError):
    code = "hive_not_installed"


class RemoteCommandFailed(RemoteError):
    code = "remote_command_failed"


class VersionMismatch(Conflict):
    code = "version_mismatch"


class EngineError(RbeeError):
    code = "engine_error"


_BY_CODE: dict[str, type[RbeeError]] = {
    cls.code: cls
    for cls in (InvalidRequest, UnknownOperation, ContextLengthExceeded, WrongModelKind,
                BodyTooLarge, Unauthorized, Forbidden, PolicyRefused, ConsentRequired,
                ModelNotFound, NoRegionCapacity,
                JobNotFound, WorkerNotFound, HiveNotFound, Conflict, NoCapacity, WorkerUnavailable,
                WorkerUnreachable, EngineError, VersionMismatch, DeadlineExceeded)
    if cls.code is not None
}


def from_envelope(status: int, body: object) -> RbeeError:
    """Rebuild the error a hive or worker sent us, so it reaches the client unchanged."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return UpstreamError(f"upstream answered {status} without an error envelope")
    message = str(err.get("message") or f"upstream error {status}")
    cls = _BY_CODE.get(str(err.get("code")), UpstreamError)
    param = err.get("param")
    return cls(message, param=param if isinstance(param, str) else None)
