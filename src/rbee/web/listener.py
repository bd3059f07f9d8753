"""The settings every rbee listener shares (queen, hive, worker): client deadlines and cap.

A base class of each daemon's settings, so the three keep one definition; each daemon's own
`env_prefix` applies (`RBEE_QUEEN_HEADER_TIMEOUT`, `RBEE_HIVE_…`, `RBEE_WORKER_…`).
"""

from __future__ import annotations

import sys
from typing import TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings


class ListenerSettings(BaseSettings):
    header_timeout: float = Field(default=10.0, gt=0, description="Seconds a client has to "
                                  "send a request's headers (from connect or its first byte)")
    body_timeout: float = Field(default=30.0, gt=0, description="Seconds a request body may "
                                "stall between reads")
    keep_alive_timeout: float = Field(default=5.0, gt=0, description="Seconds an idle "
                                      "kept-alive connection stays open")
    send_timeout: float = Field(default=60.0, gt=0, description="Seconds a client may read "
                                "nothing while a response waits to be sent (its window shut) "
                                "before its connection is dropped")
    max_connections: int = Field(default=4096, ge=1, description="Client connections served at "
                                 "once; past it 503, past twice it closed at once (lowered to "
                                 "fit the open-file limit)")


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S], argv: list[str], prog: str) -> S:
    """A daemon's settings from its flags and environment. A bad value is one line per field
    on stderr (the field and the env variable that sets it) and exit status 2, never a
    traceback: these daemons are started by people and by unit files."""
    try:
        return cls(_cli_parse_args=argv)
    except ValidationError as exc:
        prefix = str(cls.model_config.get("env_prefix", ""))
        for error in exc.errors():
            field, *item = [str(p) for p in error["loc"]] or ["settings"]
            where = f"--{field.replace('_', '-')} / {prefix}{field.upper()}"
            if item:
                where += f" (item {'.'.join(item)})"
            print(f"{prog}: bad setting {where}: {error['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
