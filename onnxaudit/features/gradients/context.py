"""The state a backward rule sees: static shapes, constant values, and an emitter for new nodes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxaudit.errors import AuditError

FLOAT_TYPES = frozenset(
    {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
)

_LOGIC = ("Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "And", "Or", "Not")
# comparison -> (first opset with float support, the comparisons whose negation it is)
_SPELLED = {
    "GreaterOrEqual": (12, ("Less",)),
    "LessOrEqual": (12, ("Greater",)),
    "Equal": (11, ("Less", "Greater")),
}
_RESULT_TYPES = {
    **dict.fromkeys(_LOGIC, TensorProto.BOOL),
    **dict.fromkeys(("Shape", "ArgMax"), TensorProto.INT64),
}


def attributes(node: onnx.NodeProto) -> dict:
    """A node's attributes as plain Python values (strings decoded)."""
    values = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        values[attr.name] = value.decode() if isinstance(value, bytes) else value
    return values


def describe_node(node: onnx.NodeProto) -> str:
    return f"{node.op_type} at node {node.name or node.output[0]!r}"


class GradContext:
    """Static facts about the forward graph plus the list of backward nodes being emitted.

    Rules ask it for static dims (from onnx shape inference), constant inputs, runtime shapes,
    and emit nodes through `op`, so naming, opset and dtype details live in one place.
    """

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        self.varied: set[str] = set()  # float tensors that depend on the image; set by the pass
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.types = {
            info.name: info.type.tensor_type.elem_type
            for info in [*graph.input, *graph.value_info, *graph.output]
        }
        self.dims = self.dims_of(graph)
        self.constants: dict[str, np.ndarray] = {}
        for init in graph.initializer:
            self.constants[init.name] = numpy_helper.to_array(init)
            self.types[init.name] = init.data_type
            self.dims[init.name] = tuple(init.dims)
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                value = attributes(node).get("value")
                if isinstance(value, TensorProto):
                    self.constants[node.output[0]] = numpy_helper.to_array(value)
        self._taken = {name for node in graph.node for name in [*node.input, *node.output]}
        self._taken |= {i.name for i in [*graph.input, *graph.output, *graph.initializer]}
        self._count = 0
        self._shape_ops: dict[str, str] = {}

    @staticmethod
    def dims_of(graph: onnx.GraphProto) -> dict[str, tuple[int | None, ...]]:
        """Static dims per tensor from the graph's value infos (None: unknown dim)."""
        dims = {}
        for info in [*graph.input, *graph.value_info, *graph.output]:
            tensor_type = info.type.tensor_type
            if tensor_type.HasField("shape"):
                dims[info.name] = tuple(
                    d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim
                )
        return dims

    # --- names and emission -------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        while True:
            self._count += 1
            name = f"grad/{hint}_{self._count}"
            if name not in self._taken:
                self._taken.add(name)
                return name

    def op(self, op_type: str, inputs: Sequence[str], outputs: int = 1, **attrs) -> str | list[str]:
        """Emit one standard-domain node; returns its output name (or names when outputs > 1)."""
        names = [self.fresh(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=names[0], **attrs))
        if op_type == "Cast":
            elem_type = attrs["to"]
        else:
            elem_type = _RESULT_TYPES.get(op_type) or self.types.get(inputs[0])
        if elem_type:
            self.types.update(dict.fromkeys(names, elem_type))
        return names[0] if outputs == 1 else names

    def const(self, value: np.ndarray, hint: str = "const") -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def ints(self, values: Sequence[int]) -> str:
        return self.const(np.asarray(values, dtype=np.int64), "ints")

    def scalar(self, value: float, like: str) -> str:
        """A scalar constant with the float type of tensor `like`."""
        return self.const(np.asarray(value, dtype=self.np_dtype(like)), "scalar")

    def claim(self, name: str) -> str:
        """Reserve a fixed public name (graph input or output) that must not clash."""
        if name in self._taken:
            raise AuditError(f"the model already has a tensor named {name!r}; rename it first")
        self._taken.add(name)
        return name

    def add_input(self, name: str, elem_type: int, dims: Sequence[int | str | None]) -> str:
        self.claim(name)
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, list(dims)))
        self.types[name] = elem_type
        return name

    # --- static facts -------------------------------------------------------------------------
    def elem_type(self, name: str) -> int:
        return self.types.get(name, TensorProto.FLOAT)

    def np_dtype(self, name: str) -> np.dtype:
        return np.dtype(helper.tensor_dtype_to_np_dtype(self.elem_type(name)))

    def input_or_attribute(
        self, node: onnx.NodeProto, position: int, name: str
    ) -> np.ndarray | None:
        """An operand that is an attribute in old opsets and a constant input in new ones
        (Slice starts, Pad pads, Split sizes, Reduce axes...); None when absent."""
        if len(node.input) > position and node.input[position]:
            return self.constant(node.input[position], node, name)
        value = attributes(node).get(name)
        return None if value is None else np.asarray(value)

    def rank(self, name: str, node: onnx.NodeProto) -> int:
        if name not in self.dims:
            raise AuditError(f"unknown rank of tensor {name!r} for {describe_node(node)}")
        return len(self.dims[name])

    def static_dims(self, name: str, node: onnx.NodeProto, start: int = 0) -> list[int]:
        """dims[start:] of `name`, which must be known numbers (e.g. the spatial dims of a Conv)."""
        dims = self.dims.get(name)
        if dims is None or any(d is None for d in dims[start:]):
            raise AuditError(
                f"{describe_node(node)} needs static dims of {name!r} (got {dims}); "
                "export the model with fixed image size (only the batch may be dynamic)"
            )
        return list(dims[start:])

    def value(self, name: str) -> np.ndarray | None:
        """The value of a constant input (initializer or Constant node); None otherwise."""
        return self.constants.get(name) if name else None

    def constant(self, name: str, node: onnx.NodeProto, what: str) -> np.ndarray:
        value = self.value(name)
        if value is None:
            raise AuditError(f"{describe_node(node)}: {what} must be a constant, not computed")
        return value

    # --- common building blocks ---------------------------------------------------------------
    def shape_of(self, name: str) -> str:
        if name not in self._shape_ops:
            self._shape_ops[name] = self.op("Shape", [name])
        return self._shape_ops[name]

    def reshape_like(self, grad: str, like: str) -> str:
        return self.op("Reshape", [grad, self.shape_of(like)])

    def mask(self, op_type: str, a: str, b: str, like: str) -> str:
        """Cast(op(a, b)) to the float type of `like`: a 0/1 multiplier (cheaper than Where).

        Before opset 12 (11 for float Equal) the comparison is spelled with Less/Greater/Not."""
        if op_type in _SPELLED and self.opset < _SPELLED[op_type][0]:
            _, negated = _SPELLED[op_type]
            parts = [self.op(op, [a, b]) for op in negated]
            either = parts[0] if len(parts) == 1 else self.op("Or", parts)
            return self.op("Cast", [self.op("Not", [either])], to=self.elem_type(like))
        return self.op("Cast", [self.op(op_type, [a, b])], to=self.elem_type(like))

    # --- ops whose attributes became inputs: emitted in the form of the model's opset ---------
    def unsqueeze(self, x: str, axes: Sequence[int]) -> str:
        if self.opset >= 13:
            return self.op("Unsqueeze", [x, self.ints(axes)])
        return self.op("Unsqueeze", [x], axes=list(axes))

    def squeeze(self, x: str, axes: Sequence[int]) -> str:
        if self.opset >= 13:
            return self.op("Squeeze", [x, self.ints(axes)])
        return self.op("Squeeze", [x], axes=list(axes))

    def slice(self, x: str, starts: Sequence[int], ends: Sequence[int], axes: Sequence[int]) -> str:
        if self.opset >= 10:
            return self.op("Slice", [x, self.ints(starts), self.ints(ends), self.ints(axes)])
        return self.op("Slice", [x], starts=list(starts), ends=list(ends), axes=list(axes))

    def pad(self, x: str, pads: Sequence[int], value: float = 0.0) -> str:
        """Constant padding; negative pads crop."""
        if self.opset >= 11:
            inputs = [x, self.ints(pads)] + ([self.scalar(value, x)] if value else [])
            return self.op("Pad", inputs)
        return self.op("Pad", [x], pads=[int(p) for p in pads], value=float(value))

    def split(self, x: str, sizes: Sequence[int], axis: int) -> list[str]:
        if self.opset >= 13:
            parts = self.op("Split", [x, self.ints(sizes)], outputs=len(sizes), axis=axis)
        else:
            parts = self.op("Split", [x], outputs=len(sizes), axis=axis, split=list(sizes))
        return parts if isinstance(parts, list) else [parts]

    def upsample_nearest(self, x: str, factors: Sequence[int]) -> str:
        """Repeat each cell factors[i] times along axis i (Resize from opset 10, else Upsample)."""
        scales = self.const(np.asarray(factors, dtype=np.float32), "scales")
        if self.opset >= 11:
            return self.op(
                "Resize",
                [x, "", scales],
                mode="nearest",
                coordinate_transformation_mode="asymmetric",
                nearest_mode="floor",
            )
        return self.op("Resize" if self.opset == 10 else "Upsample", [x, scales], mode="nearest")

    def reduce(self, op_type: str, x: str, axes: Iterable[int], keepdims: bool) -> str:
        """A Reduce* node in this opset's form (axes became an input: ReduceSum 13, others 18)."""
        axes = list(axes)
        if self.opset >= (13 if op_type == "ReduceSum" else 18):
            return self.op(op_type, [x, self.ints(axes)], keepdims=int(keepdims))
        return self.op(op_type, [x], axes=axes, keepdims=int(keepdims))

    def unbroadcast(self, grad: str, grad_dims: Sequence[int | None], target: str) -> str:
        """Sum `grad` (dims `grad_dims`) over the axes along which `target` was broadcast."""
        target_dims = self.dims.get(target)
        if target_dims is None:
            raise AuditError(f"unknown shape of {target!r}: cannot undo its broadcasting")
        lead = len(grad_dims) - len(target_dims)
        axes = list(range(lead)) + [
            lead + i
            for i, (t, g) in enumerate(zip(target_dims, grad_dims[lead:], strict=True))
            if t == 1 and g != 1
        ]
        if not axes:
            return grad
        return self.reshape_like(self.reduce("ReduceSum", grad, axes, keepdims=True), target)
