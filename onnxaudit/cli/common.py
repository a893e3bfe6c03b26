"""Options, progress bars and output helpers shared by the CLI verbs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from onnxaudit.data import Dataset, load_dataset
from onnxaudit.errors import AuditError
from onnxaudit.model import PreparedModel, prepare_model

console = Console(stderr=True)

MODEL = typer.Argument(
    ..., help="The classifier, an .onnx file (external .onnx.data beside it is read)."
)
DATA = typer.Option(
    ...,
    "--data",
    "-d",
    help="Images: a folder of class folders, an .npz (x, y[, classes]) or IDX files.",
)
PER_CLASS = typer.Option(None, "--per-class", help="Use a stratified subset of N images per class.")
SEED = typer.Option(0, "--seed", help="Seed of every random choice.")
DEVICE = typer.Option(
    "auto", "--device", help="auto (CUDA when onnxruntime offers it), cpu or cuda."
)
THREADS = typer.Option(None, "--threads", help="onnxruntime intra-op threads (default: all cores).")
BATCH_SIZE = typer.Option(128, "--batch-size", help="Images per onnxruntime call.")
MEAN = typer.Option(
    None, "--mean", help="Per-channel mean the model expects, e.g. 0.485,0.456,0.406."
)
STD = typer.Option(None, "--std", help="Per-channel std the model expects, e.g. 0.229,0.224,0.225.")


def parse_floats(text: str | None, what: str) -> tuple[float, ...] | None:
    """'0.5,0.5' -> (0.5, 0.5); None stays None."""
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise AuditError(f"--{what} takes comma-separated numbers, got {text!r}") from None


def parse_names(text: str | None) -> list[str]:
    """'a,b' -> ['a', 'b']; None -> []."""
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def load_inputs(
    model: Path,
    data: Path,
    per_class: int | None,
    seed: int,
    mean: str | None = None,
    std: str | None = None,
) -> tuple[PreparedModel, Dataset]:
    """The prepared model and the (subset of the) data, checked against each other."""
    prepared = prepare_model(model, parse_floats(mean, "mean"), parse_floats(std, "std"))
    dataset = load_dataset(data).subset(per_class, seed)
    check_compatible(prepared, dataset, data)
    return prepared, dataset


def check_compatible(model: PreparedModel, dataset: Dataset, data_path: Path | str) -> None:
    """Labels must be classes of the model, and the first image must convert to its input."""
    if int(dataset.labels.max()) >= model.info.num_classes:
        raise AuditError(
            f"labels go up to {int(dataset.labels.max())} but the model has "
            f"{model.info.num_classes} classes",
            data_path,
        )
    dataset.images(model.info.input_shape, [0])


@contextmanager
def progress() -> Iterator[Progress]:
    """A rich progress display on stderr (silent when stderr is not a terminal)."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        yield bar
