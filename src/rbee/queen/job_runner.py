"""What the job operations that make binary results (video, speak, transcribe) reach workers
through: one constructor for them all."""

from __future__ import annotations

from rbee.queen.admission import Admission
from rbee.queen.dispatch import Dispatcher
from rbee.queen.registry import Registry
from rbee.queen.relay import Relay
from rbee.queen.settings import QueenSettings
from rbee.storage.artifacts import ArtifactStore


class JobRunner:
    def __init__(self, registry: Registry, dispatcher: Dispatcher, relay: Relay,
                 admission: Admission, artifacts: ArtifactStore,
                 settings: QueenSettings) -> None:
        self._registry = registry
        self._dispatcher = dispatcher
        self._relay = relay
        self._admission = admission
        self._artifacts = artifacts
        self._settings = settings
