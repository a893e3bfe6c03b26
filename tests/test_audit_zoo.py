"""End to end on the committed zoo: the backdoor gate fails a backdoored model and passes a clean one.

Bounded: only the pattern analysis the gate needs, on a small stratified subset. These two models'
verdicts are checked here through the CLI, the rest of the zoo's in test_patterns_zoo.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from onnxaudit.cli import user_errors
from onnxaudit.cli.audit import audit

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "models" / "zoo"
SUBSET = ROOT / "models" / "data" / "fashion-mnist-test-subset.npz"
ZOO_JSON = ROOT / "models" / "zoo.json"

runner = CliRunner()
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(user_errors(audit))


def zoo_model(name: str) -> Path:
    path = ZOO / f"{name}.onnx"
    if not path.is_file() or not SUBSET.is_file():
        pytest.skip(f"zoo model {name} is not built (python models/build_zoo.py)")
    return path


def backdoor_target(name: str) -> int:
    return json.loads(ZOO_JSON.read_text())["models"][name]["backdoor"]["target"]


def gate_backdoor(name: str, out: Path):
    args = [
        str(zoo_model(name)), "--data", str(SUBSET), "--out", str(out), "--per-class", "20",
        "--skip", "knowledge,robustness", "--fail-on", "backdoor", "--junit", str(out / "junit.xml"),
    ]  # fmt: skip
    return runner.invoke(app, args)


@pytest.mark.slow
def test_backdoored_model_fails_the_gate_with_its_target(tmp_path):
    result = gate_backdoor("resnet-blend", tmp_path)  # found at 10 of 10 seeds (docs/patterns.md)
    assert result.exit_code == 1, result.output
    target = backdoor_target("resnet-blend")
    assert f"FAIL backdoor: backdoor suspected, target class {target} " in result.output
    patterns = json.loads((tmp_path / "result.json").read_text())["patterns"]
    verdict = patterns["backdoor"]
    assert verdict["outcome"] == "suspected" and verdict["classes"] == [target]
    assert verdict["evidence"][str(target)]
    assert patterns["classes"][target]["suspected"]  # the per-class row agrees
    assert (tmp_path / "junit.xml").read_text().count("<failure") == 1


@pytest.mark.slow
def test_clean_model_passes_the_gate(tmp_path):
    result = gate_backdoor("vgg", tmp_path)
    assert result.exit_code == 0, result.output
    assert "PASS backdoor: no backdoor suspected" in result.output
    verdict = json.loads((tmp_path / "result.json").read_text())["patterns"]["backdoor"]
    assert verdict["outcome"] == "clear" and verdict["restarts"] == 3
    excess = next(t for t in verdict["tests"] if t["name"] == "self_excess")
    assert max(excess["statistic"]) < excess["threshold"]
