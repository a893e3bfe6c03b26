"""The verdict's shipped priors and levels are a refit of the committed evidence.

verdict.py carries the clean priors and each test's level as constants, copied from `python
bench/verdict_zoo.py report bench/verdict-zoo/evidence.jsonl --heavy-tails` (which fits them on
the calibration half's clean runs and picks the levels there). This refits both from the same
evidence file and the zoo's recorded split, so a copy left stale after a refit fails here.
"""

from __future__ import annotations

import importlib.util
import sys
from argparse import Namespace
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from onnxaudit.analyses.patterns import verdict

REPO = Path(__file__).resolve().parents[1]
EVIDENCE = REPO / "bench" / "verdict-zoo" / "evidence.jsonl"


def verdict_zoo() -> ModuleType:
    """bench/verdict_zoo.py as a module (registered, so its dataclasses resolve)."""
    spec = importlib.util.spec_from_file_location("verdict_zoo", REPO / "bench" / "verdict_zoo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["verdict_zoo"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def refit():
    bench = verdict_zoo()
    rows = bench.load_rows([EVIDENCE])
    split = bench.zoo_split()
    priors = bench.fit_priors(rows, split, heavy_tails=True)
    levels = bench.choose_levels([r for r in rows if split[r["model"]] == "calibration"], priors)
    return priors, levels


SHIPPED = {
    "self_excess": verdict.SELF_EXCESS_PRIOR,
    "size_excess": verdict.SIZE_EXCESS_PRIOR,
    "small_mask": verdict.SMALL_MASK_PRIOR,
    "warp": verdict.WARP_PRIOR,
    "noise_blend": verdict.NOISE_BLEND_PRIOR,
}
LEVELS = {
    "self_excess": verdict.SELF_EXCESS_ALPHA,
    "size_excess": verdict.SIZE_ALPHA,
    "small_mask": verdict.MASK_ALPHA,
    "warp": verdict.WARP_ALPHA,
    "noise_blend": verdict.NOISE_ALPHA,
    "confident_victim": verdict.VICTIM_ALPHA,
}


@pytest.mark.parametrize("test", list(SHIPPED))
def test_shipped_prior_is_the_refit_of_the_committed_evidence(refit, test):
    fitted, shipped = refit[0].of(test), SHIPPED[test]
    assert (shipped.n_models, shipped.n_classes) == (fitted.n_models, fitted.n_classes)
    assert shipped.transform == fitted.transform
    assert shipped.location == pytest.approx(fitted.location, rel=1e-3, abs=1e-4)
    assert shipped.scale == pytest.approx(fitted.scale, rel=1e-3)
    assert shipped.df == pytest.approx(fitted.df, rel=1e-3)


def test_shipped_victim_null_is_the_clean_few_class_calibration_sample(refit):
    fitted, shipped = refit[0].of("confident_victim"), verdict.VICTIM_NULL
    assert (shipped.n, shipped.n_models, shipped.floor) == (fitted.n, fitted.n_models, fitted.floor)
    assert shipped.positive == pytest.approx(fitted.positive, abs=1e-4)


def test_shipped_levels_are_the_ones_chosen_on_the_calibration_half(refit):
    assert LEVELS == refit[1]


def test_recorded_probe_rates_are_what_the_probes_measure_now(tmp_path):
    """The evidence's noise-blend and warp rates are refreshed by `verdict_zoo.py probes` after a
    change of the probes (e.g. `universal.DRAWS`); re-probing the committed 4-class models must
    give the recorded rates, or the priors above were fitted on another probe's rates."""
    bench = verdict_zoo()
    models = ["lenet4", "lenet4-patch-white3-br"]
    out = tmp_path / "probed.jsonl"
    args = Namespace(evidence=[EVIDENCE], models=models, per_class=20, threads=1, out=out)
    bench.probes(args)
    recorded = {(r["model"], r["seed"]): r for r in bench.load_rows([EVIDENCE])}
    probed = bench.load_rows([out])
    assert len(probed) == 20
    for row in probed:
        for test in ("noise_blend", "warp"):
            expected = recorded[row["model"], row["seed"]]["tests"][test]
            np.testing.assert_allclose(row["tests"][test], expected, rtol=1e-9, atol=1e-12)
