"""One exception type for every problem a user can fix: the CLI prints it on one line, exit 2."""

from __future__ import annotations

from pathlib import Path


class AuditError(Exception):
    """A user-facing error: names the file (when there is one) and the problem."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path else message)
