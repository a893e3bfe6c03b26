"""Reading an ONNX file, its metadata and a class-names file, each failure one AuditError line."""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from onnxaudit.errors import AuditError
from onnxaudit.model.graph import first_line


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Read an ONNX file with its external data and check it, or raise a one-line AuditError."""
    path = Path(path)
    if not path.exists():
        raise AuditError("no such file", path)
    if not path.is_file():
        raise AuditError("not a file", path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise AuditError(f"not an ONNX model ({type(exc).__name__})", path) from exc
    if not model.graph.node:
        raise AuditError("not an ONNX model (no graph nodes)", path)
    try:
        onnx.load_external_data_for_model(model, str(path.parent))
    except Exception as exc:
        raise AuditError(f"cannot read the model's external data: {first_line(exc)}", path) from exc
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise AuditError(f"ONNX checker failed: {first_line(exc)}", path) from exc
    return model


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def load_class_names(path: str | Path) -> list[str]:
    """Class names from a file: a JSON list, or one name per line (blank lines skipped)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AuditError(f"cannot read the class names: {first_line(exc)}", path) from exc
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AuditError(f"the class names are not a valid JSON list: {exc.msg}", path) from exc
        if not isinstance(names, list):
            raise AuditError("the class names must be a JSON list", path)
        names = [str(n) for n in names]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise AuditError("the class names file is empty", path)
    return names
