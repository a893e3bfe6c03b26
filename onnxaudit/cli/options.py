"""The CLI's option groups, each option defined once (typer `Annotated` aliases), as
Polygraphy's tools share argument groups; verbs list the groups they take, with their defaults.

`settings_from_options` turns a verb's parameters into the one validated Settings object.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from onnxaudit.errors import AuditError
from onnxaudit.results.gates import GateSpec, parse_threshold
from onnxaudit.results.schema import load_result
from onnxaudit.settings import ANALYSIS_NAMES, ModelOptions, Settings

# inputs and outputs
Model = Annotated[
    Path,
    typer.Argument(
        help="The classifier, an .onnx file (external .onnx.data beside it is read).",
        metavar="MODEL",
        show_default=False,
    ),
]
Models = Annotated[
    list[Path],
    typer.Argument(
        help="Two or more .onnx classifiers; the first is the reference.", metavar="MODELS..."
    ),
]
Data = Annotated[
    Path,
    typer.Option(
        "--data",
        "-d",
        help="Images: a folder of class folders, an .npz (x, y[, classes]) or IDX files.",
        metavar="PATH",
        show_default=False,
    ),
]
Out = Annotated[
    Path,
    typer.Option(
        "--out",
        "-o",
        help="Folder for report.html and result.json.",
        metavar="DIR",
        show_default=False,
    ),
]
OptionalOut = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Also write report.html and result.json here.", metavar="DIR"),
]

# model preparation (what the model expects)
InputShape = Annotated[
    str | None,
    typer.Option(
        "--input-shape",
        help="C,H,W the model takes (fixes dynamic sizes, or overrides them), e.g. 3,224,224.",
        metavar="C,H,W",
    ),
]
ChannelOrder = Annotated[
    str | None,
    typer.Option(
        "--channel-order",
        help="rgb or bgr: the channel order the model expects (data are RGB).",
        metavar="rgb|bgr",
    ),
]
InputScale = Annotated[
    float | None,
    typer.Option(
        "--input-scale",
        help="S: the model expects (x*S - mean)/std for pixels x in [0, 1]; 255 for 0-255 models.",
        metavar="S",
    ),
]
Mean = Annotated[
    str | None,
    typer.Option(
        "--mean",
        help="Per-channel mean in the model's units and channel order, e.g. 123.7,116.3,103.5.",
        metavar="M,M,M",
    ),
]
Std = Annotated[
    str | None,
    typer.Option(
        "--std", help="Per-channel std in the model's units and channel order.", metavar="S,S,S"
    ),
]
ClassNames = Annotated[
    Path | None,
    typer.Option(
        "--classes",
        help="Class names: a file with one name per line, or a JSON list.",
        metavar="FILE",
    ),
]


# run
PerClass = Annotated[
    int | None,
    typer.Option(
        "--per-class",
        help="Images per class (stratified, seeded subset; bounds the run time). Each "
        "backdoor-verdict restart draws its own that many when the data has them.",
        metavar="N",
    ),
]
Seed = Annotated[
    int,
    typer.Option(
        "--seed",
        help="Seed of the run; every random choice draws its own stream from it.",
        metavar="N",
    ),
]
Device = Annotated[
    str,
    typer.Option(
        "--device",
        help="auto (CUDA when onnxruntime offers it), cpu or cuda.",
        metavar="auto|cpu|cuda",
    ),
]
Threads = Annotated[
    int | None,
    typer.Option(
        "--threads", help="onnxruntime intra-op threads (0 or unset: all cores).", metavar="N"
    ),
]
BatchSize = Annotated[
    int, typer.Option("--batch-size", help="Images per onnxruntime call.", metavar="N")
]
MaxMemory = Annotated[
    str | None,
    typer.Option(
        "--max-memory",
        help="Memory budget of gradient and PGD batches, e.g. 2G, 1.5GiB, 800M "
        "(default: a quarter of RAM, at most 1.5 GiB).",
        metavar="SIZE",
    ),
]
Skip = Annotated[
    str | None,
    typer.Option(
        "--skip",
        help="Comma-separated analyses to skip: knowledge, patterns, robustness.",
        metavar="LIST",
    ),
]
Only = Annotated[
    str | None,
    typer.Option(
        "--only",
        help="Run only these analyses (comma-separated); the rest are skipped.",
        metavar="LIST",
    ),
]

# knowledge points
Layers = Annotated[
    str | None,
    typer.Option(
        "--layers",
        help="Comma-separated layers for knowledge points (default: the end of up to 4 stages).",
        metavar="LIST",
    ),
]
KnowledgePerClass = Annotated[
    int | None,
    typer.Option(
        "--knowledge-per-class",
        help="Images per class for knowledge points (default: the run's subset).",
        metavar="N",
    ),
]
Checkpoints = Annotated[
    list[Path] | None,
    typer.Option(
        "--checkpoints",
        help="A training checkpoint of the model, in training order; repeat for each (knowledge emergence).",
        metavar="ONNX",
    ),
]
Attack = Annotated[
    bool,
    typer.Option(
        "--attack/--no-attack", help="Also track regional features under PGD.", metavar=""
    ),
]

# class-wise patterns
PatternClasses = Annotated[
    str | None,
    typer.Option(
        "--pattern-classes",
        help="Comma-separated class indices to search (default: all).",
        metavar="LIST",
    ),
]
K = Annotated[
    float,
    typer.Option("--k", help="Pattern size: a fraction of the pixels (or a count).", metavar="K"),
]
PatternEpochs = Annotated[
    float,
    typer.Option(
        "--pattern-epochs",
        "--epochs",
        help="Passes over the search images per class.",
        metavar="EPOCHS",
    ),
]
Canvas = Annotated[
    str,
    typer.Option("--canvas", help="Canvases: confident, white, free (comma list).", metavar="LIST"),
]

# robustness
Eps = Annotated[
    float, typer.Option("--eps", help="L-inf PGD radius in [0, 1] pixel units.", metavar="EPS")
]
Steps = Annotated[int, typer.Option("--steps", help="PGD steps (>= 1).", metavar="N")]
Step = Annotated[
    float | None,
    typer.Option("--step", help="PGD step size (default 2.5 * eps / steps).", metavar="STEP"),
]

# gates
Junit = Annotated[
    Path | None,
    typer.Option("--junit", help="Write JUnit XML, one test case per gate.", metavar="FILE"),
]
FailOn = Annotated[
    list[str] | None,
    typer.Option(
        "--fail-on", help="'backdoor': fail when a backdoor is suspected.", metavar="CHECK"
    ),
]
AllowInconclusive = Annotated[
    bool,
    typer.Option(
        "--allow-inconclusive",
        help="With --fail-on backdoor: let an inconclusive verdict pass (it fails by default).",
        metavar="",
    ),
]
MinReliableRatio = Annotated[
    list[str] | None,
    typer.Option(
        "--min-reliable-ratio",
        help="LAYER=VALUE (repeatable); LAYER is a tensor name, an index (-1: deepest) or '*'.",
        metavar="LAYER=VALUE",
    ),
]
MinRobustAccuracy = Annotated[
    float | None,
    typer.Option(
        "--min-robust-accuracy",
        help="Fail when PGD accuracy is below this fraction.",
        metavar="FRACTION",
    ),
]
Baseline = Annotated[
    Path | None,
    typer.Option("--baseline", help="An earlier result.json to compare.", metavar="JSON"),
]
MaxDrop = Annotated[
    float | None,
    typer.Option(
        "--max-drop",
        help="Percent that knowledge points or reliable ratio may fall.",
        metavar="PERCENT",
    ),
]


def parse_floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    """'0.5,0.5' -> (0.5, 0.5); None stays None."""
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise AuditError(f"{flag} takes comma-separated numbers, got {text!r}") from None


def parse_names(text: str | None) -> list[str]:
    """'a,b' -> ['a', 'b']; None -> []."""
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def parse_classes(text: str | None) -> tuple[int, ...] | None:
    try:
        return tuple(int(c) for c in parse_names(text)) or None
    except ValueError:
        raise AuditError(
            f"--pattern-classes takes comma-separated class indices, got {text!r}"
        ) from None


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise AuditError(f"--input-shape takes C,H,W (integers), got {text!r}") from None


def model_options(options: Mapping[str, object]) -> ModelOptions:
    """The model-preparation options of a verb as ModelOptions."""
    from onnxaudit.model import load_class_names

    classes = options.get("classes")
    return ModelOptions(
        mean=parse_floats(options.get("mean"), "--mean"),
        std=parse_floats(options.get("std"), "--std"),
        input_shape=parse_shape(options.get("input_shape")),
        channel_order=options.get("channel_order"),
        input_scale=options.get("input_scale"),
        class_names=None if classes is None else tuple(load_class_names(classes)),
    )


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(flag: str, text: str) -> int:
    """Bytes from '2G', '1.5GiB', '800MB', '800m' or a plain byte count (binary units)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if match is None:
        raise AuditError(f"{flag} takes a size such as 2G, 1.5GiB or 800M, got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def parse_skip(skip: str | None, only: str | None) -> frozenset[str]:
    if skip and only:
        raise AuditError("give --skip or --only, not both")
    if only:
        chosen = set(parse_names(only))
        unknown = chosen - set(ANALYSIS_NAMES)
        if unknown:
            raise AuditError(
                f"cannot run {', '.join(sorted(unknown))}; analyses are {', '.join(ANALYSIS_NAMES)}"
            )
        return frozenset(ANALYSIS_NAMES) - chosen
    return frozenset(parse_names(skip))


# verb parameter -> Settings field, for the parameters that are plain copies
_COPIED = {
    "per_class": "per_class",
    "seed": "seed",
    "device": "device",
    "threads": "threads",
    "batch_size": "batch_size",
    "knowledge_per_class": "knowledge_per_class",
    "attack": "knowledge_attack",
    "k": "patterns_k",
    "pattern_epochs": "patterns_epochs",
    "eps": "eps",
    "steps": "pgd_steps",
    "step": "pgd_step",
    "workers": "workers",
    "scheduler": "scheduler",
}


def settings_from_options(options: Mapping[str, object], base: Settings | None = None) -> Settings:
    """A verb's parameters as Settings; parameters that are no setting (paths, gates) are ignored
    and settings the verb has no option for keep `base`'s value."""
    base = base or Settings()
    changes: dict[str, object] = {
        field: options[name] for name, field in _COPIED.items() if name in options
    }
    changes["model"] = model_options(options)
    if options.get("max_memory") is not None:
        changes["max_memory"] = parse_size("--max-memory", str(options["max_memory"]))
    if "layers" in options:
        changes["layers"] = tuple(parse_names(options["layers"])) or None
    if "checkpoints" in options:
        changes["checkpoints"] = tuple(str(p) for p in options["checkpoints"] or ())
    if "pattern_classes" in options:
        changes["patterns_classes"] = parse_classes(options["pattern_classes"])
    if "canvas" in options:
        changes["patterns_canvases"] = tuple(parse_names(options["canvas"]))
    if "skip" in options or "only" in options:
        changes["skip"] = parse_skip(options.get("skip"), options.get("only"))
    return base.update(**changes)


def gates_from_options(options: Mapping[str, object]) -> GateSpec:
    """The gate options of `audit` and `compare` as a validated GateSpec."""
    fail_on = list(options.get("fail_on") or [])
    unknown = set(fail_on) - {"backdoor"}
    if unknown:
        raise AuditError(f"--fail-on takes 'backdoor', got {', '.join(sorted(unknown))}")
    baseline = options.get("baseline")
    return GateSpec(
        fail_on_backdoor=bool(fail_on),
        allow_inconclusive=bool(options.get("allow_inconclusive")),
        min_reliable_ratio=[parse_threshold(t) for t in options.get("min_reliable_ratio") or []],
        min_robust_accuracy=options.get("min_robust_accuracy"),
        baseline=None if baseline is None else load_result(baseline),
        max_drop=options.get("max_drop"),
    )


# where the work runs (onnxaudit/executors.py); needs pip install 'onnxaudit[distributed]'
Workers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        help="Run the shards on a local Dask cluster of N worker processes (1 thread each).",
        metavar="N",
    ),
]
Scheduler = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Run the shards on an existing Dask scheduler, e.g. tcp://host:8786.",
        metavar="ADDRESS",
    ),
]
ManyModels = Annotated[
    list[Path],
    typer.Argument(help="One or more .onnx classifiers, each audited alone.", metavar="MODELS..."),
]
