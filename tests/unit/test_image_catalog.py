"""Diffusers pipelines in the catalog: a folder or a whole hub repository is an image model
(read from its name alone), and `diffusers_kind` tells image from video pipelines by class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rbee.core.errors import InvalidRequest, ModelNotFound
from rbee.hive.downloads import resolve
from rbee.models.catalog import diffusers_kind, parse_ref, pipeline_class


@pytest.mark.parametrize("text", ["file:/models/sd-turbo", "file:/models/sd.v1/",
                                  "file:/models/sd-turbo/"])
def test_a_folder_is_an_image_pipeline(text: str) -> None:
    ref = parse_ref(text)
    assert (ref.source, ref.engine, ref.kind) == ("file", "diffusers", "image")
    assert ref.path is not None and not ref.path.endswith("/")


def test_a_whole_hub_repository_is_an_image_pipeline() -> None:
    ref = parse_ref("hf:stabilityai/sd-turbo")
    assert (ref.source, ref.engine, ref.kind, ref.repo) == ("hf", "diffusers", "image",
                                                            "stabilityai/sd-turbo")
    assert parse_ref("hf:org/repo:model.gguf").engine == "llama_cpp"  # a file: as before


def test_a_dotted_folder_needs_its_slash() -> None:
    with pytest.raises(InvalidRequest, match="end a folder's path with /"):
        parse_ref("file:/models/sd-1.5")


@pytest.mark.parametrize(("name", "kind"), [
    ("StableDiffusionPipeline", "image"), ("StableDiffusionXLPipeline", "image"),
    ("FluxPipeline", "image"), ("PixArtSigmaPipeline", "image"),
    ("TextToVideoSDPipeline", "video"), ("AnimateDiffPipeline", "video"),
    ("WanPipeline", "video"), ("LTXPipeline", "video"), ("CogVideoXPipeline", "video"),
    ("StableVideoDiffusionPipeline", "video"), ("HunyuanVideoPipeline", "video")])
def test_diffusers_kind_from_the_class_name(name: str, kind: str) -> None:
    assert diffusers_kind(name) == kind


def _folder(folder: Path, index: object) -> Path:
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def test_the_hive_checks_the_folder_when_it_resolves_it(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "sd", {"_class_name": "StableDiffusionPipeline"})
    assert pipeline_class(folder) == "StableDiffusionPipeline"
    ref = parse_ref(f"file:{folder}")
    assert resolve(ref, cache=tmp_path / "cache", hf_endpoint=None) == str(folder)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    with pytest.raises(InvalidRequest, match="video pipeline"):
        resolve(ref, cache=tmp_path / "cache", hf_endpoint=None)
    (folder / "model_index.json").write_text("[1, 2")
    with pytest.raises(InvalidRequest, match="not a diffusers pipeline"):
        resolve(ref, cache=tmp_path / "cache", hf_endpoint=None)
    (folder / "model_index.json").write_text("{}")
    with pytest.raises(InvalidRequest, match="_class_name"):
        resolve(ref, cache=tmp_path / "cache", hf_endpoint=None)
    with pytest.raises(ModelNotFound, match=r"model_index\.json"):
        resolve(parse_ref(f"file:{tmp_path}/nothing/"), cache=tmp_path, hf_endpoint=None)


def test_a_hub_pipeline_is_downloaded_without_its_other_weights(tmp_path: Path) -> None:
    from tests.support.hub import StandInHub

    repo = tmp_path / "hub" / "tiny-org" / "tiny-sd"
    (repo / "unet").mkdir(parents=True)
    (repo / "model_index.json").write_text(json.dumps(
        {"_class_name": "StableDiffusionPipeline"}))
    (repo / "unet" / "config.json").write_text("{}")
    (repo / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"w" * 100)
    (repo / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"p" * 100)  # not wanted
    with StandInHub(tmp_path / "hub") as hub:
        folder = Path(resolve(parse_ref("hf:tiny-org/tiny-sd"), cache=tmp_path / "cache",
                              hf_endpoint=hub.url))
        got = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        assert got == ["model_index.json", "unet/config.json",
                       "unet/diffusion_pytorch_model.safetensors"]
        with pytest.raises(ModelNotFound):
            resolve(parse_ref("hf:tiny-org/nothing"), cache=tmp_path / "cache",
                    hf_endpoint=hub.url)
