"""`onnxaudit demo`: audit and compare the committed model zoo; regenerates reports/demo."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import typer

import onnxaudit
from onnxaudit.audit import AuditConfig, write_audit, write_report
from onnxaudit.cli.audit import stage_progress
from onnxaudit.cli.common import DEVICE, SEED, THREADS, check_compatible, progress
from onnxaudit.compare import audit_models, compare_runs
from onnxaudit.data import load_dataset
from onnxaudit.errors import AuditError
from onnxaudit.model import prepare_model

# Normal, adversarially trained, distilled, and the two backdoored models (patch and blend).
ZOO = ("vgg", "vgg-adv", "vgg-student", "vgg-badnets", "resnet", "resnet-blend")
SUBSET = Path("models/data/fashion-mnist-test-subset.npz")
CHECKPOINTS = Path("models/zoo/checkpoints")


def repo_root() -> Path:
    """The checkout onnxaudit is installed from (editable install): the zoo lives there."""
    return Path(onnxaudit.__file__).resolve().parent.parent


def zoo_paths(root: Path) -> list[Path]:
    """Repo-relative paths of the zoo models present; AuditError when the zoo is absent."""
    found = [Path("models/zoo") / f"{name}.onnx" for name in ZOO]
    found = [path for path in found if (root / path).is_file()]
    if not found or not (root / SUBSET).is_file():
        raise AuditError(
            "the model zoo or its test subset is absent (build it with python models/build_zoo.py, "
            "or run onnxaudit from a checkout that has models/zoo)",
            root / "models",
        )
    return found


def demo(
    out: Path = typer.Option(Path("reports/demo"), "--out", "-o", help="Folder of the showcase."),
    per_class: int = typer.Option(
        20, "--per-class", help="Images per class for patterns and PGD (demo: small)."
    ),
    knowledge_per_class: int = typer.Option(
        6, "--knowledge-per-class", help="Images per class for knowledge points (demo: few)."
    ),
    steps: int = typer.Option(5, "--steps", help="PGD steps (demo: few)."),
    eps: float = typer.Option(0.1, "--eps", help="L-inf PGD radius in [0, 1] pixel units."),
    pattern_epochs: float = typer.Option(5.0, "--pattern-epochs", help="Pattern-search epochs."),
    emergence: bool = typer.Option(
        True, help="Knowledge emergence over vgg's training checkpoints (models/zoo/checkpoints)."
    ),
    seed: int = SEED,
    device: str = DEVICE,
    threads: int = THREADS,
) -> None:
    """Audit every zoo model, then compare them all; writes OUT/<model>/ and OUT/compare/."""
    root = repo_root()
    paths = zoo_paths(root)
    dataset = replace(load_dataset(root / SUBSET).subset(per_class, seed), source=SUBSET.as_posix())
    models = [prepare_model(root / path) for path in paths]
    for pm in models:
        check_compatible(pm, dataset, SUBSET)
    config = AuditConfig(
        per_class=per_class,
        seed=seed,
        device=device,
        threads=threads,
        knowledge_per_class=knowledge_per_class,
        patterns_epochs=pattern_epochs,
        eps=eps,
        pgd_steps=steps,
    )
    notes = [
        f"Demo settings, chosen so the whole showcase runs in minutes on a 2-core CPU: "
        f"{per_class} images per class for the class-wise patterns and PGD ({steps} steps at eps "
        f"{eps}), {knowledge_per_class} per class for knowledge points, pattern search for "
        f"{pattern_epochs:g} epochs, emergence on every second vgg checkpoint. Real audits should "
        f"use more images and steps (onnxaudit audit --per-class 50 --steps 10)."
    ]
    checkpoints = [
        os.path.relpath(path) for path in sorted((root / CHECKPOINTS).glob("vgg-iter*.onnx"))
    ][::-2][::-1]  # every second one, ending with the last (time budget)
    configs = [
        replace(config, checkpoints=checkpoints if emergence and path.stem == "vgg" else [])
        for path in paths
    ]
    with progress() as bar:
        update = stage_progress(bar)
        runs = audit_models(models, dataset, configs, update, [p.as_posix() for p in paths])
        compared = compare_runs(runs, update, device, threads)
    for path, run in zip(paths, runs, strict=True):
        write_audit(out / path.stem, run, notes=notes)
    written = write_report(out / "compare", compared.doc, compared.figures, notes)
    typer.echo(f"wrote {len(runs)} audits under {out}/ and {written['report.html']}")
