"""How the CLI shows a moment to people (one format for jobs, keys, audit and scripts)."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator

import pytest

from rbee.cli.render import when


@pytest.fixture
def in_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/Amsterdam")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("in_zone")
def test_a_moment_is_local_time_with_its_zone() -> None:
    assert os.environ["TZ"] == "Europe/Amsterdam"
    # 2027-01-15 08:00:00 UTC is 09:00 in Amsterdam (CET, winter)
    assert when(1_800_000_000.0) == "2027-01-15 09:00:00 CET"
    summer = dt.datetime(2027, 7, 1, 12, 0, tzinfo=dt.UTC).timestamp()
    assert when(summer) == "2027-07-01 14:00:00 CEST"


def test_no_moment_is_an_empty_cell() -> None:
    assert when(None) == "" and when(0) == ""
