"""The diffusion extra (torch, ~1 GB) reaches a remote hive only when its hives.conf entry
asks for it (`Extras diffusion`): parsed and checked, collected into the wheel set, installed
and checked there, or named in the registry install."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from rbee import __version__
from rbee.remote.hives_conf import HiveEntry, HivesConfError, parse
from rbee.remote.wheelhouse import assemble, requirement_pins
from tests.unit.remote.fake_shell import FakeShell
from tests.unit.remote.test_installer import DOT_LOCAL, VENV, hive


def test_extras_are_parsed_and_checked() -> None:
    hives = parse("Host gpu\n  Extras diffusion\nHost cpu\n  HostName 10.0.0.2\n")
    assert hives["gpu"].extras == ("diffusion",) and hives["cpu"].extras == ()
    assert parse("Host a\n Extras diffusion, diffusion\n")["a"].extras == ("diffusion",)
    with pytest.raises(HivesConfError, match=r"hives.conf:2: unknown extra 'cuda'"):
        parse("Host a\n Extras cuda\n")


def test_torch_is_collected_only_when_asked() -> None:
    plain = {p.split("==")[0].lower() for p in requirement_pins()}
    assert "torch" not in plain and "diffusers" not in plain
    asked = {p.split("==")[0].lower() for p in requirement_pins(
        extra_roots=("torch", "diffusers", "transformers", "safetensors", "pillow"))}
    assert {"torch", "diffusers", "transformers", "safetensors", "pillow"} <= asked


def test_the_diffusion_wheels_are_engines_a_hive_must_import(tmp_path: Path) -> None:
    names = ["torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
             "diffusers-0.42.1-py3-none-any.whl", "sympy-1.14.0-py3-none-any.whl",
             "pip-25.1-py3-none-any.whl"]
    files = [tmp_path / n for n in names]
    rbee = tmp_path / "rbee-0.1.0-py3-none-any.whl"
    for f in [*files, rbee]:
        f.write_bytes(b"w")
    house = assemble(files, rbee, [])
    assert house.engine_modules == ["diffusers", "torch"] and house.deps == [files[2]]


async def test_the_registry_install_names_the_extra_and_checks_its_modules() -> None:
    shell = FakeShell(systemd=True, paths=set(DOT_LOCAL))
    entry = HiveEntry(name="gpu", hostname="10.0.0.9", user="u", extras=("diffusion",))
    remote, _ = hive(shell, entry)
    found = await remote.probe()
    await remote.install(found, None, lambda d, t: None, [])
    assert shell.ran("pip install") == [
        f"{VENV}/bin/pip install -q "
        f"'rbee[llama,embeddings,speech,transcription,diffusion]=={__version__}'"]
    [check] = shell.ran("from rbee.models.catalog import")
    assert shlex.split(check)[-5:] == ["torch", "diffusers", "transformers", "safetensors",
                                       "PIL"]
