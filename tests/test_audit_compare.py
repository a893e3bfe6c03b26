"""`compare` and `demo`: side-by-side documents, layer deltas, and the demo's zoo lookup."""

from __future__ import annotations

import json

import onnx
import pytest
from conftest import cli, make_inputs
from graphs import small_cnn
from typer.testing import CliRunner

from onnxaudit.cli import demo as demo_module
from onnxaudit.cli.compare import compare
from onnxaudit.pipeline import layer_deltas
from onnxaudit.results.schema import build_result

runner = CliRunner()


def result_with(name, points, ratios):
    layers = [
        {"name": f"{name}/l{i}", "knowledge_points": p, "reliable_knowledge_points": p * (r or 0),
         "reliable_ratio": r}
        for i, (p, r) in enumerate(zip(points, ratios, strict=True))
    ]  # fmt: skip
    return build_result({"name": name, "sha256": "0" * 64}, {}, knowledge={"layers": layers})


def test_layer_deltas_align_by_position_and_subtract():
    ref = result_with("vgg", [4.0, 6.0, 8.0], [0.5, 0.6, None])
    other = result_with("resnet", [5.0, 3.0], [0.25, 0.9])
    deltas = layer_deltas(ref, other)
    assert deltas["model"] == "resnet"
    assert [row["position"] for row in deltas["layers"]] == [1, 2]
    assert [row["knowledge_points"] for row in deltas["layers"]] == [1.0, -3.0]
    assert deltas["layers"][0]["reliable_ratio"] == pytest.approx(-0.25)
    assert deltas["layers"][1]["reference_layer"] == "vgg/l1"


@pytest.fixture
def two_models(tmp_path):
    a, data = make_inputs(tmp_path, n=9, model_seed=0, name="cnn0")
    b, _ = make_inputs(tmp_path, n=9, model_seed=1, name="cnn1")
    return (a, b), data


def test_compare_cli_writes_one_report_for_all_models(two_models, tmp_path, fake_analyses):
    (a, b), data = two_models
    out = tmp_path / "cmp"
    result = runner.invoke(cli(compare), [str(a), str(b), "--data", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "result.json").read_text())
    assert [m["model"]["name"] for m in doc["models"]] == ["cnn0", "cnn1"]
    assert all(m["data"]["n"] == 9 for m in doc["models"])
    html = (out / "report.html").read_text()
    assert "Comparison of 2 models" in html and "cnn1" in html
    assert "Differences from the reference (cnn0)" in html


def test_compare_cli_needs_two_models(two_models, tmp_path):
    (a, _), data = two_models
    result = runner.invoke(cli(compare), [str(a), "--data", str(data), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "at least two models" in result.output


def test_demo_without_zoo_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_module, "repo_root", lambda: tmp_path)
    result = runner.invoke(cli(demo_module.demo), ["--out", str(tmp_path / "demo")])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and "model zoo" in result.output
    assert not (tmp_path / "demo").exists()


def test_demo_finds_the_zoo_relative_to_the_checkout(tmp_path):
    (tmp_path / "models" / "zoo").mkdir(parents=True)
    (tmp_path / "models" / "data").mkdir()
    (tmp_path / demo_module.SUBSET).write_bytes(b"")
    for name in ("vgg", "resnet-blend"):
        (tmp_path / "models" / "zoo" / f"{name}.onnx").write_bytes(b"")
    found = demo_module.zoo_paths(tmp_path)
    assert [p.as_posix() for p in found] == ["models/zoo/vgg.onnx", "models/zoo/resnet-blend.onnx"]
    assert (demo_module.repo_root() / "onnxaudit" / "cli" / "demo.py").is_file()


def test_models_of_different_input_sizes_compare_on_their_own_sizes(tmp_path):
    """Each model sees the data at its own input size; nothing is refused after work started."""
    import onnxaudit

    small, data = make_inputs(tmp_path, n=12, model_seed=0, name="small")
    large = tmp_path / "large.onnx"
    onnx.save(small_cnn(seed=1, size=12), large)
    result = onnxaudit.compare([small, large], data, per_class=4, patterns_epochs=1, pgd_steps=1)
    doc = result.to_dict()
    assert [m["model"]["input"]["shape"] for m in doc["models"]] == [[1, 8, 8], [1, 12, 12]]
    assert all(m["robustness"]["n"] == 12 for m in doc["models"])
    assert doc["comparison"]["layer_deltas"][0]["model"] == "large"
