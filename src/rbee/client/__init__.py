"""A typed client for the queen's HTTP API, used by the CLI and by tests."""

from rbee.client._client import JobFailed, QueenClient, QueenUnreachable, StreamEvent

__all__ = ["JobFailed", "QueenClient", "QueenUnreachable", "StreamEvent"]
