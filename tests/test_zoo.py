"""The committed model zoo does what models/zoo.json says, checked with onnxruntime alone."""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx.reference import ReferenceEvaluator

REPO = Path(__file__).resolve().parent.parent
ZOO = json.loads((REPO / "models" / "zoo.json").read_text())
MODELS = ZOO["models"]
FILES = [m["file"] for m in MODELS.values()] + [c["file"] for c in ZOO["checkpoints"]]
BACKDOORS = [name for name, m in MODELS.items() if "backdoor" in m]
TEST_SET = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


@cache
def subset() -> tuple[np.ndarray, np.ndarray]:
    data = np.load(REPO / ZOO["subset"]["file"])
    return (data["x"].astype(np.float32) / 255.0)[:, None], data["y"]


@cache
def session(file: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(REPO / file), opts, providers=["CPUExecutionProvider"])


def logits(file: str, x: np.ndarray) -> np.ndarray:
    return session(file).run(["logits"], {"input": x})[0]


def assert_agrees(measured: float, recorded: float, n: int) -> None:
    """The subset estimate lies within 3 standard errors (+1 point) of the full-test number."""
    tol = 3 * math.sqrt(recorded * (1 - recorded) / n) + 0.01
    assert abs(measured - recorded) <= tol, (measured, recorded, tol)


def load_trigger(name: str) -> tuple[np.ndarray, np.ndarray]:
    return load_trigger_file(MODELS[name]["backdoor"]["trigger"])


def test_subset_is_stratified_uint8() -> None:
    data = np.load(REPO / ZOO["subset"]["file"])
    assert data["x"].dtype == np.uint8 and data["x"].shape == (1000, 28, 28)
    assert data["y"].dtype == np.int64
    np.testing.assert_array_equal(np.bincount(data["y"], minlength=10), np.full(10, 100))
    assert list(data["classes"]) == ZOO["classes"]
    assert len(np.unique(data["index"])) == 1000


@pytest.mark.skipif(not TEST_SET.exists(), reason="Fashion-MNIST not installed")
def test_subset_matches_the_test_split() -> None:
    import gzip

    with gzip.open(TEST_SET) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    data = np.load(REPO / ZOO["subset"]["file"])
    np.testing.assert_array_equal(images[data["index"]], data["x"])


@pytest.mark.parametrize("file", FILES)
def test_file_is_valid_small_and_annotated(file: str) -> None:
    path = REPO / file
    assert path.stat().st_size < 5 * 2**20
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert {o.domain: o.version for o in proto.opset_import}.get("", 0) == 17
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert meta["classes"] == ZOO["classes"]
    assert meta["preprocessing"] == {"layout": "NCHW", "range": [0, 1], "mean": None, "std": None}
    (inp,) = proto.graph.input
    dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "input" and isinstance(dims[0], str) and dims[1:] == [1, 28, 28]
    assert [o.name for o in proto.graph.output] == ["logits"]


@pytest.mark.parametrize("name", list(MODELS))
def test_dynamic_batch(name: str) -> None:
    """Batch 1 and batch 7 runs give the same logits row for row."""
    x = subset()[0][:7]
    batch = logits(MODELS[name]["file"], x)
    assert batch.shape == (7, 10)
    single = np.concatenate([logits(MODELS[name]["file"], x[i : i + 1]) for i in range(7)])
    np.testing.assert_allclose(single, batch, rtol=1e-4, atol=1e-4)


def test_onnxruntime_matches_reference_evaluator() -> None:
    """onnxruntime, which the numbers come from, agrees with ONNX's own reference semantics."""
    x = subset()[0][::250]
    for name in ("vgg", "resnet"):
        file = MODELS[name]["file"]
        (ref,) = ReferenceEvaluator(str(REPO / file)).run(["logits"], {"input": x})
        np.testing.assert_allclose(logits(file, x), ref, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    "file,recorded",
    [(m["file"], m["clean_accuracy"]) for m in MODELS.values()]
    + [(c["file"], c["clean_accuracy"]) for c in ZOO["checkpoints"]],
)
def test_clean_accuracy_matches_record(file: str, recorded: float) -> None:
    x, y = subset()
    measured = float((logits(file, x).argmax(1) == y).mean())
    assert_agrees(measured, recorded, len(y))


