"""A remote hive learns the queen's traces URL in its private env file, quoted for sh."""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import replace

from tests.unit.remote.fake_shell import ROOT, FakeShell
from tests.unit.remote.test_installer import LAUNCH, installed, probed


async def test_the_traces_url_goes_to_the_hive_env_quoted() -> None:
    url = "http://collector.lan:4318/v1/traces?a=1&b=$HOME;x"
    shell = FakeShell()
    remote, _, _ = await probed(shell)
    await remote.configure(installed("background"), replace(LAUNCH, traces=url))
    env, mode = shell.files[f"{ROOT}/hive.env"]
    assert mode == 0o600
    line = next(x for x in env.splitlines() if x.startswith("OTEL_EXPORTER_OTLP_TRACES_"))
    assert line == f"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT={shlex.quote(url)}"
    # What the start script's `set -a; . hive.env` gives the hive: the URL, unexpanded.
    assert _sourced(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == url
    script, _ = shell.files[f"{ROOT}/run-hive"]
    assert url not in script


def _sourced(env_file: str, name: str) -> str:
    got = subprocess.run(["sh", "-c", f"set -a\n{env_file}printenv {name}"],
                         capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin"})
    return got.stdout.removesuffix("\n")


async def test_without_tracing_the_hive_env_has_no_otel_line() -> None:
    shell = FakeShell()
    remote, _, _ = await probed(shell)
    await remote.configure(installed("background"), LAUNCH)
    env, _ = shell.files[f"{ROOT}/hive.env"]
    assert "OTEL" not in env
