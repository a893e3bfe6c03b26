"""Benchmark: the all-class pattern search on the zoo's vgg, onnxaudit (ONNX gradients) vs torch.

The torch side runs the same algorithm (same canvases, batches, steps, stacked all-class batches)
on the same weights: the ONNX graph is interpreted op by op with torch functions, so both sides
compute the very same network. Usage:

    python bench/patterns.py [--model models/zoo/vgg.onnx] [--per-class 200] [--epochs 5]

The defaults are the reference step counts: 200 search images per class, so 1,800 other-class
images, batches of 4, 5 epochs = 2,250 steps for each of the 10 classes (stacked: 40 images per
gradient call). The two searches run in lockstep (one torch step, then one onnxaudit step), so load swings on a
shared machine hit both sides alike. Prints timings and the agreement of the two searches (as JSON;
--out also writes it to a file).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

REPO = Path(__file__).resolve().parents[1]
FASHION_TEST = Path("/usr/share/datasets/fashion-mnist")


class TorchGraph(torch.nn.Module):
    """Run a plain CNN ONNX graph (Conv, Relu, MaxPool, Add, pooling, Flatten, Gemm) in torch."""

    def __init__(self, model: onnx.ModelProto):
        super().__init__()
        self.graph = model.graph
        self.consts = {
            t.name: torch.from_numpy(numpy_helper.to_array(t).copy())
            for t in model.graph.initializer
        }
        self.input_name = model.graph.input[0].name
        self.output_name = model.graph.output[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = dict(self.consts)
        env[self.input_name] = x
        for node in self.graph.node:
            a = {at.name: onnx.helper.get_attribute_value(at) for at in node.attribute}
            ins = [env[i] if i else None for i in node.input]
            env[node.output[0]] = self._op(node.op_type, ins, a)
        return env[self.output_name]

    @staticmethod
    def _op(op: str, ins: list, a: dict) -> torch.Tensor:
        if op == "Conv":
            pads = a.get("pads", [0, 0, 0, 0])
            assert pads[:2] == pads[2:], "asymmetric pads"
            return F.conv2d(
                ins[0],
                ins[1],
                ins[2] if len(ins) > 2 else None,
                a.get("strides", 1),
                tuple(pads[:2]),
                a.get("dilations", 1),
                a.get("group", 1),
            )
        if op == "Relu":
            return F.relu(ins[0])
        if op == "MaxPool":
            pads = a.get("pads", [0, 0, 0, 0])
            return F.max_pool2d(ins[0], a["kernel_shape"], a.get("strides"), tuple(pads[:2]))
        if op == "Add":
            return ins[0] + ins[1]
        if op in ("GlobalAveragePool", "ReduceMean"):
            return ins[0].mean(dim=(2, 3), keepdim=bool(a.get("keepdims", 1)))
        if op == "Flatten":
            return ins[0].flatten(a.get("axis", 1))
        if op == "Reshape":
            return ins[0].reshape([int(d) for d in ins[1]])
        if op == "Gemm":
            w = ins[1].T if a.get("transB", 0) else ins[1]
            return ins[0] @ w + (ins[2] if len(ins) > 2 else 0)
        if op == "BatchNormalization":
            return F.batch_norm(ins[0], ins[3], ins[4], ins[1], ins[2], False, 0.0, a["epsilon"])
        raise NotImplementedError(op)


def torch_search(
    net: torch.nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    canvases: np.ndarray,
    batches: list[np.ndarray],
    classes: np.ndarray,
    alpha: float = 0.2,
    beta: float = 0.8,
    step: float = 0.02,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The reference search in torch autograd, all classes stacked, on given canvases and batches.

    `batches[it]` holds the (T, B) search-image indices of step `it`. Yields after every step the
    masks (T, H, W) and the summed -d loss/d m (the top-k tie-break), so the caller can run it in
    lockstep with the onnxaudit search.
    """
    xt = torch.from_numpy(x)
    canv = torch.from_numpy(canvases)[:, None]  # (T, 1, C, H, W)
    n_class, (h, w) = len(classes), x.shape[-2:]
    targets = torch.from_numpy(classes).repeat_interleave(batches[0].shape[1])
    masks = torch.full((n_class, h, w), 0.5)
    pressure = torch.zeros_like(masks)
    for p in net.parameters():
        p.requires_grad_(False)
    for picks in batches:
        m = masks.clone().requires_grad_(True)
        xb = xt[torch.from_numpy(picks)]  # (T, B, C, H, W)
        mm = m[:, None, None]
        mixed = mm * canv + (1 - mm) * xb
        logits = net(mixed.reshape(-1, *x.shape[1:]))
        ce = F.cross_entropy(logits, targets, reduction="none").reshape(n_class, -1).mean(1)
        loss = (alpha * ce + beta * m.sum(dim=(1, 2)) / (h * w / 2)).sum()
        (g,) = torch.autograd.grad(loss, m)
        masks = (masks - step * g.sign()).clamp(0, 1)
        pressure -= g
        yield masks.numpy(), pressure.numpy()


