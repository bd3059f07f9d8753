"""Who may read an artifact: a job's belongs to its job's tenant, a request's (an image by
URL, an uploaded file) to the tenant recorded with it. Another tenant's artifact is answered
as one that does not exist (its id says nothing)."""

from __future__ import annotations

from pathlib import Path

from rbee.core.errors import NotFound
from rbee.queen.identity import Principal
from rbee.queen.jobs import JobManager
from rbee.storage.artifacts import Artifact, ArtifactNotFound, ArtifactStore


def open_owned(artifacts: ArtifactStore, jobs: JobManager, principal: Principal,
               artifact_id: str, param: str = "artifact_id") -> tuple[Artifact, Path]:
    """The artifact and its bytes' path, if `principal` may read it; a 404 naming `param`."""
    try:
        artifact, path = artifacts.open(artifact_id)
        if artifact.of_job:
            jobs.check_owner(artifact.owner, principal.owns)
        elif not principal.owns(artifact.tenant):
            raise NotFound("another tenant's")
    except NotFound:  # the same answer (and code) whether gone or another tenant's
        raise ArtifactNotFound(f"no {param.removesuffix('_id')} {artifact_id[:80]!r}",
                               param=param) from None
    return artifact, path
