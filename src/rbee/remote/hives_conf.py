"""`~/.config/rbee/hives.conf`: the machines rbee may install hives on, in ssh-config syntax.

    Host gpu-box                  # the hive's name in rbee
        HostName 192.168.1.10     # default: the Host name
        User vince                # default: the queen's user
        Port 22
        IdentityFile ~/.ssh/id_ed25519
        HivePort 7835             # where the hive listens
        Region eu-west
        Labels gpu=4090, tier=enterprise
        Extras diffusion          # optional engines to push too (diffusion: torch, ~1 GB)

Like ssh_config, keywords are case-insensitive, `Key value` and `Key=value` both work, and
`Host *` gives defaults (the first value found wins, so put it last). Unlike ssh_config, a
keyword we don't know is an error with its line number: a typo must not silently drop a
setting. The format is simple enough that a small parser beats a dependency whose reader
would reject the rbee keys.
"""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass, field
from pathlib import Path

from rbee.core.errors import HiveNotFound, InvalidRequest

DEFAULT_HIVE_PORT = 7835
RESERVED = "localhost"  # the queen's own hive
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Applied to stripped lines; no lazy group before `\s*$`, which backtracks quadratically.
_LINE = re.compile(r"^([A-Za-z]+)(?:\s*=\s*|\s+)(.*)$")
_NUMBER = re.compile(r"[0-9]{1,6}")
_KEYS = {k.lower(): k for k in (
    "HostName", "User", "Port", "IdentityFile", "HivePort", "Region", "Labels",
    "UserKnownHostsFile", "StrictHostKeyChecking", "ConnectTimeout", "Python", "Extras",
)}
# Optional engines a hive gets only when its entry names them: torch and diffusers are about
# 1 GB of wheels, too much to push to every hive (rbee.remote.wheelhouse.OPT_IN_ENGINES).
OPT_IN_EXTRAS = ("diffusion",)


def default_path() -> Path:
    return Path.home() / ".config" / "rbee" / "hives.conf"


