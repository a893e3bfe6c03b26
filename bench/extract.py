"""Plain inference vs regional extraction (in-graph pooling) vs full-resolution extraction.

Run by hand:  python bench/extract.py [--model models/zoo/vgg.onnx] [--batch 128] [--threads 2]
All three are timed in one run, in interleaved turns of `--block` back-to-back calls (a real
extraction runs its batches back to back; one call of each in turn measured the cache
eviction by the other two as well, ~1-2 ms of 18 on the zoo vgg), so the ratios survive a noisy
machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from onnxaudit.features.extract import FeatureExtractor
from onnxaudit.features.runtime import create_session
from onnxaudit.model import prepare_model

ACTIVATIONS = {"Relu", "LeakyRelu", "Clip", "PRelu", "Sigmoid", "HardSwish", "Elu"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="models/zoo/vgg.onnx")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--grid", type=int, default=14)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--block", type=int, default=5, help="Consecutive calls per turn (as a real extraction)."
    )
    args = parser.parse_args()

    prepared = prepare_model(args.model)
    # "Every conv layer": the activation that follows each convolution (Conv+Relu stay fused).
    layers = [layer.name for layer in prepared.info.layers if layer.op_type in ACTIVATIONS]
    x = np.random.default_rng(0).random((args.batch, *prepared.info.input_shape), np.float32)
    plain = create_session(prepared.proto, device="cpu", threads=args.threads)
    feed = {prepared.info.input_name: x}
    common = dict(device="cpu", threads=args.threads, batch_size=args.batch)
    runs = {
        "plain inference": lambda _: plain.run(None, feed),
        f"regional, {len(layers)} layers, grid {args.grid}": FeatureExtractor(
            prepared, layers, grid=args.grid, **common
        ).transform,
        f"full resolution, {len(layers)} layers": FeatureExtractor(
            prepared, layers, **common
        ).transform,
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(3):  # warm-up
        for fn in runs.values():
            fn(x)
    for _ in range(args.repeats):  # turns interleave the three; calls within a turn run back to
        for name, fn in runs.items():  # back, warm, as an extraction's batches do
            for _ in range(args.block):
                start = time.perf_counter()
                fn(x)
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["plain inference"])
    print(
        f"model {args.model}, batch {args.batch}, {args.threads} threads, "
        f"{args.repeats} turns of {args.block} calls"
    )
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:40s} {median * 1e3:8.2f} ms  {median / base:5.2f}x plain")


if __name__ == "__main__":
    main()
