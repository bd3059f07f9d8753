"""hives.conf: ssh-config syntax, rbee keywords, errors that name the line."""

from __future__ import annotations

import getpass
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rbee.core.errors import HiveNotFound
from rbee.remote import hives_conf
from rbee.remote.hives_conf import DEFAULT_HIVE_PORT, HiveEntry, HivesConfError

FULL = """\
# the whole fleet
Host gpu-box                  # the hive's name in rbee
    HostName 192.168.1.10
    User vince
    Port 2222
    IdentityFile /keys/id_ed25519
    HivePort 7900
    Region eu-west
    Labels gpu=4090, tier=enterprise
    UserKnownHostsFile /keys/known_hosts
    StrictHostKeyChecking no
    ConnectTimeout 5
    Python /opt/py311/bin/python3
"""


def test_full_example_sets_every_field() -> None:
    assert hives_conf.parse(FULL) == {"gpu-box": HiveEntry(
        name="gpu-box", hostname="192.168.1.10", user="vince", port=2222,
        identity_files=("/keys/id_ed25519",), hive_port=7900, region="eu-west",
        labels={"gpu": "4090", "tier": "enterprise"}, known_hosts="/keys/known_hosts",
        strict_host_key_checking=False, connect_timeout=5.0, python="/opt/py311/bin/python3")}
    assert hives_conf.parse(FULL)["gpu-box"].target == "vince@192.168.1.10:2222"


def test_defaults_for_a_bare_host() -> None:
    entry = hives_conf.parse("Host box\n")["box"]
    assert entry == HiveEntry(name="box", hostname="box", user=getpass.getuser())
    assert (entry.port, entry.hive_port, entry.strict_host_key_checking) == (
        22, DEFAULT_HIVE_PORT, True)
    assert (entry.known_hosts, entry.python, entry.identity_files) == (None, "python3", ())


@pytest.mark.parametrize(("text", "field", "expected"), [
    ("Host a\nPort=2200\n", "port", 2200),
    ("Host=a\nHostName = 10.0.0.1\n", "hostname", "10.0.0.1"),
    ("Host a\nhostname 10.0.0.2\n", "hostname", "10.0.0.2"),
    ("HOST a\nHIVEPORT 9000\n", "hive_port", 9000),
    ("host a\nstricthostkeychecking NO\n", "strict_host_key_checking", False),
    ("Host a\n  User  bob   # trailing comment\n", "user", "bob"),
    ("Host a\n# Port 99\n\n   \nRegion r1\n", "port", 22),
    ('Host a\nPython "/usr/bin/python3.12"\n', "python", "/usr/bin/python3.12"),
    ("Host a\r\nPort 23\r\n", "port", 23),
    ("Host a\nIdentityFile ~/k\n", "identity_files", (str(Path("~/k").expanduser()),)),
    ("Host a\nUserKnownHostsFile ~/kh\n", "known_hosts", str(Path("~/kh").expanduser())),
    ("Host a\nPort 1\n", "port", 1),
    ("Host a\nPort 65535\n", "port", 65535),
    ("Host a\nPort 22\nPort 23\n", "port", 22),  # first value wins within a block too
])
def test_syntax_forms(text: str, field: str, expected: object) -> None:
    assert getattr(hives_conf.parse(text)["a"], field) == expected


@pytest.mark.parametrize(("raw", "labels"), [
    ("gpu=4090, tier=enterprise", {"gpu": "4090", "tier": "enterprise"}),
    ("gpu=4090,tier=enterprise", {"gpu": "4090", "tier": "enterprise"}),
    ("fast", {"fast": "true"}),
    ("fast, gpu=", {"fast": "true", "gpu": ""}),
    ("a=1=2", {"a": "1=2"}),
    ("k=1 k=2", {"k": "2"}),
])
def test_labels(raw: str, labels: dict[str, str]) -> None:
    assert hives_conf.parse(f"Host a\nLabels {raw}\n")["a"].labels == labels