@dataclass(frozen=True)
class HiveEntry:
    name: str
    hostname: str
    user: str
    port: int = 22
    identity_files: tuple[str, ...] = ()
    hive_port: int = DEFAULT_HIVE_PORT
    region: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    known_hosts: str | None = None  # None: ~/.ssh/known_hosts
    strict_host_key_checking: bool = True
    connect_timeout: float = 10.0
    python: str = "python3"
    extras: tuple[str, ...] = ()  # OPT_IN_EXTRAS to install on this hive

    @property
    def target(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"


class HivesConfError(InvalidRequest):
    code = "hives_conf_invalid"


def load(path: Path) -> dict[str, HiveEntry]:
    """Every hive in the file, by name; an absent file is an empty fleet."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise HivesConfError(f"cannot read {path}: {exc}") from exc
    return parse(text, str(path))


def get(path: Path, name: str) -> HiveEntry:
    hives = load(path)
    if name not in hives:
        known = ", ".join(sorted(hives)) or "none"
        raise HiveNotFound(f"no hive {name!r} in {path} (configured: {known})", param="hive_id")
    return hives[name]


Value = tuple[str, str, bool]  # the value, where it was written ("file:line"), from `Host *`
Block = tuple[str, int, dict[str, list[Value]]]  # Host name, line number, keyword → values


def parse(text: str, source: str = "hives.conf") -> dict[str, HiveEntry]:
    blocks = _blocks(text, source)
    defaults = [opts for name, _, opts in blocks if name == "*"]
    hives: dict[str, HiveEntry] = {}
    for name, number, opts in blocks:
        if name == "*":
            continue
        where = f"{source}:{number}"
        if not _NAME.match(name) or name == RESERVED:
            raise HivesConfError(f"{where}: invalid hive name {name!r} (letters, digits, '._-'; "
                                 f"{RESERVED!r} is the queen's own hive)")
        if name in hives:
            raise HivesConfError(f"{where}: hive {name!r} is defined twice")
        hives[name] = _entry(name, _merge([opts, *defaults]), where)
    return hives


def _blocks(text: str, source: str) -> list[Block]:
    blocks: list[Block] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{number}"
        m = _LINE.match(line)
        if m is None:
            raise HivesConfError(f"{where}: expected 'Keyword value', got {raw.strip()!r}")
        key, value = m.group(1).lower(), m.group(2).strip().strip('"')
        if key == "host":
            # `Host a b` gives a and b the same options (as ssh does); they are one block
            # until the next Host line, so each gets its own copy of the same dict
            opts: dict[str, list[Value]] = {}
            blocks.extend((name, number, opts) for name in value.split())
        elif key not in _KEYS:
            raise HivesConfError(f"{where}: unknown keyword {m.group(1)!r} "
                                 f"(known: Host, {', '.join(sorted(_KEYS.values()))})")
        elif not blocks:
            raise HivesConfError(f"{where}: {_KEYS[key]} before any Host line")
        else:
            blocks[-1][2].setdefault(key, []).append((value, where, blocks[-1][0] == "*"))
    return blocks


def _merge(layers: list[dict[str, list[Value]]]) -> dict[str, list[Value]]:
    merged: dict[str, list[Value]] = {}
    for layer in layers:  # first value wins, except IdentityFile which accumulates (as ssh)
        for key, values in layer.items():
            if key == "identityfile":
                merged.setdefault(key, []).extend(values)
            else:
                merged.setdefault(key, values)
    return merged


def _entry(name: str, opts: dict[str, list[Value]], where: str) -> HiveEntry:
    """`where` is the Host line; a bad value is reported at its own line, and for which hive
    (a `Host *` default is checked for each hive it applies to)."""
    def one(key: str) -> str | None:
        values = opts.get(key)
        return values[0][0] if values else None

    def at(key: str) -> str:
        _, line, default = opts[key][0]
        return f"{line} (Host * default, for hive {name!r})" if default else line

    def number(key: str, default: int, low: int, high: int) -> int:
        raw = one(key)
        if raw is None:
            return default
        if not _NUMBER.fullmatch(raw) or not low <= int(raw) <= high:
            raise HivesConfError(f"{at(key)}: {_KEYS[key]} must be a number in {low}..{high}, "
                                 f"got {raw!r}")
        return int(raw)

    strict = (one("stricthostkeychecking") or "yes").lower()
    if strict not in ("yes", "no"):
        raise HivesConfError(f"{at('stricthostkeychecking')}: StrictHostKeyChecking must be "
                             f"yes or no, got {strict!r}")
    timeout = number("connecttimeout", 10, 1, 600)
    return HiveEntry(
        name=name, hostname=one("hostname") or name, user=one("user") or getpass.getuser(),
        port=number("port", 22, 1, 65535),
        identity_files=tuple(str(Path(p).expanduser()) for p, _, _ in opts.get("identityfile", [])),
        hive_port=number("hiveport", DEFAULT_HIVE_PORT, 1, 65535), region=one("region"),
        labels=parse_labels(one("labels"), at("labels") if "labels" in opts else where),
        known_hosts=str(Path(kh).expanduser()) if (kh := one("userknownhostsfile")) else None,
        strict_host_key_checking=strict == "yes", connect_timeout=float(timeout),
        python=one("python") or "python3",
        extras=_extras(one("extras"), at("extras") if "extras" in opts else where))


def _extras(raw: str | None, where: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n for n in re.split(r"[\s,]+", raw or "") if n))
    unknown = [n for n in names if n not in OPT_IN_EXTRAS]
    if unknown:
        raise HivesConfError(f"{where}: unknown extra {unknown[0]!r} (known: "
                             f"{', '.join(OPT_IN_EXTRAS)})")
    return names


def parse_labels(raw: str | None, where: str = "labels") -> dict[str, str]:
    """'gpu=4090, tier=enterprise' → dict; a bare word is a label set to "true"."""
    labels: dict[str, str] = {}
    for item in (raw or "").replace(",", " ").split():
        key, sep, value = item.partition("=")
        if not key:
            raise HivesConfError(f"{where}: bad label {item!r} (use key=value)")
        labels[key] = value if sep else "true"
    return labels
