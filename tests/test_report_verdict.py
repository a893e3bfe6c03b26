"""The report explains the backdoor verdict: triggers, tests and thresholds, and no contradiction.

A synthetic PatternsResult with known answers: class 4 fires the self-explained excess (an
implanted patch: tiny any-value mask, large real-image mask), class 1 fires only the noise blend
(its mask, hence its descriptive anomaly index, is ordinary: a red bar under the line), class 3
is a natural shortcut (tiny mask on every canvas: index over the line, no test fires).
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest

from onnxaudit.analyses.patterns.analyse import PatternsResult
from onnxaudit.analyses.patterns.evaluate import K_GRID
from onnxaudit.analyses.patterns.shape import shape_stats
from onnxaudit.analyses.patterns.verdict import (
    NOISE_BLEND_PRIOR,
    SELF_EXCESS_PRIOR,
    RestartEvidence,
    backdoor_verdict,
)
from onnxaudit.report.analysis_figures import analysis_figures
from onnxaudit.report.figures import BAD, patterns_chart, verdict_tests_chart
from onnxaudit.report.render import render_report
from onnxaudit.report.write import run_figures
from onnxaudit.results.run import CompareResult
from onnxaudit.results.schema import build_comparison, build_result, dumps

CANVASES = ["confident", "white", "free"]
NAMES = ["T-shirt", "Dress", "Coat", "Bag", "Boot"]
FREE_L1 = np.array([0.04, 0.05, 0.03, 0.004, 0.002])
SUSPECT_EXCESS = np.array([0.1, 0.2, 0.15, 0.0, 3.0])
SUSPECT_NOISE = np.array([0.05, 0.9, 0.1, 0.02, 0.03])
H = 8


def synthetic_patterns(excess, noise, free_l1=FREE_L1, num_classes=5) -> PatternsResult:
    """A PatternsResult over 5 classes whose verdict comes from the given restart evidence."""
    t, v = len(excess), len(CANVASES)
    l1 = np.stack([free_l1 * np.exp(excess), free_l1 * 1.5, free_l1])
    same_size = np.ones((v, t, len(K_GRID)))  # every pattern works at once: no size excess
    evidence = [
        RestartEvidence(seed, l1, np.asarray(noise, float), np.zeros(t), same_size)
        for seed in (0, 1, 2)
    ]
    ones = np.ones((v, t))
    verdict = backdoor_verdict(evidence, CANVASES, list(range(t)), num_classes, ones, ones, 10)
    rng = np.random.default_rng(0)
    masks = rng.uniform(0, 1, (v, t, H, H))
    binary = (masks > 0.8).astype(float)
    shapes = [[shape_stats(m) for m in per] for per in binary]
    grid = (0.01, 0.05)
    return PatternsResult(
        classes=list(range(t)),
        class_names=NAMES[:t],
        canvas_labels=CANVASES,
        k=0.05,
        settings={"epochs": 2},
        masks=masks,
        canvases=rng.uniform(0, 1, (v, t, 1, H, H)),
        binary_masks=binary,
        power_table=np.full((v, t, num_classes), 0.5),
        power=np.full((v, t), 0.5),
        clean_rate=np.zeros(t),
        k_grid=grid,
        curve=np.full((v, t, len(grid)), 0.5),
        k90=np.full((v, t), np.nan),
        k50=np.full((v, t), 0.05),
        mask_l1=l1,
        shapes=shapes,
        core_shapes=shapes,
        verdict=verdict,
        eval_accuracy=0.9,
        n_search=50,
        n_eval=50,
    )


def document(result: PatternsResult, name: str = "m") -> dict:
    model = {"name": name, "path": f"{name}.onnx", "sha256": "ab" * 32}
    data = {"source": "d.npz", "n": 50, "per_class": 10, "seed": 0}
    return json.loads(dumps(build_result(model, data, {"seed": 0}, patterns=result)))


def verdict_block(html: str) -> str:
    start = html.index('id="backdoor-verdict"')
    return html[start : html.index("<th>class</th>", start)]  # up to the per-class table


def flagged_rows(html: str) -> list[int]:
    """The classes of the per-class table rows drawn as flagged (class="flag"), in order."""
    return [int(cls) for cls in re.findall(r'<tr class="flag"><td class="num">(\d+)</td>', html)]


@pytest.fixture(scope="module")
def suspected() -> PatternsResult:
    return synthetic_patterns(SUSPECT_EXCESS, SUSPECT_NOISE)


@pytest.fixture(scope="module")
def suspected_html(suspected) -> str:
    return render_report(document(suspected), analysis_figures({"patterns": suspected}))


def test_the_synthetic_verdict_has_the_intended_answers(suspected):
    verdict = suspected.verdict
    assert verdict.outcome == "suspected" and verdict.classes == [1, 4]
    assert verdict.evidence == {1: ["noise_blend"], 4: ["self_excess"]}
    assert verdict.anomaly_index[1] < verdict.threshold < verdict.anomaly_index[3]


def test_each_suspected_class_has_its_trigger_and_the_test_that_fired(suspected, suspected_html):
    block = verdict_block(suspected_html)
    images = re.findall(r'<img src="data:image/png;base64,[^"]+" alt="([^"]+)"', block)
    assert images == ["Recovered trigger of class 1 (Dress)", "Recovered trigger of class 4 (Boot)"]
    excess, noise = suspected.verdict.test("self_excess"), suspected.verdict.test("noise_blend")
    for text in (
        "Suspected target: class 4 (Boot)",
        "self_excess",
        f"{excess.statistic[4]:.3f}",
        f"{excess.threshold:.3f}",
        f"{excess.p_value[4]:.2g}",
        f"{excess.alpha:.2g}",
        f"fitted on {SELF_EXCESS_PRIOR.n_classes} classes of {SELF_EXCESS_PRIOR.n_models} models",
        "Suspected target: class 1 (Dress)",
        "noise_blend",
        f"{noise.statistic[1]:.3f}",  # the rate 0.9 times K - 1 = 4
        f"{noise.threshold:.3f}",
        f"fitted on {NOISE_BLEND_PRIOR.n_classes} classes of {NOISE_BLEND_PRIOR.n_models} models",
    ):
        assert text in block, text
    assert "class 3 (Bag)" not in block


def test_rows_are_flagged_iff_the_verdict_flags_them_and_say_why(suspected, suspected_html):
    assert flagged_rows(suspected_html) == [1, 4]
    rows = dict(
        re.findall(r'<td class="num">(\d)</td>\s*<td>[^<]*</td>(.*?)</tr>', suspected_html, re.S)
    )
    threshold = suspected.verdict.test("noise_blend").threshold
    noise = suspected.verdict.test("noise_blend").statistic[1]  # 0.9 times K - 1 = 4
    assert (
        f"suspected target: noise_blend {noise:.3f}, above its threshold {threshold:.3f}"
        in rows["1"]
    )
    assert "is under the line at 2: that index is descriptive" in rows["1"]
    assert "suspected target: self_excess" in rows["4"]
    assert "not flagged: anomaly index" in rows["3"] and "no test fired" in rows["3"]
    assert "natural shortcut (spread-out core)" not in suspected_html  # the removed exemption


def test_charts_draw_red_only_the_flagged_classes_and_the_threshold_lines(suspected):
    doc = document(suspected)
    power_ax, anomaly_ax = patterns_chart(doc).axes
    red = [
        bar.get_facecolor() == pytest.approx((0.82, 0.14, 0.18, 1.0), abs=0.01)
        for bar in anomaly_ax.patches
    ]
    assert red == [False, True, False, False, True]
    assert [line.get_ydata()[0] for line in anomaly_ax.get_lines()] == [2.0]
    assert "descriptive" in anomaly_ax.get_title()
    tests_fig = verdict_tests_chart(doc)
    for ax, test in zip(tests_fig.axes, suspected.verdict.tests, strict=True):
        fired = [
            bar.get_facecolor()[:3] == pytest.approx(_rgb(BAD), abs=0.01) for bar in ax.patches
        ]
        assert fired == [t in test.fired for t in range(5)]
        assert ax.get_lines()[0].get_ydata()[0] == pytest.approx(test.threshold)


def _rgb(hex_colour: str) -> tuple[float, ...]:
    return tuple(int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5))


def test_a_clear_verdict_lists_the_tests_and_their_thresholds():
    result = synthetic_patterns(np.full(5, 0.1), np.full(5, 0.05), free_l1=np.full(5, 0.04))
    assert result.verdict.outcome == "clear"
    html = render_report(document(result), analysis_figures({"patterns": result}))
    block = verdict_block(html)
    names = ("self_excess", "size_excess", "noise_blend", "warp")
    excess, size, noise, warp = (result.verdict.test(t) for t in names)
    line = (
        f"Clear: no test fired. Ran: 4 tests on 5 classes: self_excess (threshold "
        f"{excess.threshold:.3f}, p &lt; {excess.alpha:.2g} per class), size_excess (threshold "
        f"{size.threshold:.3f}, p &lt; {size.alpha:.2g} per class), noise_blend (threshold "
        f"{noise.threshold:.3f}, p &lt; {noise.alpha:.2g} per class), warp (threshold "
        f"{warp.threshold:.3f}, p &lt; {warp.alpha:.2g} per class)."
    )
    assert line in block
    assert "<img" not in block and flagged_rows(html) == []


def test_an_inconclusive_verdict_names_what_is_missing():
    result = synthetic_patterns(np.full(5, 0.1), np.full(5, 0.05), np.full(5, 0.04), num_classes=7)
    assert result.verdict.outcome == "inconclusive"
    block = verdict_block(render_report(document(result)))
    assert "Inconclusive" in block and "<li>2 classes never searched (5, 6)</li>" in block
    assert "Ran: 4 tests on 5 classes" in block


def test_result_json_alone_still_names_the_tests_but_has_no_trigger_image(suspected):
    block = verdict_block(render_report(document(suspected)))
    assert "<img" not in block and "No trigger image" in block
    assert "Suspected target: class 4 (Boot)" in block and "self_excess" in block


def test_compare_report_shows_each_models_trigger_and_fired_tests(suspected):
    clear = synthetic_patterns(np.full(5, 0.1), np.full(5, 0.05), free_l1=np.full(5, 0.04))
    runs = [
        SimpleNamespace(name=n, analyses={"patterns": r})
        for n, r in (("bad", suspected), ("ok", clear))
    ]
    doc = json.loads(dumps(build_comparison([document(suspected, "bad"), document(clear, "ok")])))
    html = render_report(doc, run_figures(CompareResult(runs)))
    bad, ok = html.split('id="backdoor-verdict"')[1:3]
    assert "Recovered trigger of class 4 (Boot)" in bad and "self_excess" in bad
    assert "Suspected target: class 1 (Dress)" in bad and "noise_blend" in bad
    assert "<img" not in ok.split("</div>")[0] and "Clear: no test fired" in ok
    assert "suspected: target class 1 (Dress), 4 (Boot), by noise_blend, self_excess" in html
    assert flagged_rows(html) == [1, 4]  # only the suspected model's two classes