def test_host_star_gives_defaults_and_the_first_value_wins() -> None:
    text = """\
Host *
    User everyone
    Port 2200
    IdentityFile /keys/shared
    Labels site=home
Host a
    User alice
    IdentityFile /keys/a
Host b
Host *
    User late
    Region r9
    IdentityFile /keys/late
"""
    hives = hives_conf.parse(text)
    assert set(hives) == {"a", "b"}  # `*` is not a hive
    a, b = hives["a"], hives["b"]
    assert (a.user, a.port, a.region, a.labels) == ("alice", 2200, "r9", {"site": "home"})
    assert (b.user, b.port) == ("everyone", 2200)
    # IdentityFile accumulates, the host's own first, as ssh tries them
    assert a.identity_files == ("/keys/a", "/keys/shared", "/keys/late")
    assert b.identity_files == ("/keys/shared", "/keys/late")


@pytest.mark.parametrize(("text", "line", "words"), [
    ("Host a\n\nPrt 22\n", 3, ["unknown keyword 'Prt'", "HostName"]),
    ("# c\nPort 22\nHost a\n", 2, ["Port before any Host line"]),
    ("Host a\nHost b a\n", 2, ["hive 'a' is defined twice"]),
    ("Host a\nHost b\nHost a\n", 3, ["defined twice"]),
    ("Host a/b\n", 1, ["invalid hive name"]),
    ("Host " + "x" * 65 + "\n", 1, ["invalid hive name"]),
    ("Host localhost\n", 1, ["'localhost' is the queen's own hive"]),
    ("Host\n", 1, ["expected 'Keyword value'"]),
    ("Host a\n[section]\n", 2, ["expected 'Keyword value'"]),
])
def test_errors_name_the_line(text: str, line: int, words: list[str]) -> None:
    with pytest.raises(HivesConfError) as info:
        hives_conf.parse(text, "/etc/hives.conf")
    assert info.value.message.startswith(f"/etc/hives.conf:{line}: ")
    for word in words:
        assert word in info.value.message
    assert info.value.http_status == 400 and info.value.code == "hives_conf_invalid"


@pytest.mark.parametrize(("value", "words"), [
    ("Port 0", "Port must be a number in 1..65535, got '0'"),
    ("Port 65536", "Port must be a number in 1..65535"),
    ("Port 22x", "Port must be a number"),
    ("Port -1", "Port must be a number"),
    ("HivePort http", "HivePort must be a number in 1..65535"),
    ("ConnectTimeout 601", "ConnectTimeout must be a number in 1..600"),
    ("ConnectTimeout 0", "ConnectTimeout must be a number in 1..600"),
    ("StrictHostKeyChecking maybe", "StrictHostKeyChecking must be yes or no, got 'maybe'"),
    ("Labels a=1, =y", "bad label '=y'"),
])
def test_bad_values_name_their_own_line(value: str, words: str) -> None:
    with pytest.raises(HivesConfError) as info:
        hives_conf.parse(f"Host ok\n# comment\nHost a\nRegion r\n{value}\n", "/etc/hives.conf")
    assert info.value.message.startswith("/etc/hives.conf:5: ")
    assert words in info.value.message


def test_an_error_in_a_host_star_default_names_its_line_and_the_hive() -> None:
    # The bad value lives in `Host *`; it is applied (and refused) for each hive.
    with pytest.raises(HivesConfError, match=r"^hives.conf:2 \(Host \* default, for hive 'a'\): "
                                             r"Port must be a number"):
        hives_conf.parse("Host *\nPort x\nHost a\n")


