"""Turn a model reference into a file on this machine, downloading `hf:` refs with progress."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rbee.core.errors import InvalidRequest, ModelNotFound, UpstreamError
from rbee.core.private import private_dir
from rbee.models.catalog import (
    BUILTINS,
    DIFFUSERS_VIDEO,
    ModelRef,
    builtin_path,
    builtin_tokenizer_path,
    diffusers_kind,
    pipeline_class,
)

ProgressFn = Callable[[int, int | None], None]  # (bytes done, bytes total)


def resolve(ref: ModelRef, *, cache: Path, hf_endpoint: str | None,
            progress: ProgressFn | None = None) -> str:
    """The local path of `ref`'s weights ("" for engines that need none)."""
    if ref.source == "builtin":
        return _builtin(ref)
    if ref.engine in ("diffusers", DIFFUSERS_VIDEO):
        return _pipeline(ref, cache=cache, endpoint=hf_endpoint)
    if ref.source == "file":
        assert ref.path is not None
        path = Path(ref.path)
        # A Whisper model is a folder (model.bin, config.json, tokenizer.json).
        found = (path / "model.bin").is_file() if path.is_dir() else path.is_file()
        if not found:
            raise ModelNotFound(f"no such model file on this hive: {ref.path}", param="model")
        return ref.path
    return _hf(ref, cache=cache, endpoint=hf_endpoint, progress=progress)


# What a diffusers pipeline needs from its repository: configs, tokenizers, safetensors
# weights (not the .bin/.ckpt/.onnx/flax copies many repositories also hold).
PIPELINE_FILES = ["*.json", "*.txt", "*.model", "*.safetensors"]


def _pipeline(ref: ModelRef, *, cache: Path, endpoint: str | None) -> str:
    """A diffusers pipeline's folder, checked to make what `ref` says (images)."""
    if ref.source == "file":
        assert ref.path is not None
        folder = Path(ref.path)
    else:
        folder = Path(_hf_snapshot(ref, cache=cache, endpoint=endpoint))
    try:
        kind = diffusers_kind(pipeline_class(folder))
    except OSError:
        raise ModelNotFound(f"no diffusers pipeline (model_index.json) at {folder} on this "
                            "hive", param="model") from None
    except ValueError as exc:
        raise InvalidRequest(f"{ref.name} is not a diffusers pipeline: {exc}",
                             param="model") from None
    if kind != ref.kind:
        raise InvalidRequest(f"{ref.name} is a {kind} pipeline; it makes no {ref.kind}s",
                             param="model")
    return str(folder)


def _hf_snapshot(ref: ModelRef, *, cache: Path, endpoint: str | None) -> str:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    assert ref.repo is not None
    try:
        return str(snapshot_download(ref.repo, cache_dir=private_dir(cache / "hf"),
                                     endpoint=endpoint, allow_patterns=PIPELINE_FILES))
    except RepositoryNotFoundError as exc:
        raise ModelNotFound(f"{ref.name} not found on the hub", param="model") from exc
    except (HfHubHTTPError, OSError) as exc:
        raise UpstreamError(f"download of {ref.name} failed: {exc}") from exc


def _builtin(ref: ModelRef) -> str:
    b = BUILTINS[ref.name]
    if b.package is None:
        return ""
    path = builtin_path(ref.name)
    if path is None or (b.tokenizer is not None and builtin_tokenizer_path(ref.name) is None):
        raise ModelNotFound(f"built-in model {ref.name} is not installed on this hive; "
                            f"run: {b.install_hint}", param="model")
    return str(path)


def _progress_class(progress: ProgressFn) -> type[Any]:
    """A tqdm subclass that forwards byte counts (huggingface_hub reports through tqdm)."""
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    class _Forward(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = False
            kwargs["file"] = _Null()
            super().__init__(*args, **kwargs)
            # Report as the body starts: huggingface_hub updates the bar once per 10 MB chunk,
            # so without this a small file shows no progress until it is complete.
            progress(int(self.n), int(self.total) if self.total else None)

        def update(self, n: float | None = 1) -> bool | None:
            shown: bool | None = super().update(n)
            progress(int(self.n), int(self.total) if self.total else None)
            return shown

    return _Forward


class _Null:
    def write(self, _: str) -> None:
        return None

    def flush(self) -> None:
        return None


def _hf(ref: ModelRef, *, cache: Path, endpoint: str | None, progress: ProgressFn | None) -> str:
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    assert ref.repo is not None
    # The cache's metadata names what this hive's users run: private (files: the umask).
    hf_cache = private_dir(cache / "hf")
    tqdm_class = _progress_class(progress) if progress else None
    try:
        if ref.filename is None:  # a diffusers pipeline: the whole repository (a folder)
            return str(snapshot_download(ref.repo, cache_dir=hf_cache, endpoint=endpoint,
                                         tqdm_class=tqdm_class))
        return str(hf_hub_download(ref.repo, ref.filename, cache_dir=hf_cache,
                                   endpoint=endpoint, tqdm_class=tqdm_class))
    except LocalEntryNotFoundError as exc:
        # Not a miss on the hub: the hub could not be asked (down, unreachable, or the
        # endpoint is not a hub) and the file is not cached. An EntryNotFoundError subclass.
        raise UpstreamError(f"download of {ref.name} failed: {exc}") from exc
    except (RepositoryNotFoundError, EntryNotFoundError) as exc:
        raise ModelNotFound(f"{ref.name} not found on the hub: {type(exc).__name__}",
                            param="model") from exc
    except (HfHubHTTPError, OSError) as exc:
        raise UpstreamError(f"download of {ref.name} failed: {exc}") from exc
