"""Options every command shares, resolved once per invocation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rbee.cli.daemon import DaemonError, queen_settings, start_queen
from rbee.client import QueenClient
from rbee.queen.settings import QueenSettings
from rbee.web.auth import is_loopback


@dataclass
class Context:
    queen_url: str
    token: str | None
    json: bool
    autostart: bool = True

    def settings(self) -> QueenSettings:
        return queen_settings()

    def client(self) -> QueenClient:
        return QueenClient(self.queen_url, self.token)

    def run(self, operation: str, **fields: Any) -> dict[str, Any]:
        """Submit a job to the queen (started if needed and local) and wait for its result."""
        with self.client() as client:
            self.ensure_queen(client)
            return client.run(operation, **fields)

    def ensure_queen(self, client: QueenClient, preload: str | None = None) -> bool:
        """True if we started the queen. Only a local queen is ever started for you.

        `preload` names the model the new queen's hive starts loading at once, so that
        loading overlaps the queen's own start-up (most of a cold `rbee infer`).
        """
        if client.health() is not None:
            return False
        host = self.queen_url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
        if not self.autostart or not is_loopback(host.strip("[]")):
            raise DaemonError(f"no queen answers at {self.queen_url} (start one: rbee queen start)")
        start_queen(self.settings(), client, preload=preload)
        return True


def default_queen_url() -> str:
    return f"http://127.0.0.1:{queen_settings().port}"
