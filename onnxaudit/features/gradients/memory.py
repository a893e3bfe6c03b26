"""Batch sizing from a memory budget: the gradient graph keeps every forward activation alive
for the backward, so its peak grows linearly with the batch."""

from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import helper

from onnxaudit.features.gradients.context import FLOAT_TYPES
from onnxaudit.features.gradients.shapes import resolved

DEFAULT_SHARE = 0.25  # of the machine's physical memory
DEFAULT_CAP = 3 << 29  # 1.5 GiB: PGD on a 320x320 ResNet-18 then peaks at ~2 GB in all
# peak bytes of a PGD run per image in the batch / bytes of the forward activations per image:
# measured 3.3 (ResNet-18 at 320x320, batch 22, onnxruntime's arena included), 1.6 (ResNet-18
# at 224, growth from batch 8 to 16) and 1.2 (zoo vgg); the largest, with margin
OVERHEAD = 3.5


def default_max_memory() -> int:
    """A quarter of physical memory, at most DEFAULT_CAP (1.5 GiB)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(min(DEFAULT_SHARE * total, DEFAULT_CAP))


def activation_bytes(model: onnx.ModelProto) -> int:
    """Bytes of all float activations of one sample (tensors whose first dim is the batch)."""
    shaped = onnx.ModelProto()
    shaped.CopyFrom(model)
    graph = resolved(shaped).graph
    produced = {o for node in graph.node for o in node.output}
    total = 0
    for info in [*graph.input, *graph.value_info, *graph.output]:
        tensor = info.type.tensor_type
        if tensor.elem_type not in FLOAT_TYPES or not tensor.HasField("shape"):
            continue
        if info.name not in produced and info.name != graph.input[0].name:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if not dims or any(d is None for d in dims[1:]):
            continue
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).itemsize
        total += int(np.prod(dims[1:], dtype=np.int64)) * itemsize
    return total


def batch_for_budget(per_sample: int, max_memory: int, limit: int) -> int:
    """The largest batch (1..limit) whose estimated peak fits `max_memory` bytes."""
    return int(max(1, min(limit, max_memory // max(1, int(OVERHEAD * per_sample)))))
