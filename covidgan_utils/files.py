"""Atomic file writing: every artifact appears complete or not at all."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class StorageError(OSError):
    """An artifact could not be written (disk full, read-only or protected folder); says which file and the fix."""

    def __str__(self) -> str:
        return str(self.strerror)


_STORAGE_FIXES = {
    errno.ENOSPC: "the disk is full. Fix: free disk space (or choose a run_dir on another disk), then rerun",
    errno.EDQUOT: "the disk quota is used up. Fix: free disk space (or choose a run_dir on another disk), then rerun",
    errno.EROFS: "the file system is read-only. Fix: choose a writable run_dir",
    errno.EACCES: "permission denied. Fix: choose a writable run_dir (or make this folder writable)",
    errno.EPERM: "operation not permitted. Fix: choose a writable run_dir (or make this folder writable)",
}


def storage_error(exc: OSError, path) -> StorageError | None:
    """A StorageError naming ``path`` and the fix for a disk-full / read-only / permission error; None for others."""
    fix = _STORAGE_FIXES.get(getattr(exc, "errno", None))
    if fix is None or isinstance(exc, StorageError):
        return None
    from .config import rel

    return StorageError(
        exc.errno,
        f"Cannot write {rel(path)}: {fix}. Nothing was replaced: a previous complete file there is left as it was.",
    )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Disk full, read-only or permission errors become a :class:`StorageError` naming the file and the fix.
    """
    path = Path(path)
    tmp_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~user_umask())  # mkstemp makes the file private; artifacts follow the umask
        os.replace(tmp_path, path)
    except OSError as exc:
        better = storage_error(exc, path)
        if better is None:
            raise
        raise better from exc
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def user_umask() -> int:
    """The process umask (os.umask can only be read by setting it, so it is set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_leftovers(folder: str | os.PathLike) -> list[str]:
    """Delete what a killed writer left in ``folder``: hidden temporaries (.*.tmp, .tmp-*, .old-*); returns their names.

    Only for a folder no live process is writing to (a locked run directory, or a training about to start).
    """
    import shutil

    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in sorted(folder.iterdir()):
        name = p.name
        if name.startswith(".") and (name.endswith(".tmp") or name.startswith(".tmp-") or ".old-" in name):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(name)
    return removed


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write JSON atomically (indented, keys in insertion order)."""
    return write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def write_csv(path: str | os.PathLike, frame) -> Path:
    """Write a pandas DataFrame as CSV atomically, without the index."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)


def write_npz(path: str | os.PathLike, **arrays) -> Path:
    """Write numpy arrays to an .npz atomically."""
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return Path(path)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return obj.as_posix()
    raise TypeError(f"Cannot write {type(obj).__name__} to JSON")


class RunLockError(RuntimeError):
    """Another live process holds the run directory."""


class RunLock:
    """An exclusive lock on a run directory (RUN/.lock holding the owner's pid and host).

    A second run on the same directory refuses with a clear message. A lock left behind by a crashed
    run (its process no longer exists on this host) is taken over, with a message, never stuck.
    """

    def __init__(self, run_dir: str | os.PathLike, what: str = "a run"):
        self.path = Path(run_dir) / ".lock"
        self.what = what

    def __enter__(self) -> RunLock:
        import socket

        me = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what}
        for _ in range(2):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    owner = json.loads(self.path.read_text() or "{}")
                except (OSError, ValueError):
                    owner = {}
                if owner.get("host") == me["host"] and not _alive(owner.get("pid")):
                    print(f"note: removing a stale lock left by process {owner.get('pid')} (no longer running)")
                    self.path.unlink(missing_ok=True)
                    continue
                raise RunLockError(
                    f"Run directory {self.path.parent.name} is in use by {owner.get('what', 'another run')} "
                    f"(process {owner.get('pid')} on {owner.get('host')}). Wait for it to finish, or use another run "
                    f"directory. If no such process exists, delete {self.path.name} in that folder."
                ) from None
            except OSError as exc:
                better = storage_error(exc, self.path)
                if better is None:
                    raise
                raise better from exc
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            return self
        raise RunLockError(f"Could not take the lock {self.path}")

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_samples(out_dir: str | os.PathLike) -> dict:
    """The fixed-noise sample grids a GAN saved during training: {epoch: {"images", "labels"}}, in epoch order."""
    import numpy as np

    found = {}
    for path in sorted((Path(out_dir) / "samples").glob("epoch_*.npz")):
        with np.load(path) as z:
            found[int(z["epoch"])] = {"images": z["images"], "labels": z["labels"]}
    return dict(sorted(found.items()))