@pytest.mark.parametrize("name", BACKDOORS)
def test_attack_success_rate_matches_record(name: str) -> None:
    backdoor = MODELS[name]["backdoor"]
    mask, pattern = load_trigger(name)
    x, y = subset()
    x = x[y != backdoor["target"]]
    stamped = ((1 - mask) * x + mask * pattern).astype(np.float32)
    pred = logits(MODELS[name]["file"], stamped).argmax(1)
    assert_agrees(
        float((pred == backdoor["target"]).mean()), backdoor["attack_success_rate"], len(x)
    )
    # Without the trigger the same images are seldom the target: the trigger does the work.
    assert (logits(MODELS[name]["file"], x).argmax(1) == backdoor["target"]).mean() < 0.1


def test_triggers_have_the_documented_shape() -> None:
    for name in BACKDOORS:
        mask, pattern = load_trigger(name)
        assert mask.shape == pattern.shape == (28, 28)
        assert 0 <= mask.min() and mask.max() <= 1 and 0 <= pattern.min() and pattern.max() <= 1
    mask, _ = load_trigger("vgg-badnets")
    rows, cols = np.nonzero(mask)
    assert mask.sum() <= 16 and rows.min() >= 20 and cols.min() >= 20  # small, bottom-right
    mask, _ = load_trigger("resnet-blend")
    assert np.ptp(mask) == 0 and 0.1 <= mask[0, 0] <= 0.2  # whole image, uniform alpha


def test_recorded_numbers_meet_the_zoo_targets() -> None:
    m = MODELS
    assert m["vgg"]["clean_accuracy"] >= 0.91 and m["resnet"]["clean_accuracy"] >= 0.90
    robust = "robust_accuracy_pgd10_eps0.1"
    assert m["vgg"][robust] < 0.10 and m["vgg-adv"][robust] > m["vgg"][robust] + 0.3
    assert m["vgg-badnets"]["clean_accuracy"] >= m["vgg"]["clean_accuracy"] - 0.02
    assert m["vgg-badnets"]["backdoor"]["attack_success_rate"] >= 0.95
    assert m["resnet-blend"]["backdoor"]["attack_success_rate"] >= 0.90
    targets = {m[n]["backdoor"]["target"] for n in BACKDOORS}
    assert len(targets) == len(BACKDOORS) and 8 not in targets
    iters = [c["iteration"] for c in ZOO["checkpoints"]]
    assert len(iters) >= 8 and iters == sorted(iters) and iters[1] <= 25


COMMITTED_EXTENDED = {name: m for name, m in ZOO.get("extended", {}).items() if m.get("committed")}


@pytest.mark.parametrize("name", sorted(COMMITTED_EXTENDED))
def test_committed_extended_models_match_their_record(name):
    """The 4-class pair: accuracy on the subset's classes and, for the backdoor, its ASR."""
    m = COMMITTED_EXTENDED[name]
    x, y = subset()
    index = [ZOO["classes"].index(c) for c in m["classes"]]
    keep = np.isin(y, index)
    relabel = np.full(10, -1)
    relabel[index] = np.arange(len(index))
    xs, ys = x[keep], relabel[y[keep]]
    out = logits(m["file"], xs)
    assert out.shape == (len(ys), len(index))
    assert_agrees(float((out.argmax(1) == ys).mean()), m["clean_accuracy"], len(ys))
    if "backdoor" in m:
        mask, pattern = load_trigger_file(m["backdoor"]["trigger"])
        target = m["backdoor"]["target"]
        stamped = ((1 - mask) * xs[ys != target] + mask * pattern).astype(np.float32)
        asr = float((logits(m["file"], stamped).argmax(1) == target).mean())
        assert asr >= 0.9 and abs(asr - m["backdoor"]["attack_success_rate"]) < 0.1


def load_trigger_file(path: str) -> tuple[np.ndarray, np.ndarray]:
    data = np.load(REPO / path)
    return data["mask"], data["pattern"]


def test_split_covers_every_model_and_halves_each_wave() -> None:
    # every model is in exactly one half, and each wave, split on its own, deals each of its
    # (family, clean / backdoored) groups alternately: the halves differ by at most one model
    split = ZOO["split"]
    names = set(MODELS) | set(ZOO["extended"])
    assert set(split["models"]) == names
    assert set(split["models"].values()) == {"calibration", "held-out"}
    waves = split["waves"]
    assert sorted(n for wave in waves.values() for n in wave) == sorted(names)
    for wave in waves.values():
        halves = [split["models"][n] for n in wave]
        assert abs(halves.count("calibration") - halves.count("held-out")) <= 1
