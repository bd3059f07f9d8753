"""A stand-in for the queen's local hive process (`queen.supervision.ChildHive`)."""

from __future__ import annotations


class FakeHive:
    """A hive process whose deaths the test decides; `stop` records that it was asked."""

    def __init__(self) -> None:
        self.starts = 0
        self.code: int | None = None
        self.stopped = False
        self.fail_starts = 0  # the next N starts raise OSError
        self.kills = 0

    @property
    def started(self) -> bool:
        return self.starts > 0

    @property
    def pid(self) -> int | None:
        return 100 + self.starts if self.starts else None

    def start(self) -> None:
        if self.fail_starts:
            self.fail_starts -= 1
            raise OSError("fork failed")
        self.starts += 1
        self.code = None

    def poll(self) -> int | None:
        return self.code

    def kill(self) -> None:
        self.kills += 1
        self.code = -9  # SIGKILL: dead at once

    async def stop(self) -> None:
        self.stopped = True