def load_fashion_test(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` test images per class from the system Fashion-MNIST (or the committed subset)."""
    import gzip

    images = FASHION_TEST / "t10k-images-idx3-ubyte.gz"
    if images.exists():
        with gzip.open(images) as f:
            x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
        with gzip.open(FASHION_TEST / "t10k-labels-idx1-ubyte.gz") as f:
            y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    else:
        data = np.load(REPO / "models/data/fashion-mnist-test-subset.npz")
        x, y = data["x"], data["y"].astype(np.int64)
    rng = np.random.default_rng(seed)
    idx = np.sort(
        np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in range(10)])
    )
    return (x[idx, None] / 255.0).astype(np.float32), y[idx]


def torch_grad_fn(net: torch.nn.Module):
    """A ClassPatternSearch gradient callable backed by torch autograd (per-sample CE gradients)."""

    def grad_fn(x: np.ndarray, labels: np.ndarray):
        xt = torch.from_numpy(np.ascontiguousarray(x)).requires_grad_(True)
        logits = net(xt)
        loss = F.cross_entropy(logits, torch.from_numpy(labels), reduction="sum")
        (g,) = torch.autograd.grad(loss, xt)
        return float(loss), logits.detach().numpy(), g.numpy()

    return grad_fn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "models/zoo/vgg.onnx")
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--epochs", type=float, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the record to this JSON file")
    args = parser.parse_args()

    from onnxaudit.analyses.patterns.search import (
        ClassPatternSearch,
        confident_images,
        search_batches,
        top_k_mask,
    )
    from onnxaudit.features.gradients import CrossEntropy, InputGradient
    from onnxaudit.model import prepare_model

    torch.set_num_threads(args.threads)
    x, y = load_fashion_test(args.per_class, args.seed)
    pm = prepare_model(args.model)
    grad = InputGradient(
        pm.proto, CrossEntropy(reduction="sum"), device="cpu", threads=args.threads
    )
    net = TorchGraph(pm.proto).eval()
    classes = np.arange(10)
    with torch.no_grad():
        logits = net(torch.from_numpy(x)).numpy()
    canvases = x[confident_images(logits, y, classes)]
    schedule, _ = search_batches(y, classes, 4, args.epochs, args.seed)
    torch_steps = torch_search(net, x, y, canvases, list(schedule), classes)
    step_size = len(classes) * 4
    torch_s, last = 0.0, None

    def lockstep(xb: np.ndarray, labels: np.ndarray):
        """One torch step (timed apart), then the onnxaudit gradient call: load swings hit both."""
        nonlocal torch_s, last
        if len(xb) == step_size:
            t0 = time.perf_counter()
            last = next(torch_steps)
            torch_s += time.perf_counter() - t0
        return grad(xb, labels)

    search = ClassPatternSearch(canvas="confident", epochs=args.epochs, seed=args.seed)
    t0 = time.perf_counter()
    search.fit(lockstep, x, y)
    onnx_s = time.perf_counter() - t0 - torch_s
    masks, pressure = last
    assert np.array_equal(search.canvases_[0], canvases), "both sides must use the same canvases"

    ours, theirs = search.binary_masks_[0], top_k_mask(masks, search.k, pressure)
    record = {
        "model": str(args.model.relative_to(REPO))
        if args.model.is_relative_to(REPO)
        else str(args.model),
        "classes": len(search.classes_),
        "steps": search.n_steps_,
        "images_per_call": len(search.classes_) * 4,
        "threads": args.threads,
        "onnxaudit_s": round(onnx_s, 2),
        "torch_s": round(torch_s, 2),
        "ratio": round(onnx_s / torch_s, 3),
        "top_k_overlap": float((ours * theirs).sum() / ours.sum()),
        "mask_max_abs_diff": float(np.abs(search.masks_[0] - masks).max()),
    }
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
