"""The settings every rbee listener shares (queen, hive, worker): client deadlines and cap.

A base class of each daemon's settings, so the three keep one definition; each daemon's own
`env_prefix` applies (`RBEE_QUEEN_HEADER_TIMEOUT`, `RBEE_HIVE_…`, `RBEE_WORKER_…`).
"""

from __future__ import annotations

from pydantic import Field
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
