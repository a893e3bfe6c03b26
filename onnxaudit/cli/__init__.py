"""The `onnxaudit` command line: one verb per module, every user error one line and exit code 2."""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable

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
    help="Audit ONNX image classifiers: what they learned, how they differ, whether they hide a backdoor.",
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


def user_errors(command: Callable) -> Callable:
    """Turn AuditError into one line on stderr and exit code 2, with no traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except AuditError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.secho("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


for _verb in VERBS:
    _module = importlib.import_module(f"onnxaudit.cli.{_verb}")
    app.command(name=_verb.replace("_", "-"))(user_errors(getattr(_module, _verb)))


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
