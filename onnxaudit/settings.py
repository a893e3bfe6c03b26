"""One settings object for a run, validated once, up front, with the CLI's messages.

The CLI builds it from options, the Python API from keyword arguments; every analysis, every
training checkpoint and every compared model reads the same object, so nothing is silently
dropped on the way (model preparation, device, threads, seeds, budgets).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from onnxaudit.errors import AuditError

if TYPE_CHECKING:
    from onnxaudit.model import PreparedModel

ANALYSIS_NAMES = ("knowledge", "patterns", "robustness")
DEVICES = ("auto", "cpu", "cuda")
CANVASES = ("confident", "white", "free")
PATTERN_EPOCHS = 5.0  # passes over the search images per restart of the pattern search
MIN_MEMORY = 16 << 20  # bytes: below this no gradient batch of a real model fits


@dataclass(frozen=True)
class ModelOptions:
    """What the model expects of its input, applied to the model, each of its checkpoints and
    every compared model: the model takes `(x * input_scale - mean) / std` in `channel_order`
    for RGB pixels x in [0, 1], at `input_shape` (C, H, W). None reads a setting from the model's
    `metadata_props` when it has one (docs/intake.md), else rgb, scale 1, no normalisation.
    """

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_shape: tuple[int, ...] | None = None
    channel_order: str | None = None
    input_scale: float | None = None
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("input_shape", "class_names"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values is not None:
                values = tuple(float(v) for v in values)
                if not values or not all(math.isfinite(v) for v in values):
                    raise AuditError(f"--{name} takes finite numbers, got {values}")
                object.__setattr__(self, name, values)
        if self.std is not None and any(v == 0 for v in self.std):
            raise AuditError("--std values must be non-zero")

    def prepare(self, path: str | Path) -> PreparedModel:
        """The canonical model (NCHW RGB pixels in [0, 1]) of the ONNX file at `path`."""
        from onnxaudit.model import prepare_model

        return prepare_model(
            path,
            self.mean,
            self.std,
            input_shape=self.input_shape,
            channel_order=self.channel_order,
            input_scale=self.input_scale,
            class_names=self.class_names,
        )

    def to_dict(self) -> dict[str, object]:
        return {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(self).items()}


@dataclass(frozen=True)
class Settings:
    """Every setting of a run; `to_dict()` is recorded verbatim in result.json."""

    model: ModelOptions = field(default_factory=ModelOptions)
    per_class: int | None = 20
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    batch_size: int = 128
    max_memory: int | None = None  # bytes for gradient batches; None: a safe share of the machine
    skip: frozenset[str] = frozenset()
    # knowledge points
    layers: tuple[str, ...] | None = None
    knowledge_per_class: int | None = None
    checkpoints: tuple[str, ...] = ()
    knowledge_attack: bool = False
    # class-wise patterns
    patterns_classes: tuple[int, ...] | None = None
    patterns_k: float = 0.05
    patterns_epochs: float = PATTERN_EPOCHS
    patterns_canvases: tuple[str, ...] = CANVASES
    # robustness (PGD)
    eps: float = 0.1
    pgd_steps: int = 10
    pgd_step: float | None = None
    # where the work runs (see onnxaudit/executors.py): a local Dask cluster or a scheduler
    workers: int | None = None
    scheduler: str | None = None

    def __post_init__(self) -> None:
        for name in ("skip", "layers", "checkpoints", "patterns_classes", "patterns_canvases"):
            value = getattr(self, name)
            if value is not None:
                kind = frozenset if name == "skip" else tuple
                object.__setattr__(self, name, kind(value))
        object.__setattr__(self, "checkpoints", tuple(str(p) for p in self.checkpoints))
        self._validate()

    def _validate(self) -> None:
        unknown = set(self.skip) - set(ANALYSIS_NAMES)
        if unknown:
            raise AuditError(
                f"cannot skip {', '.join(sorted(unknown))}; analyses are {', '.join(ANALYSIS_NAMES)}"
            )
        if self.skip == frozenset(ANALYSIS_NAMES):
            raise AuditError("every analysis is skipped: nothing to do")
        _at_least("--per-class", self.per_class, 1, optional=True)
        _at_least("--knowledge-per-class", self.knowledge_per_class, 1, optional=True)
        _at_least("--threads", self.threads, 0, optional=True)  # 0 or None: all cores
        _at_least("--batch-size", self.batch_size, 1)
        _at_least("--max-memory", self.max_memory, MIN_MEMORY, optional=True)
        _at_least("--steps", self.pgd_steps, 1)
        if self.device not in DEVICES:
            raise AuditError(f"--device takes {', '.join(DEVICES)}, got {self.device!r}")
        if not 0 <= self.eps <= 1:
            raise AuditError(f"--eps must be in [0, 1] (pixel units), got {self.eps}")
        if self.pgd_step is not None and not 0 < self.pgd_step <= 1:
            raise AuditError(f"--step must be in (0, 1], got {self.pgd_step}")
        if not 0 < self.patterns_k < 1 and not (self.patterns_k >= 1 and self.patterns_k % 1 == 0):
            raise AuditError(
                f"--k must be a fraction in (0, 1) or a whole pixel count, got {self.patterns_k}"
            )
        if not self.patterns_epochs > 0:
            raise AuditError(f"--pattern-epochs must be > 0, got {self.patterns_epochs}")
        bad = set(self.patterns_canvases) - set(CANVASES)
        if bad or not self.patterns_canvases:
            raise AuditError(f"--canvas takes {', '.join(CANVASES)}, got {self.patterns_canvases}")
        if self.patterns_classes is not None and min(self.patterns_classes, default=0) < 0:
            raise AuditError(f"--classes takes class indices >= 0, got {self.patterns_classes}")
        self._validate_executor()

    def _validate_executor(self) -> None:
        _at_least("--workers", self.workers, 1, optional=True)
        if self.workers is not None and self.scheduler is not None:
            raise AuditError("give --workers or --scheduler, not both")
        if self.scheduler is not None and not str(self.scheduler).strip():
            raise AuditError("--scheduler takes an address such as tcp://host:8786")

    def runs(self, analysis: str) -> bool:
        return analysis not in self.skip

    def only(self, analysis: str) -> Settings:
        """These settings restricted to one analysis (the `knowledge`/`patterns`/`attack` verbs)."""
        return replace(self, skip=frozenset(ANALYSIS_NAMES) - {analysis})

    def update(self, **changes: object) -> Settings:
        """A validated copy with some fields changed."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["model"] = self.model.to_dict()
        out["skip"] = sorted(self.skip)
        for name in ("layers", "checkpoints", "patterns_classes", "patterns_canvases"):
            if out[name] is not None:
                out[name] = list(out[name])
        return out


def _at_least(flag: str, value: int | None, low: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None or int(value) != value or value < low:
        raise AuditError(f"{flag} must be an integer >= {low}, got {value}")


def settings_from(base: Settings | None, overrides: dict[str, object]) -> Settings:
    """`base` (default Settings()) with keyword overrides; model options may be given flat
    (`mean=...`) as in the Python API."""
    base = base or Settings()
    model_keys = {f.name for f in fields(ModelOptions)}
    model_changes = {k: overrides.pop(k) for k in list(overrides) if k in model_keys}
    if model_changes:
        overrides["model"] = replace(base.model, **model_changes)
    unknown = set(overrides) - {f.name for f in fields(Settings)}
    if unknown:
        raise AuditError(f"unknown settings: {', '.join(sorted(unknown))}")
    if "skip" in overrides:
        overrides["skip"] = _names(overrides["skip"])
    return replace(base, **overrides)


def _names(value: object) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(v.strip() for v in value.split(",") if v.strip())
    return frozenset(value) if isinstance(value, Iterable) else frozenset()
