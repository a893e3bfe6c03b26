"""What a model expects of its input: size, channel order, pixel scale, normalisation, class names.

Each setting comes from an explicit argument, else from the model's `metadata_props`, else a
default; the description records which, so a report says how the pixels were fed.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace

import onnx

from onnxaudit.errors import AuditError
from onnxaudit.model.load import metadata

CHANNEL_ORDERS = ("rgb", "bgr")
FIELDS = ("input_shape", "channel_order", "input_scale", "mean", "std", "class_names")
# metadata_props keys read for each setting, besides the same names inside a "preprocessing" JSON.
METADATA_KEYS = {"class_names": ("classes", "class_names")}


@dataclass(frozen=True)
class InputSettings:
    """The model expects (x * input_scale - mean) / std, channels in `channel_order`, for RGB x in [0, 1]."""

    input_shape: tuple[int, int, int] | None = None
    channel_order: str = "rgb"
    input_scale: float = 1.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    class_names: tuple[str, ...] | None = None
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        return asdict(self)

    def is_identity(self) -> bool:
        """True when the prepended pixel transform would do nothing."""
        return (
            self.channel_order == "rgb"
            and self.input_scale == 1.0
            and self.mean is None
            and self.std is None
        )

    def for_channels(self, channels: int, path: object = None) -> InputSettings:
        """Check the settings against the model's channel count and expand 1-value mean/std."""
        if self.channel_order == "bgr" and channels != 3:
            raise AuditError(
                f"--channel-order bgr needs 3 channels, the model takes {channels}", path
            )
        expanded = {}
        for what in ("mean", "std"):
            values = getattr(self, what)
            if values is None:
                continue
            if len(values) not in (1, channels):
                raise AuditError(
                    f"--{what} has {len(values)} values but the model takes {channels} channels",
                    path,
                )
            expanded[what] = values * channels if len(values) == 1 else values
        return replace(self, **expanded)


def resolve_settings(
    model: onnx.ModelProto, given: dict[str, object], path: object = None
) -> InputSettings:
    """Explicit values (not None) win over the model's metadata, which wins over the defaults."""
    stored = _metadata_settings(model)
    values, sources = {}, {}
    for name in FIELDS:
        if given.get(name) is not None:
            values[name], sources[name] = given[name], "argument"
        elif stored.get(name) is not None:
            values[name], sources[name] = stored[name], "metadata"
        else:
            sources[name] = "default"
    return _validated(values, sources, path)


def _metadata_settings(model: onnx.ModelProto) -> dict[str, object]:
    props = metadata(model)
    found: dict[str, object] = {}
    preprocessing = _json(props.get("preprocessing"))
    if isinstance(preprocessing, dict):
        found.update({k: v for k, v in preprocessing.items() if k in FIELDS})
    for name in FIELDS:
        for key in METADATA_KEYS.get(name, (name,)):
            if key in props and name not in found:
                raw = props[key]
                found[name] = _json(raw) if _json(raw) is not None else raw
    return found


def _json(raw: str | None) -> object:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return None


def _numbers(value: object, what: str, path: object) -> tuple[float, ...]:
    items = value.split(",") if isinstance(value, str) else value
    try:
        numbers = tuple(float(v) for v in items)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise AuditError(f"--{what.replace('_', '-')} takes numbers, got {value!r}", path) from None
    if not numbers or not all(math.isfinite(v) for v in numbers):
        raise AuditError(f"--{what.replace('_', '-')} takes finite numbers, got {value!r}", path)
    return numbers


def _validated(values: dict[str, object], sources: dict[str, str], path: object) -> InputSettings:
    settings: dict[str, object] = {}
    if "input_shape" in values:
        shape = _numbers(values["input_shape"], "input_shape", path)
        if len(shape) != 3 or not all(v >= 1 and v == int(v) for v in shape):
            raise AuditError(
                f"--input-shape takes C,H,W (three positive integers), got {values['input_shape']!r}",
                path,
            )
        settings["input_shape"] = tuple(int(v) for v in shape)
    if "channel_order" in values:
        order = str(values["channel_order"]).lower()
        if order not in CHANNEL_ORDERS:
            raise AuditError(
                f"--channel-order takes rgb or bgr, got {values['channel_order']!r}", path
            )
        settings["channel_order"] = order
    if "input_scale" in values:
        scale = _numbers(
            [values["input_scale"]]
            if not isinstance(values["input_scale"], (list, tuple, str))
            else values["input_scale"],
            "input_scale",
            path,
        )
        if len(scale) != 1 or scale[0] <= 0:
            raise AuditError(
                f"--input-scale takes one positive number, got {values['input_scale']!r}", path
            )
        settings["input_scale"] = scale[0]
    for what in ("mean", "std"):
        if what in values:
            settings[what] = _numbers(values[what], what, path)
    if any(s == 0 for s in settings.get("std", ())):
        raise AuditError("--std values must be non-zero", path)
    if "class_names" in values:
        names = values["class_names"]
        if isinstance(names, str) or not isinstance(names, (list, tuple)):
            raise AuditError("class names must be a list of names", path)
        settings["class_names"] = tuple(str(n) for n in names)
    return InputSettings(**settings, sources=sources)
