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


def _numbers(value: object, what: str) -> tuple[float, ...]:
    """Numbers from a list, one number, or a comma-separated string."""
    flag = f"--{what.replace('_', '-')}"
    if isinstance(value, str):
        value = value.split(",")
    elif not isinstance(value, (list, tuple)):
        value = [value]
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise AuditError(f"{flag} takes numbers, got {value!r}") from None
    if not numbers or not all(math.isfinite(v) for v in numbers):
        raise AuditError(f"{flag} takes finite numbers, got {value!r}")
    return numbers


def _input_shape(value: object) -> tuple[int, int, int]:
    shape = _numbers(value, "input_shape")
    if len(shape) != 3 or not all(v >= 1 and v == int(v) for v in shape):
        raise AuditError(f"--input-shape takes C,H,W (three positive integers), got {value!r}")
    return tuple(int(v) for v in shape)


def _channel_order(value: object) -> str:
    order = str(value).lower()
    if order not in CHANNEL_ORDERS:
        raise AuditError(f"--channel-order takes rgb or bgr, got {value!r}")
    return order


def _input_scale(value: object) -> float:
    scale = _numbers(value, "input_scale")
    if len(scale) != 1 or scale[0] <= 0:
        raise AuditError(f"--input-scale takes one positive number, got {value!r}")
    return scale[0]


def _std(value: object) -> tuple[float, ...]:
    std = _numbers(value, "std")
    if any(s == 0 for s in std):
        raise AuditError("--std values must be non-zero")
    return std


def _class_names(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise AuditError("class names must be a list of names")
    return tuple(str(n) for n in value)


PARSERS = {
    "input_shape": _input_shape,
    "channel_order": _channel_order,
    "input_scale": _input_scale,
    "mean": lambda value: _numbers(value, "mean"),
    "std": _std,
    "class_names": _class_names,
}


def _validated(values: dict[str, object], sources: dict[str, str], path: object) -> InputSettings:
    settings = {}
    for name, value in values.items():
        try:
            settings[name] = PARSERS[name](value)
        except AuditError as exc:
            where = " (from the model's metadata)" if sources[name] == "metadata" else ""
            raise AuditError(exc.message + where, path) from None
    return InputSettings(**settings, sources=sources)
