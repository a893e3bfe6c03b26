"""The HTML report: self-contained, escaped, and visibly rendered by a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onnxaudit.errors import AuditError
from onnxaudit.report.render import flatten, render_report, verdicts
from onnxaudit.results.schema import build_comparison, build_result, dumps, write_atomic

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
EVIL = "<script>alert(\"pwned\")</script> 'quoted'"


def hand_result(name: str = "vgg", suspected: bool = False) -> dict:
    classes = [EVIL, "Bag", 'Sneaker "low"']
    knowledge = {
        "layers": [
            {
                "name": f"/stage{i}/{EVIL}",
                "knowledge_points": 2.0 + i,
                "reliable_knowledge_points": 1.0 + i,
                "reliable_ratio": (1.0 + i) / (2.0 + i),
            }
            for i in range(3)
        ],
        "sample_embedding": {
            "strength_uncertainty_corr": -0.62,
            "pca_strength_uncertainty_corr": -0.2,
        },
        "emergence": {
            "checkpoints": ["a.onnx", "b.onnx"],
            "iterations": [0, 100],
            "layers": [f"/stage{i}/{EVIL}" for i in range(3)],
            "knowledge_points": [[0.0, 1.0, 2.0], [2.0, 3.0, 4.0]],
            "reliable_knowledge_points": [[0.0, 0.5, 1.0], [1.0, 2.0, 3.0]],
            "reliable_ratio": [[None, 0.5, 0.5], [0.5, 0.66, 0.75]],
        },
    }
    patterns = {
        "classes": [
            {
                "class": i,
                "name": n,
                "predictive_power": 0.3 + 0.2 * i,
                "mask_l1": 10.0 - i,
                "anomaly_index": 1.0 + 3 * i,
            }
            for i, n in enumerate(classes)
        ],
        "backdoor": {"suspected": suspected, "classes": [2] if suspected else []},
    }
    model = {
        "path": f"{name}.onnx",
        "name": name,
        "sha256": "0f" * 32,
        "classes": classes,
        "input": {"name": "x", "shape": [1, 28, 28]},
        "layers": [
            {
                "name": EVIL,
                "op_type": "Relu",
                "channels": 8,
                "height": 14,
                "width": 14,
                "stride": 2.0,
            }
        ],
    }
    data = {"source": "subset.npz", "n": 30, "per_class": 10, "seed": 3, "classes": classes}
    robustness = {"clean_accuracy": 0.9, "robust_accuracy": 0.25, "eps": 0.1, "steps": 5}
    return build_result(
        model,
        data,
        {"tau": 0.4, "seed": 3},
        knowledge,
        patterns,
        robustness,
        gates=[{"name": f"gate {EVIL}", "passed": False, "message": EVIL}],
    )


def external_references(html: str) -> list[str]:
    refs = re.findall(r"""(?:src|href)\s*=\s*["']?\s*(https?:|//)""", html, flags=re.I)
    refs += re.findall(r"@import|url\(\s*['\"]?https?:", html, flags=re.I)
    refs += re.findall(r"<script|<link\b|<iframe", html, flags=re.I)
    return refs


@pytest.fixture(scope="module")
def audit_html() -> str:
    return render_report(json.loads(dumps(hand_result(suspected=True))))


@pytest.fixture(scope="module")
def compare_html() -> str:
    doc = build_comparison([hand_result("a"), hand_result(EVIL, suspected=True)], {"note": EVIL})
    return render_report(json.loads(dumps(doc)))


@pytest.mark.parametrize("which", ["audit_html", "compare_html"])
def test_names_with_markup_are_escaped(which, request):
    html = request.getfixturevalue(which)
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in html
    assert "&#39;quoted&#39;" in html
    assert "Sneaker &#34;low&#34;" in html


@pytest.mark.parametrize("which", ["audit_html", "compare_html"])
def test_report_is_self_contained(which, request):
    html = request.getfixturevalue(which)
    assert external_references(html) == []
    images = re.findall(r'<img src="([^"]*)"', html)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)


def test_summary_comes_first_and_names_the_backdoor_target(audit_html):
    order = [
        audit_html.index(f'id="{s}"')
        for s in ("summary", "knowledge", "patterns", "robustness", "appendix")
    ]
    assert order == sorted(order)
    summary = audit_html[audit_html.index('id="summary"') : audit_html.index('id="knowledge"')]
    assert "suspected: target class 2 (Sneaker &#34;low&#34;)" in summary


