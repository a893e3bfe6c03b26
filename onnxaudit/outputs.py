"""The output folder of a run: checked before any work, locked while the run writes.

A second run on the same folder is refused (exit 2) instead of silently overwriting the first
one's files; a lock left by a process that died is taken over. Results are written only when a
run is complete (atomically, file by file), so a failed run leaves the last complete run's
outputs as they were.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from onnxaudit.errors import AuditError

LOCK_NAME = ".onnxaudit.lock"


def check_output_dir(out: Path) -> None:
    """`out` must be a folder that exists or can be created, and be writable."""
    if out.exists() and not out.is_dir():
        raise AuditError("--out must be a folder, but a file of that name exists", out)
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise AuditError("--out cannot be created or written here (permission denied)", out)


def _holder(lock: Path) -> int | None:
    """The pid of the live process holding `lock`, or None when it is stale or unreadable."""
    try:
        pid = int(lock.read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    if pid <= 0 or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


@contextmanager
def locked_output(out: Path) -> Iterator[Path]:
    """Hold `out/.onnxaudit.lock` for the duration of a run."""
    check_output_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    lock = out / LOCK_NAME
    for _ in range(2):
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            holder = _holder(lock)
            if holder is not None:
                raise AuditError(
                    f"another onnxaudit run (pid {holder}) is writing here; wait for it, or use "
                    f"another --out",
                    out,
                ) from None
            lock.unlink(missing_ok=True)  # left by a run that died
    else:
        raise AuditError("cannot take the output lock", lock)
    with os.fdopen(handle, "w") as stream:
        stream.write(str(os.getpid()))
    try:
        yield out
    finally:
        lock.unlink(missing_ok=True)
