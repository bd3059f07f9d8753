"""Where traces go, and what a bad setting does: a one-line error and exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rbee.tracing.config import BASE_ENV, TRACES_ENV, BadEndpoint, traces_endpoint
from rbee.tracing.daemon import endpoint_or_exit


def test_nothing_configured_is_off() -> None:
    assert traces_endpoint({}) is None
    assert traces_endpoint({TRACES_ENV: "", BASE_ENV: ""}) is None


def test_rbee_setting_wins_and_a_bare_url_gets_the_traces_path() -> None:
    env = {TRACES_ENV: "http://other:4318/v1/traces", BASE_ENV: "http://base:4318"}
    assert traces_endpoint(env, "http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_endpoint(env, "http://collector:4318/") == "http://collector:4318/v1/traces"
    assert traces_endpoint({}, "https://c.example/custom/path") == "https://c.example/custom/path"
    assert traces_endpoint({}, "http://c:4318/v1/traces") == "http://c:4318/v1/traces"


def test_standard_variables_follow_the_specification() -> None:
    # the traces URL as given; the base URL with /v1/traces appended
    assert traces_endpoint({TRACES_ENV: "http://a:1/x", BASE_ENV: "http://b:2"}) == "http://a:1/x"
    assert traces_endpoint({BASE_ENV: "http://b:2/"}) == "http://b:2/v1/traces"
    assert traces_endpoint({BASE_ENV: "http://b:2/prefix"}) == "http://b:2/prefix/v1/traces"


def test_sdk_disabled_or_no_exporter_turns_tracing_off_whatever_is_set() -> None:
    assert traces_endpoint({"OTEL_SDK_DISABLED": "true", BASE_ENV: "http://b:2"},
                           "http://c:3") is None
    assert traces_endpoint({"OTEL_TRACES_EXPORTER": "none", TRACES_ENV: "http://a:1"}) is None
    assert traces_endpoint({"OTEL_SDK_DISABLED": "false", BASE_ENV: "http://b:2"}) == \
        "http://b:2/v1/traces"


@pytest.mark.parametrize("bad", [
    "collector:4318",  # no scheme: urlsplit reads "collector" as the scheme
    "localhost",
    "ftp://collector/v1/traces",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "http://",
    "http://:4318",
    "http://host:port/v1/traces",  # a port that is not a number
    "http://host:99999",
    "http://ho st:4318",
    "http://host:4318/\r\nX-Injected: 1",
    "http://host/" + "a" * 5000,  # oversized
    "http://[::1",  # malformed IPv6
])
def test_malformed_endpoints_are_refused_naming_their_source(bad: str) -> None:
    with pytest.raises(BadEndpoint, match=TRACES_ENV):
        traces_endpoint({TRACES_ENV: bad})
    with pytest.raises(BadEndpoint, match="my-setting"):
        traces_endpoint({}, bad, "my-setting")


def test_the_message_of_an_oversized_value_is_bounded() -> None:
    with pytest.raises(BadEndpoint) as caught:
        traces_endpoint({BASE_ENV: "http://host/" + "a" * 5000})
    assert len(str(caught.value)) < 200


def test_entrypoint_check_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        endpoint_or_exit("rbee-hive", {BASE_ENV: "collector:4318"})
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"rbee-hive: bad setting {BASE_ENV}: 'collector:4318' is not")


def test_a_queen_with_a_malformed_endpoint_does_not_start(tmp_path: Path) -> None:
    """The real entrypoint: one line on stderr, exit 2, before any hive is started."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "RBEE_QUEEN_STATE_DIR": str(tmp_path / "state"),
           "RBEE_QUEEN_OTLP_ENDPOINT": "not a url"}
    done = subprocess.run([sys.executable, "-m", "rbee.queen"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == ["queen-rbee: bad setting --otlp-endpoint / RBEE_QUEEN_OTLP_ENDPOINT: "
                     "'not a url' is not an OTLP/HTTP URL (e.g. http://collector:4318)"]
    assert not (tmp_path / "state" / "logs" / "hive-localhost.log").exists()
