"""Rules for matrix products: Gemm, (batched) MatMul and two-operand Einsum, each adjoint
being another product with one operand transposed."""

from __future__ import annotations

import onnx

from onnxaudit.errors import AuditError
from onnxaudit.features.gradients.context import GradContext, attributes, describe_node
from onnxaudit.features.gradients.rules.registry import Grads, rule


@rule("Gemm", inputs=(0, 1, 2))
def gemm(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Y = alpha * A' B' + beta * C with A' = A or A^T (transA), B' likewise."""
    attrs = attributes(node)
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    trans_a, trans_b = attrs.get("transA", 0), attrs.get("transB", 0)
    g, a, b = grads[0], node.input[0], node.input[1]
    out = [None] * len(node.input)

    def product(p: str, q: str, **attrs) -> str:
        """Gemm without C (optional from opset 11; a zero scalar before)."""
        zero = [] if ctx.opset >= 11 else [ctx.scalar(0.0, g)]
        return ctx.op("Gemm", [p, q, *zero], alpha=alpha, **attrs)

    if a in ctx.varied:  # dA' = alpha * g B'^T
        out[0] = (
            product(b, g, transA=trans_b, transB=1)
            if trans_a
            else product(g, b, transB=1 - trans_b)
        )
    if b in ctx.varied:  # dB' = alpha * A'^T g
        out[1] = (
            product(g, a, transA=1, transB=trans_a)
            if trans_b
            else product(a, g, transA=1 - trans_a)
        )
    if len(node.input) > 2 and node.input[2] in ctx.varied:
        scaled = ctx.op("Mul", [g, ctx.scalar(beta, node.output[0])])
        out[2] = ctx.unbroadcast(scaled, ctx.dims[node.output[0]], node.input[2])
    return out


@rule("MatMul", inputs=(0, 1))
def matmul(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    g, (a, b) = grads[0], node.input
    ra, rb = ctx.rank(a, node), ctx.rank(b, node)
    if min(ra, rb) < 2:
        raise AuditError(f"{describe_node(node)}: MatMul with a 1-D operand is not supported")
    y_dims = ctx.dims[node.output[0]]

    def swap(name: str, rank: int) -> str:
        perm = [*range(rank - 2), rank - 1, rank - 2]
        return ctx.op("Transpose", [name], perm=perm)

    out: Grads = [None, None]
    if a in ctx.varied:
        ga = ctx.op("MatMul", [g, swap(b, rb)])
        out[0] = ctx.unbroadcast(ga, (*y_dims[:-2], *ctx.dims[a][-2:]), a)
    if b in ctx.varied:
        gb = ctx.op("MatMul", [swap(a, ra), g])
        out[1] = ctx.unbroadcast(gb, (*y_dims[:-2], *ctx.dims[b][-2:]), b)
    return out


def _einsum_terms(equation: str) -> tuple[list[str], str]:
    """Operand terms and the output term (implicit output: letters used once, sorted)."""
    equation = equation.replace(" ", "")
    inputs, _, output = equation.partition("->")
    terms = inputs.split(",")
    if "->" not in equation:
        letters = "".join(terms).replace(".", "")
        output = ("..." if "..." in inputs else "") + "".join(
            sorted(c for c in set(letters) if letters.count(c) == 1)
        )
    return terms, output


@rule("Einsum", inputs=None)
def einsum(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Each operand's gradient is the Einsum of the output gradient with the other operands,
    back to that operand's term. Needs every index of the operand to appear in another term
    (no traces or diagonals) and no broadcasting along '...'."""
    terms, output = _einsum_terms(attributes(node)["equation"])
    out: Grads = [None] * len(node.input)
    for i, (term, x) in enumerate(zip(terms, node.input, strict=True)):
        if x not in ctx.varied:
            continue
        others = [t for j, t in enumerate(terms) if j != i]
        letters = term.replace("...", "")
        elsewhere = output + "".join(others)
        if len(set(letters)) < len(letters) or any(c not in elsewhere for c in letters):
            raise AuditError(
                f"{describe_node(node)}: Einsum term {term!r} sums or repeats an index of its "
                "own; not differentiable here"
            )
        if "..." in term and len({ctx.rank(o, node) for o in node.input}) > 1:
            raise AuditError(f"{describe_node(node)}: Einsum broadcasting over '...'")
        equation = ",".join([output, *others]) + "->" + term
        operands = [grads[0], *(n for j, n in enumerate(node.input) if j != i)]
        out[i] = ctx.op("Einsum", operands, equation=equation)
    return out
