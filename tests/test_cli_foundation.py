"""`onnxaudit layers` and `onnxaudit extract` as a user runs them, errors included."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from graphs import small_cnn
from typer.testing import CliRunner

from onnxaudit import __version__
from onnxaudit.cli import app

runner = CliRunner()


@pytest.fixture
def files(tmp_path):
    model = tmp_path / "cnn.onnx"
    onnx.save(small_cnn(seed=0), model)
    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, x=rng.integers(0, 256, (9, 8, 8), dtype=np.uint8), y=np.arange(9) % 3)
    return model, data


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_layers_lists_maps(files):
    result = runner.invoke(app, ["layers", str(files[0])])
    assert result.exit_code == 0, result.output
    for text in ("conv1", "pool1", "relu2", "sample feature", "flat", "3 classes"):
        assert text in result.output


def test_extract_writes_npz(files, tmp_path):
    model, data = files
    out = tmp_path / "feats.npz"
    args = ["extract", str(model), "--data", str(data), "--layers", "pool1,relu2", "--grid", "2"]
    result = runner.invoke(app, [*args, "--out", str(out), "--per-class", "2"])
    assert result.exit_code == 0, result.output
    with np.load(out) as saved:
        assert saved["pool1"].shape == (6, 4, 4) and saved["relu2"].shape == (6, 4, 6)
        assert saved["logits"].shape == (6, 3) and sorted(saved["labels"].tolist()) == [
            0,
            0,
            1,
            1,
            2,
            2,
        ]


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "no such file"),
        ("not_onnx", "not an ONNX model"),
        ("bad_layer", "unknown layer 'nope'"),
        ("bad_labels", "labels go up to 5"),
        ("bad_shape", "channels but the model takes 1"),
    ],
)
def test_errors_are_one_line_exit_2(files, tmp_path, case, message):
    model, data = files
    layers = "pool1"
    if case == "missing":
        model = tmp_path / "absent.onnx"
    elif case == "not_onnx":
        model = tmp_path / "junk.onnx"
        model.write_bytes(b"\x00garbage" * 10)
    elif case == "bad_layer":
        layers = "nope"
    elif case == "bad_labels":
        np.savez(data, x=np.zeros((4, 8, 8), np.uint8), y=np.array([0, 1, 2, 5]))
    elif case == "bad_shape":
        np.savez(data, x=np.zeros((4, 8, 8, 2), np.uint8), y=np.array([0, 1, 2, 0]))
    out = tmp_path / "out" / "feats.npz"
    args = ["extract", str(model), "--data", str(data), "--layers", layers, "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "onnxaudit", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())
