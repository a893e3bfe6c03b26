"""The one place that creates onnxruntime sessions, so device and thread choices stay consistent."""

from __future__ import annotations

import onnx
import onnxruntime as ort

from onnxaudit.errors import AuditError

DEVICES = ("auto", "cpu", "cuda")


def available_providers() -> list[str]:
    return list(ort.get_available_providers())


def providers_for(device: str = "auto") -> list[str]:
    """Execution providers for `device`: auto picks CUDA when this onnxruntime offers it."""
    if device not in DEVICES:
        raise AuditError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    has_cuda = "CUDAExecutionProvider" in available_providers()
    if device == "cuda" and not has_cuda:
        raise AuditError(
            "device 'cuda' asked for, but this onnxruntime has no CUDA execution provider "
            "(install onnxruntime-gpu: pip install 'onnxaudit[gpu]')"
        )
    if device in ("cuda", "auto") and has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def create_session(
    model: onnx.ModelProto | bytes,
    device: str = "auto",
    threads: int | None = None,
) -> ort.InferenceSession:
    """An InferenceSession on `device` with `threads` intra-op threads (None: onnxruntime's default)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    payload = model if isinstance(model, bytes) else model.SerializeToString()
    try:
        return ort.InferenceSession(payload, options, providers=providers_for(device))
    except AuditError:
        raise
    except Exception as exc:  # onnxruntime raises its own untyped errors
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AuditError(f"onnxruntime cannot load the model: {first_line}") from exc