def test_verdict_statuses():
    assert [c["status"] for c in verdicts(hand_result(suspected=True))] == [
        "fail",
        "pass",  # robust 0.25 >= the 0.05 reference
        "pass",  # deepest reliable ratio 0.75 >= 0.25
        "fail",
    ]
    weak = hand_result()
    weak["robustness"]["robust_accuracy"] = 0.0
    weak["knowledge"]["layers"][-1]["reliable_ratio"] = 0.1
    weak["gates"] = []
    cards = verdicts(weak)
    assert [c["status"] for c in cards] == ["pass", "warn", "warn"]
    assert "reference: robust accuracy >= 0.05" in cards[1]["basis"]
    weak["gates"] = [{"name": "min-robust-accuracy", "passed": True, "message": "ok"}]
    assert verdicts(weak)[1]["status"] == "pass"  # a gate, when asked for, decides
    weak["patterns"]["backdoor"] = {"outcome": "inconclusive", "reason": "0 epochs"}
    assert verdicts(weak)[0]["status"] == "inconclusive"
    bare = build_result({"name": "m"}, {})
    assert [c["status"] for c in verdicts(bare)] == ["na", "na", "na"]


def test_knowledge_section_has_the_emergence_chart(audit_html):
    knowledge = audit_html[audit_html.index('id="knowledge"') : audit_html.index('id="patterns"')]
    assert "Emergence of knowledge points during training" in knowledge
    assert knowledge.count("data:image/png;base64,") == 2


def test_appendix_has_every_setting_seed_and_hash(audit_html):
    appendix = audit_html[audit_html.index('id="appendix"') :]
    for text in ("settings.tau", "data.seed", "tool.version", "0f" * 32, "robustness.eps"):
        assert text in appendix


def test_flatten_known_rows():
    rows = flatten({"a": {"b": 1.5, "c": [1, 2]}, "d": [{"x": 1}], "e": None}, skip={"skip"})
    assert rows == [("a.b", "1.5"), ("a.c", "1, 2"), ("d", "[1 items]"), ("e", "none")]


def test_unknown_schema_is_a_user_error():
    with pytest.raises(AuditError, match="schema"):
        render_report({"schema": "other@9"})


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out" / "report.html"
    write_atomic(target, "old")

    def broken(*_):
        raise OSError("disk full")

    monkeypatch.setattr("onnxaudit.results.schema.os.replace", broken)
    with pytest.raises(OSError):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]


def screenshot(html_path: Path, tmp_path: Path) -> np.ndarray:
    png = tmp_path / "shot.png"
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}", "--window-size=1200,2000",
        html_path.resolve().as_uri(),
    ]  # fmt: skip
    subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert png.exists(), "chromium wrote no screenshot"
    return np.asarray(Image.open(png).convert("L"), dtype=np.float32)


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="chromium is not installed (apt-get install chromium)"
)
@pytest.mark.parametrize("which", ["audit_html", "compare_html"])
def test_chromium_renders_a_non_blank_page(which, request, tmp_path):
    html_path = write_atomic(tmp_path / "report.html", request.getfixturevalue(which))
    pixels = screenshot(html_path, tmp_path)
    assert pixels.shape == (2000, 1200)
    ink = pixels < 200
    assert ink.mean() > 0.02, "the page is (almost) blank"
    # text and figures are spread down the page, not one stray element
    rows_with_ink = ink.any(axis=1).mean()
    assert rows_with_ink > 0.3
    blank = tmp_path / "blank"
    blank.mkdir()
    empty = screenshot(write_atomic(blank / "empty.html", "<html><body></body></html>"), blank)
    assert (empty < 200).mean() < 0.001, "oracle: an empty page must count as blank"


def test_sections_fold_and_open_what_failed(audit_html):
    assert 'class="toc"' in audit_html and 'href="#patterns"' in audit_html
    assert '<details id="patterns" open>' in audit_html  # the backdoor check failed
    assert '<details id="appendix">' in audit_html  # closed
    assert "break-all" not in audit_html
    summary = audit_html[audit_html.index('id="summary"') : audit_html.index('class="toc"')]
    assert "judged against" in summary and "reference: robust accuracy" in summary


SHOWCASE = Path(__file__).resolve().parent.parent / "docs" / "showcase" / "compare" / "result.json"


@pytest.mark.skipif(
    not Path(CHROMIUM).exists() or not SHOWCASE.exists(),
    reason="chromium or the committed showcase is absent",
)
def test_compare_report_of_the_zoo_is_short(tmp_path):
    """The six-model comparison was > 32,000 px tall with its appendix repeated per model; it
    must stay under a third of that, with one shared appendix."""
    html = render_report(json.loads(SHOWCASE.read_text()))
    assert html.count('<details id="appendix">') == 1 and "Shared settings" in html
    assert external_references(html) == []
    path = write_atomic(tmp_path / "report.html", html)
    png = tmp_path / "tall.png"
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}",
        "--window-size=1400,12000", path.resolve().as_uri(),
    ]  # fmt: skip
    subprocess.run(command, capture_output=True, timeout=120, check=False)
    pixels = np.asarray(Image.open(png).convert("L"))
    height = int(np.flatnonzero((pixels < 200).any(axis=1)).max())
    assert 1000 < height < 32000 / 3