def test_several_names_on_one_host_line_share_its_options() -> None:
    hives = hives_conf.parse("Host gpu-1 gpu-2\nUser ops\nLabels gpu=4090\nHost cpu\n")
    assert set(hives) == {"gpu-1", "gpu-2", "cpu"}
    assert hives["gpu-1"].user == hives["gpu-2"].user == "ops"
    assert hives["gpu-1"].labels == hives["gpu-2"].labels == {"gpu": "4090"}
    assert hives["gpu-2"].hostname == "gpu-2"  # each name is its own HostName by default
    assert hives["cpu"].labels == {}


HOSTILE = {
    "nul in a name": "Host a\x00b\n",
    "nul in a keyword": "Ho\x00st a\n",
    "nul in a later keyword": "Host a\nPo\x00rt 22\n",
    "non-ascii name": "Host émile\n",
    "non-ascii keyword": "Hóst a\n",
    "superscript port": "Host a\nPort ²²\n",
    "superscript hive port": "Host a\nHivePort ³\n",
    "superscript timeout": "Host a\nConnectTimeout ¹⁰\n",
    "arabic-indic port out of range": "Host a\nPort ٢٢٢٢٢٢\n",
    "5000-digit port": "Host a\nPort " + "9" * 5000 + "\n",
    "100k name": "Host " + "a" * 100_000 + "\n",
    "100k keyword": "K" * 100_000 + "\n",
    "byte order mark": "\ufeffHost a\n",
    "labels of equals signs": "Host a\nLabels " + "=" * 1000 + "\n",
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_input_is_refused_with_a_hives_conf_error(text: str) -> None:
    with pytest.raises(HivesConfError):
        hives_conf.parse(text)


def test_a_long_line_parses_in_linear_time() -> None:
    # A value with a long run of inner blanks: a backtracking line pattern goes quadratic
    # (the queen re-reads hives.conf on every `rbee hive list`, on its event loop).
    text = "Host a\nRegion x" + " " * 12_000 + "y\n"
    started = time.perf_counter()
    entry = hives_conf.parse(text)["a"]
    elapsed = time.perf_counter() - started
    assert entry.region == "x" + " " * 12_000 + "y"
    assert elapsed < 0.2, f"parsing one 12 kB line took {elapsed:.2f}s"


def test_load_of_a_missing_file_is_an_empty_fleet(tmp_path: Path) -> None:
    assert hives_conf.load(tmp_path / "absent.conf") == {}


def test_load_reads_the_file_and_names_it_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "hives.conf"
    path.write_text("Host a\nHostName 10.1.1.1\n")
    assert hives_conf.load(path)["a"].hostname == "10.1.1.1"
    path.write_text("Host a\nBogus 1\n")
    with pytest.raises(HivesConfError, match=rf"^{path}:2: unknown keyword"):
        hives_conf.load(path)


@pytest.mark.parametrize("make", [
    lambda p: p.write_bytes(b"Host a\nRegion \xff\xfe\n"),  # not UTF-8
    lambda p: p.mkdir(),  # a directory
], ids=["not utf-8", "a directory"])
def test_load_of_an_unreadable_file(tmp_path: Path, make: Callable[[Path], object]) -> None:
    path = tmp_path / "hives.conf"
    make(path)
    with pytest.raises(HivesConfError, match="cannot read"):
        hives_conf.load(path)


def test_get_returns_one_entry(tmp_path: Path) -> None:
    path = tmp_path / "hives.conf"
    path.write_text("Host b\nHost a\nPort 23\n")
    assert hives_conf.get(path, "a").port == 23


def test_get_of_an_unknown_name_lists_the_configured_ones(tmp_path: Path) -> None:
    path = tmp_path / "hives.conf"
    path.write_text("Host zeta\nHost alpha\n")
    with pytest.raises(HiveNotFound) as info:
        hives_conf.get(path, "gamma")
    assert "'gamma'" in info.value.message
    assert "(configured: alpha, zeta)" in info.value.message
    assert info.value.param == "hive_id"
    with pytest.raises(HiveNotFound, match=r"configured: none"):
        hives_conf.get(tmp_path / "absent.conf", "gamma")
