"""Benchmark: the knowledge-point analysis (paper 1) on the zoo's vgg, stage by stage.

    python bench/knowledge.py [--model models/zoo/vgg.onnx] [--per-class 50] [--checkpoints]

Times every stage of `analyse_knowledge` (wall and process CPU seconds, so a shared machine's
load shows up as wall >> CPU / cores) and prints a markdown table for bench/RESULTS.md.
With --checkpoints the emergence over models/zoo/checkpoints/*.onnx is timed too.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from onnxaudit.analyses.knowledge import analyse_knowledge
from onnxaudit.data import load_dataset
from onnxaudit.model import prepare_model

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(REPO / "models/zoo/vgg.onnx"))
    parser.add_argument("--data", default=str(REPO / "models/data/fashion-mnist-test-subset.npz"))
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--checkpoints", action="store_true")
    parser.add_argument("--attack", action="store_true")
    args = parser.parse_args()

    pm = prepare_model(args.model)
    dataset = load_dataset(args.data).subset(args.per_class, 0)
    checkpoints = (
        [prepare_model(p) for p in sorted((REPO / "models/zoo/checkpoints").glob("*.onnx"))]
        if args.checkpoints
        else []
    )
    stages: dict[str, list[float]] = {}
    clock = {"stage": None, "wall": time.perf_counter(), "cpu": time.process_time()}

    def progress(stage: str, done: int, total: int) -> None:
        if done == 0 and stage != clock["stage"]:
            clock.update(stage=stage, wall=time.perf_counter(), cpu=time.process_time())
        if done == total and stage == clock["stage"]:
            entry = stages.setdefault(stage, [0.0, 0.0])
            entry[0] += time.perf_counter() - clock["wall"]
            entry[1] += time.process_time() - clock["cpu"]
            clock["stage"] = None

    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    result = analyse_knowledge(
        pm,
        dataset,
        checkpoints=checkpoints,
        attack=args.attack,
        device="cpu",
        progress=progress,
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu

    print(f"model {args.model}, {len(result.labels)} images, load average at start {load:.1f}")
    print("\n| stage | wall s | CPU s |\n|---|---|---|")
    for stage, (w, c) in stages.items():
        print(f"| {stage.removeprefix('knowledge: ')} | {w:.1f} | {c:.1f} |")
    print(f"| **total** | **{wall:.1f}** | **{cpu:.1f}** |")
    print("\n| layer | grid | points / image | reliable / image | reliable ratio |")
    print("|---|---|---|---|---|")
    for layer in result.layers:
        print(
            f"| `{layer.name}` | {layer.grid[0]}x{layer.grid[1]} | {layer.knowledge_points:.1f} "
            f"| {layer.reliable_knowledge_points:.1f} | {layer.reliable_ratio:.3f} |"
        )
    s = result.sample
    print(
        f"\nstrength-uncertainty r: ours {s.strength_uncertainty_corr:.3f}, "
        f"PCA {s.pca_strength_uncertainty_corr:.3f}"
    )
    if result.emergence is not None:
        e = result.emergence
        print("\n| iteration | " + " | ".join(f"`{n}`" for n in e.layers) + " |")
        print("|---" * (len(e.layers) + 1) + "|")
        for it, row in zip(e.iterations, e.knowledge_points, strict=True):
            print(f"| {it} | " + " | ".join(f"{v:.1f}" for v in row) + " |")
    if result.adversarial is not None:
        print("\n| layer | delta orientation | delta strength |\n|---|---|---|")
        for layer in result.adversarial.layers:
            print(
                f"| `{layer.name}` | {layer.delta_orientation:.3f} | {layer.delta_strength:.3f} |"
            )


if __name__ == "__main__":
    main()
