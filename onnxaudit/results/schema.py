"""The result@1 document: one JSON shape that the CLI writes, the report renders and the gates read.

Assembling it in one place keeps `audit`, `compare`, `demo` and the per-analysis verbs identical
in how they name the model, the data and the tool; docs/result-schema.md describes every field.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnxaudit import __version__
from onnxaudit.errors import AuditError

SCHEMA = "onnxaudit/result@1"
COMPARE_SCHEMA = "onnxaudit/compare@1"
SECTIONS = ("knowledge", "patterns", "robustness")
REQUIRED = ("schema", "tool", "model", "data")


def tool_section() -> dict[str, str]:
    return {"name": "onnxaudit", "version": __version__}


def model_section(pm: Any, path: str | Path | None = None) -> dict[str, Any]:
    """The model block: PreparedModel.identity() plus logits, sample feature and candidate layers.

    `path` overrides the stored path, so committed showcases can record repo-relative paths.
    """
    info = pm.info
    section = jsonable(pm.identity())
    if path is not None:
        section["path"], section["name"] = str(path), Path(path).stem
    section["input"]["range"] = [0.0, 1.0]
    section["logits"] = info.logits_name
    section["sample_feature"] = {"name": info.sample_feature_name, "dim": info.sample_feature_dim}
    section["layers"] = [jsonable(layer) for layer in info.layers]
    return section


def build_result(
    model: Mapping[str, Any],
    data: Mapping[str, Any],
    settings: Mapping[str, Any] | None = None,
    knowledge: Any = None,
    patterns: Any = None,
    robustness: Any = None,
    gates: list[Any] | None = None,
) -> dict[str, Any]:
    """Assemble a result@1 dict; analyses may be result objects (with to_dict) or dicts or None."""
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "tool": tool_section(),
        "model": jsonable(model),
        "data": jsonable(data),
        "settings": jsonable(settings or {}),
        "knowledge": jsonable(knowledge),
        "patterns": jsonable(patterns),
        "robustness": jsonable(robustness),
    }
    if gates is not None:
        doc["gates"] = jsonable(gates)
    return doc


def build_comparison(results: list[dict[str, Any]], comparison: Any = None) -> dict[str, Any]:
    """The compare document: every model's result@1 plus the cross-model analyses."""
    return {
        "schema": COMPARE_SCHEMA,
        "tool": tool_section(),
        "models": list(results),
        "comparison": jsonable(comparison or {}),
    }


def jsonable(value: Any) -> Any:
    """Plain JSON data from result objects, dataclasses, numpy scalars and arrays."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict())
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in result.json")


def validate_result(doc: Any, path: str | Path | None = None) -> dict[str, Any]:
    """Check the top-level shape of a result@1 document; AuditError names what is wrong."""
    if not isinstance(doc, dict):
        raise AuditError("not an onnxaudit result (expected a JSON object)", path)
    if doc.get("schema") != SCHEMA:
        raise AuditError(f"schema is {doc.get('schema')!r}, expected {SCHEMA!r}", path)
    missing = [key for key in REQUIRED if key not in doc]
    if missing:
        raise AuditError(f"result is missing {', '.join(missing)}", path)
    return doc


def load_result(path: str | Path) -> dict[str, Any]:
    """Read and validate a result.json (e.g. a CI baseline)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AuditError(f"cannot read result: {exc.strerror or exc}", path) from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AuditError(f"not valid JSON ({exc.msg}, line {exc.lineno})", path) from exc
    return validate_result(doc, path)


def dumps(doc: Any) -> str:
    return json.dumps(jsonable(doc), indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_atomic(path: str | Path, content: str | bytes) -> Path:
    """Write via a temp file in the same folder and rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else content
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; reports are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
