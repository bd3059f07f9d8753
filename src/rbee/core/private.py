"""Owner-only files: rbee's state holds tokens, prompts and answers (queen.db, job events, logs).

Daemons set a umask of 077 at start, which covers every file they create, including those
created by code we do not control (SQLite's -wal/-shm side files take the database's mode,
huggingface_hub's cache, pip's wheels). Folders rbee owns are created 0700 and tightened at
start, so installs made before this rule are fixed on their next start.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600


def private_umask() -> None:
    """Daemon start-up: nothing this process (or a child: the umask is inherited) creates is
    readable by other users."""
    os.umask(PRIVATE_UMASK)


def private_dir(path: Path, *, tighten_tree: bool = False) -> Path:
    """Create `path` (and missing parents) 0700, and tighten it if it already existed.

    With `tighten_tree`, also strip group/other bits from everything below it that we own
    (an install from before the rule). Symlinks are left alone: chmod would follow them out.
    """
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _tighten(path)
    if tighten_tree:
        for root, dirs, files in os.walk(path):
            for name in (*dirs, *files):
                _tighten(Path(root) / name)
    return path


def open_private_log(path: Path) -> int:
    """An append-only fd on `path`, 0600 whatever the umask and whatever the old file's mode;
    its folder is made private too."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def secret_file(path: Path, make: Callable[[], bytes]) -> bytes:
    """The content of owner-only `path`, written as `make()` on first use.

    Written whole under a private name, then linked into place: a reader never sees a
    half-written secret, and two first uses at once keep one (link refuses the second)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    private_dir(path.parent)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(make())
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another first use won: theirs
            os.link(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)
    return path.read_bytes()


def _tighten(path: Path) -> None:
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid() or not st.st_mode & 0o077:
        return
    path.chmod(stat.S_IMODE(st.st_mode) & ~0o077)
