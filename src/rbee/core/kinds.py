"""What a model does: the one list of model kinds (each serves its own OpenAI endpoints).

Imported by the API models, the catalog, the engines and the worker's settings alike, so a
new kind is added here once (and its endpoints where they live).
"""

from __future__ import annotations

from typing import Literal, get_args

ModelKind = Literal["chat", "embedding", "speech", "transcription", "image", "video"]
MODEL_KINDS: tuple[ModelKind, ...] = get_args(ModelKind)
KIND_HELP = ("what the model does: chat (text), embedding (vectors), speech (audio from text), "
             "transcription (text from audio), image (pictures from text) or video (video "
             "from text)")
