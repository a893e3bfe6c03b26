"""`onnxaudit demo`: audit and compare the committed model zoo in one showcase.

It writes to reports/demo (ignored by git) unless told otherwise, so running it never modifies a
tracked file; the committed showcase in docs/showcase is regenerated only on purpose with
`onnxaudit demo --out docs/showcase --threads 2` (fixed threads and seed: see docs/showcase/README.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

import onnxaudit
from onnxaudit.cli.common import print_verdict_table, progress, stage_progress
from onnxaudit.cli.options import (
    Device,
    Eps,
    KnowledgePerClass,
    PatternEpochs,
    PerClass,
    Seed,
    Steps,
    Threads,
)
from onnxaudit.errors import AuditError
from onnxaudit.outputs import check_output_dir, locked_output
from onnxaudit.settings import PATTERN_EPOCHS, Settings

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
    out: Path = typer.Option(
        Path("reports/demo"),
        "--out",
        "-o",
        help="Folder of the showcase (git ignores reports/; the committed one: --out docs/showcase).",
        metavar="DIR",
    ),
    per_class: PerClass = 20,
    knowledge_per_class: KnowledgePerClass = 6,
    steps: Steps = 5,
    eps: Eps = 0.1,
    pattern_epochs: PatternEpochs = PATTERN_EPOCHS,
    emergence: bool = typer.Option(
        True,
        help="Knowledge emergence over vgg's training checkpoints (models/zoo/checkpoints).",
        metavar="",
    ),
    seed: Seed = 0,
    device: Device = "auto",
    threads: Threads = None,
) -> None:
    """Audit every zoo model, then compare them all; writes OUT/<model>/ and OUT/compare/."""
    from onnxaudit.pipeline import compare
    from onnxaudit.report import write_report

    root = repo_root()
    paths = zoo_paths(root)
    settings = Settings(
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
        f"use more images and steps (onnxaudit audit --per-class 50 --steps 10).",
        "The class-wise patterns and the backdoor verdict run at the audit defaults. The verdict "
        "finds resnet-blend's blended trigger at every seed measured but vgg-badnets' patch "
        "trigger at only 4 of 10 seeds (seed 0, this showcase's, misses it): see "
        "docs/patterns.md, Limits.",
    ]
    checkpoints = [
        os.path.relpath(path) for path in sorted((root / CHECKPOINTS).glob("vgg-iter*.onnx"))
    ][::-2][::-1]  # every second one, ending with the last (time budget)
    per_model = [
        settings.update(checkpoints=checkpoints if emergence and path.stem == "vgg" else ())
        for path in paths
    ]
    data = onnxaudit.load_data(root / SUBSET)
    data.source = SUBSET.as_posix()
    check_output_dir(out)
    with locked_output(out), progress() as bar:
        result = compare(
            [root / p for p in paths],
            data,
            per_model,
            stage_progress(bar),
            display_paths=[p.as_posix() for p in paths],
        )
        for run in result.runs:
            write_report(run, out / run.name, notes=notes)
        written = write_report(result, out / "compare", notes=notes)
    typer.echo(f"wrote {len(result.runs)} audits under {out}/ and {written['report.html']}")
    print_verdict_table(result.runs)
