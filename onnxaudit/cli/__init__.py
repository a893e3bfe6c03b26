"""The `onnxaudit` command line: one verb per module, every user error one line and exit code 2."""

from __future__ import annotations

import functools
import importlib
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

import click
import typer

from onnxaudit import __version__
from onnxaudit.errors import AuditError

# Each verb lives in onnxaudit/cli/<verb>.py as a typer command function of the same name.
VERBS = (
    "layers",
    "extract",
    "attack",
    "knowledge",
    "patterns",
    "audit",
    "compare",
    "demo",
    "audit_many",
)

app = typer.Typer(
    name="onnxaudit",
    help="Audit ONNX image classifiers: what they learned, how they differ, whether they hide a "
    "backdoor.\n\nExit codes: 0 every gate passed, 1 a gate failed, 2 usage or input error, "
    "3 internal error (traceback in OUT/onnxaudit-error.log).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"onnxaudit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version,
        is_eager=True,
        help="Print the version and exit.",
        metavar="",
    ),
) -> None:
    """Audit ONNX image classifiers: what they learned, how they differ, whether they hide a backdoor."""


EXIT_GATE_FAILED, EXIT_USAGE, EXIT_INTERNAL = 1, 2, 3
ERROR_LOG = "onnxaudit-error.log"


def user_errors(command: Callable) -> Callable:
    """Exit codes: AuditError -> one line on stderr and 2; any other exception is a bug in
    onnxaudit -> one line naming the log with the full traceback, and 3. Never a bare traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except AuditError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(EXIT_USAGE) from None
        except KeyboardInterrupt:
            typer.secho("interrupted", err=True)
            raise typer.Exit(130) from None
        except (typer.Exit, click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as exc:
            log = write_error_log(kwargs.get("out"))
            first = (str(exc).strip().splitlines() or [""])[0]
            typer.secho(
                f"internal error: {type(exc).__name__}: {first} (a bug in onnxaudit; "
                f"the full traceback is in {log})",
                fg=typer.colors.RED,
                err=True,
            )
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper


def write_error_log(out: object) -> Path:
    """The current traceback in OUT/onnxaudit-error.log (or the temp folder when OUT is not a
    writable folder); returns its path."""
    folder = Path(tempfile.gettempdir())
    if isinstance(out, Path):
        candidate = out if out.suffix == "" else out.parent
        if candidate.is_dir() and os.access(candidate, os.W_OK):
            folder = candidate
    path = folder / ERROR_LOG
    path.write_text(traceback.format_exc(), encoding="utf-8")
    return path


for _verb in VERBS:
    _module = importlib.import_module(f"onnxaudit.cli.{_verb}")
    app.command(name=_verb.replace("_", "-"))(user_errors(getattr(_module, _verb)))


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
