"""The nine `light` zoo graphs shipped in the onnx wheel, with seeded random weights.

The wheel stores each weight as ConstantOfShape(its shape); replacing those by random initializers
(He-scaled for Conv/Gemm weights, positive for normalisation scales and variances) gives real
architectures whose activations stay in a sane range.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[1]
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
NAMES = [p.stem.removeprefix("light_") for p in sorted(LIGHT.glob("light_*.onnx"))]
# The graphs the test corpora run: VGG-19 (143M weights) has no op that AlexNet and ZFNet-512
# lack, and took 110 s of CI on its own.
TESTED = [name for name in NAMES if name != "vgg19"]


def _weight(rng: np.random.Generator, shape: tuple[int, ...], role: str) -> np.ndarray:
    """float32 throughout: VGG-19 has 143M weights."""
    if role == "matrix":
        fan_in = int(np.prod(shape[1:]))
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
    low, high = (0.5, 1.5) if role == "positive" else (-0.1, 0.1)
    return (rng.random(shape, dtype=np.float32) * (high - low) + low).astype(np.float32)


def _role(consumers: list[tuple[onnx.NodeProto, int]], shape: tuple[int, ...]) -> str:
    for node, position in consumers:
        if node.op_type in ("Conv", "Gemm", "MatMul") and position == 1:
            return "matrix"
        if node.op_type == "BatchNormalization" and position in (1, 4):
            return "positive"
        if node.op_type in ("Mul", "Unsqueeze") and len(shape) == 1:
            return "positive"
    return "small"


def light_model(name: str, seed: int = 0) -> onnx.ModelProto:
    """The light graph `name` (see NAMES) with every ConstantOfShape weight made random."""
    model = onnx.load(LIGHT / f"light_{name}.onnx")
    graph = model.graph
    shapes = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in graph.node:
        for position, tensor in enumerate(node.input):
            consumers.setdefault(tensor, []).append((node, position))
    rng = np.random.default_rng(seed)
    kept, weights = [], []
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in shapes:
            shape = tuple(int(d) for d in shapes[node.input[0]])
            role = _role(consumers.get(node.output[0], []), shape)
            value = _weight(rng, shape, role)
            weights.append(numpy_helper.from_array(value, node.output[0]))
        else:
            kept.append(node)
    used = {t for node in kept for t in node.input}
    del graph.node[:]
    graph.node.extend(kept)
    inits = [t for t in graph.initializer if t.name in used] + weights
    del graph.initializer[:]
    graph.initializer.extend(inits)
    constant = set(shapes) | {t.name for t in weights}
    inputs = [i for i in graph.input if i.name not in constant]
    del graph.input[:]
    graph.input.extend(inputs)
    model.ir_version = max(model.ir_version, 4)  # initializers need not be listed as inputs
    return model


def torch_oracle_module() -> ModuleType:
    """The torch oracle (tests/torch_oracle.py): its TorchMirror runs these graphs in float64 and
    its torch_input_gradient is the zoo tests' reference."""
    import torch_oracle

    return torch_oracle
