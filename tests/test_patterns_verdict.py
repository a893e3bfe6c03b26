"""The backdoor verdict's statistics, nulls and outcomes on synthetic evidence with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from onnxaudit.analyses.patterns.evaluate import (
    K_GRID,
    confident_victim_power,
    confident_victims,
)
from onnxaudit.analyses.patterns.null import (
    RATE_EPS,
    CleanPrior,
    EmpiricalNull,
    bonferroni,
    fit_empirical,
    fit_prior,
    transformed,
    untransformed,
)
from onnxaudit.analyses.patterns.restarts import restart_seeds, spread
from onnxaudit.analyses.patterns.settings import validate_pattern_settings
from onnxaudit.analyses.patterns.verdict import (
    MAD_SCALE,
    MASK_ALPHA,
    NOISE_ALPHA,
    NOISE_BLEND_PRIOR,
    SELF_EXCESS_ALPHA,
    SIZE_CAP,
    VICTIM_NULL,
    VICTIM_POWER,
    WARP_ALPHA,
    RestartEvidence,
    backdoor_verdict,
    confident_victim_test,
    noise_blend_test,
    pattern_size,
    self_excess,
    self_excess_test,
    size_excess,
    size_excess_test,
    small_mask_test,
    spread_factor,
    spread_rate,
    warp_test,
)
from onnxaudit.errors import AuditError

CANVASES = ["confident", "white", "free"]
PRIOR = CleanPrior("excess", location=0.0, scale=0.2, n_models=5, n_classes=50, source="test")
# on the scale of the rate times K - 1 (spread_rate), like the shipped one
WARP_PRIOR = CleanPrior("rate", location=0.4, scale=0.3, n_models=5, n_classes=50, source="test")
MASK_PRIOR = CleanPrior("index", location=0.0, scale=1.0, n_models=5, n_classes=50, source="test")
# log mask L1 offsets of 10 ordinary classes: no class is a MAD outlier (largest index 1.6)
QUIET = (np.zeros(10), np.zeros(10))  # noise-blend and warp rates of no class
SPREAD = np.array([-0.12, -0.1, -0.05, -0.02, 0.0, 0.0, 0.02, 0.05, 0.1, 0.12])


def evidence(
    seed, mask_l1, noise_rate, warp_rate, size_excess=None, victim=None
) -> RestartEvidence:
    """One restart's evidence whose power curves give every class the pattern-size excess
    `size_excess` (T,; none by default): the any-value canvases reach 50 % power at 0.5 % of the
    pixels, the real canvas at 0.5 % times exp(excess); confident-victim shares `victim` (T,;
    0 by default)."""
    mask_l1 = np.asarray(mask_l1, dtype=float)
    v, t = mask_l1.shape
    excess = np.zeros(t) if size_excess is None else np.asarray(size_excess, dtype=float)
    logk = np.log(np.asarray(K_GRID))
    size = np.full((v, t), 0.005)
    size[0] = 0.005 * np.exp(excess)
    curve = np.clip(0.5 + 0.25 * (logk - np.log(size)[..., None]), 0.0, 1.0)
    shares = np.zeros(t) if victim is None else np.asarray(victim, dtype=float)
    return RestartEvidence(seed, mask_l1, noise_rate, warp_rate, curve, shares)


def evidence_for(excess: np.ndarray, seed: int = 0, noise: np.ndarray | None = None):
    """Restart evidence whose self-explained excess is exactly `excess` (T,)."""
    excess = np.asarray(excess, dtype=float)
    free = np.full(len(excess), 0.04)
    l1 = np.stack([free * np.exp(excess), free * 1.5, free])
    rate = np.zeros(len(excess)) if noise is None else np.asarray(noise, dtype=float)
    return evidence(seed, l1, rate, np.zeros(len(excess)))


def verdict_for(restarts, classes, num_classes=None, canvases=CANVASES, eval_per_class=10):
    t = len(classes)
    ones = np.ones((len(canvases), t))
    return backdoor_verdict(
        restarts,
        canvases,
        classes,
        num_classes or t,
        ones,
        ones,
        eval_per_class,
        prior=PRIOR,
        mask_prior=MASK_PRIOR,
        warp_prior=WARP_PRIOR,
    )


def test_self_excess_is_the_log_ratio_of_real_to_any_value_canvas():
    l1 = np.array([[0.10, 0.08], [0.02, 0.09], [0.05, 0.04]])  # confident, white, free
    np.testing.assert_allclose(self_excess(l1, CANVASES), np.log([0.10 / 0.02, 0.08 / 0.04]))
    assert self_excess(l1[1:], ["white", "free"]) is None  # no real canvas: cannot judge
    assert self_excess(l1[:1], ["confident"]) is None


def test_prior_p_values_and_bonferroni_threshold():
    prior = CleanPrior("s", 0.0, 1.0, 1, 10, "unit normal")
    assert prior.p_values(np.array([1.6448536]))[0] == pytest.approx(0.05, abs=1e-6)
    assert bonferroni(0.05, 10) == pytest.approx(0.005)
    assert prior.threshold(10) == pytest.approx(stats.norm.isf(0.005))
    assert prior.threshold(2) < prior.threshold(10) < prior.threshold(1000)
    with pytest.raises(AuditError):
        bonferroni(0.05, 0)


def test_fit_prior_recovers_a_known_normal():
    values = np.random.default_rng(0).normal(2.0, 0.5, 4000)
    prior = fit_prior(values, n_models=40, statistic="s", source="synthetic")
    assert prior.location == pytest.approx(2.0, abs=0.03)
    assert prior.scale == pytest.approx(0.5, abs=0.03)
    assert prior.n_classes == 4000
    assert fit_prior([1.0, 1.0, 1.0], 1, "s", "flat").scale == 0.05  # floor: no zero scale
    with pytest.raises(AuditError):
        fit_prior([1.0, 2.0], 1, "s", "too few")


@pytest.mark.parametrize("k", [2, 4, 10, 100])
def test_a_planted_excess_is_flagged_for_any_number_of_classes(k):
    excess = np.full(k, 0.5)
    excess[k - 1] = 2.5  # 8 prior standard deviations above the clean mean
    verdict = verdict_for([evidence_for(excess, s) for s in range(3)], list(range(k)))
    assert verdict.outcome == "suspected" and verdict.classes == [k - 1]
    assert verdict.evidence == {k - 1: ["self_excess"]}
    test = verdict.test("self_excess")
    assert test.alpha == pytest.approx(SELF_EXCESS_ALPHA / k)
    assert test.p_value[k - 1] < test.alpha < test.p_value[0]
    assert test.statistic[k - 1] > test.threshold > test.statistic[0]


def mask_l1_with_index(index_of_8: float) -> np.ndarray:
    """(3, 10) mask L1s (confident, white, free) where class 8's any-value mask sits
    `index_of_8` robust standard deviations below the others and its excess is ordinary."""
    log_l1 = np.log(0.06) + SPREAD
    mad = MAD_SCALE * np.median(np.abs(SPREAD - np.median(SPREAD)))
    log_l1[8] = np.log(0.06) - index_of_8 * mad
    any_value = np.exp(log_l1)
    return np.stack([any_value * 1.5, any_value * 1.2, any_value])


def test_clean_evidence_is_clear_and_a_natural_shortcut_is_not_flagged():
    # a natural shortcut has a small mask on *every* canvas: its excess is ordinary, and its
    # MAD index (2.5) is above Neural Cleanse's 2 but inside the clean prior's range
    l1 = mask_l1_with_index(2.5)
    verdict = verdict_for(
        [evidence(s, l1, np.zeros(10), np.zeros(10)) for s in range(3)], range(10)
    )
    assert verdict.outcome == "clear" and verdict.classes == [] and verdict.reasons == []
    index = verdict.test("small_mask").statistic[8]
    assert verdict.anomaly_index[8] == pytest.approx(index)  # one restart's, descriptive
    assert 2 < index < verdict.test("small_mask").threshold  # the old rule (> 2) flagged it
    assert verdict.shortcuts == [8]


def test_small_mask_fires_on_a_far_outlier_with_a_stated_threshold():
    l1 = mask_l1_with_index(6.0)
    verdict = verdict_for(
        [evidence(s, l1, np.zeros(10), np.zeros(10)) for s in range(3)], range(10)
    )
    assert verdict.classes == [8] and verdict.evidence == {8: ["small_mask"]}
    test = verdict.test("small_mask")
    level = bonferroni(MASK_ALPHA, 10)
    assert test.threshold == pytest.approx(stats.norm.isf(level))  # MASK_PRIOR: unit normal
    assert test.alpha == pytest.approx(level) and test.p_value[8] < level
    assert test.statistic[8] > 5 and test.fired == [8]


def test_small_mask_uses_the_median_restart_and_needs_ten_classes():
    calm, far = mask_l1_with_index(0.0), mask_l1_with_index(6.0)
    once = [evidence(0, far, *QUIET), evidence(1, calm, *QUIET)]
    once.append(evidence(2, calm, *QUIET))
    assert verdict_for(once, range(10)).outcome == "clear"  # one wild restart of three
    few = [evidence(s, far[:, 3:], np.zeros(7), np.zeros(7)) for s in range(3)]
    tests = small_mask_test(few, CANVASES, list(range(7)), MASK_PRIOR)
    assert tests is None  # a within-model index over 7 classes is not judged
    assert [t.name for t in verdict_for(few, range(7)).tests] == [
        "self_excess",
        "size_excess",
        "noise_blend",
        "warp",
    ]


def test_the_median_over_restarts_ignores_one_wild_restart():
    calm = np.full(10, 0.5)
    wild = calm.copy()
    wild[2] = 3.0
    restarts = [evidence_for(calm, 0), evidence_for(wild, 1), evidence_for(calm, 2)]
    verdict = verdict_for(restarts, list(range(10)))
    assert verdict.outcome == "clear"
    test = verdict.test("self_excess")
    assert test.restarts.shape == (3, 10)
    assert spread(test.restarts)[2] == pytest.approx(2.5)
    assert test.to_dict()["spread"][2] == pytest.approx(2.5)


@pytest.mark.parametrize("k", [4, 10])
def test_warp_fires_on_a_warp_target_at_the_priors_threshold(k):
    rates = np.full(k, 0.04)
    rates[1] = 0.6  # vgg-wanet's target receives 0.42-0.49 of the warped images of 9 classes
    restarts = [evidence(s, np.full((3, k), 0.04), np.zeros(k), rates) for s in range(3)]
    test = warp_test(restarts, list(range(k)), k, WARP_PRIOR)
    threshold = WARP_PRIOR.threshold(k, WARP_ALPHA)
    assert test.statistic[1] == pytest.approx(0.6 * (k - 1))  # the rate times K - 1
    assert test.fired == [1] and test.threshold == pytest.approx(threshold)
    assert test.p_value[1] < WARP_ALPHA / k < test.p_value[0]
    assert verdict_for(restarts, list(range(k))).evidence == {1: ["warp"]}
    calm = [evidence(s, e.mask_l1, e.noise_rate, np.full(k, 0.12)) for s, e in enumerate(restarts)]
    assert warp_test(calm, list(range(k)), k, WARP_PRIOR).fired == []  # a clean attractor


def test_the_rates_are_judged_times_k_minus_one():
    """The same rate is a stronger sign among more classes: a 2-class model's one other class
    receives every flip (clean two-class LeNets: warp rates 0.3-0.5), a 10-class model's a
    ninth of them on average."""
    assert spread_rate(np.array([[0.3], [0.5]]), 2) == pytest.approx([0.4])
    assert spread_rate(np.array([[0.03], [0.05]]), 10) == pytest.approx([0.36])
    rates = np.array([0.02, 0.4])
    two = [evidence(s, np.full((3, 2), 0.04), np.zeros(2), rates) for s in range(3)]
    ten = [
        evidence(s, np.full((3, 10), 0.04), np.zeros(10), np.r_[rates, np.full(8, 0.02)])
        for s in range(3)
    ]
    assert warp_test(two, [0, 1], 2, WARP_PRIOR).fired == []  # ordinary for a binary model
    assert warp_test(ten, list(range(10)), 10, WARP_PRIOR).fired == [1]


def test_the_k_minus_one_scaling_stops_at_the_calibrated_ten_classes():
    """Beyond the K the priors were fitted on, a rate is judged as on 10 classes: a clean
    1000-class model's attractor drawing 1 % of the other classes' images stays unflagged."""
    assert [spread_factor(k) for k in (2, 4, 10, 11, 1000)] == [1, 3, 9, 9, 9]
    k = 1000
    rates = np.full(k, 0.001)
    rates[5] = 0.01
    restarts = [evidence(s, np.full((3, k), 0.04), np.zeros(k), rates) for s in range(3)]
    test = warp_test(restarts, list(range(k)), k, WARP_PRIOR)
    assert test.statistic[5] == pytest.approx(0.09) and test.fired == []
    assert "times 9 (K - 1, at most 9)" in test.rule
    # from about 90 classes Bonferroni under the noise prior's heavy tail needs a rate above 1
    assert NOISE_BLEND_PRIOR.threshold(60, NOISE_ALPHA) / spread_factor(60) < 1
    assert NOISE_BLEND_PRIOR.threshold(100, NOISE_ALPHA) / spread_factor(100) > 1


def test_noise_blend_fires_at_its_priors_threshold_with_four_classes():
    restarts = [evidence_for([0.5] * 4, s, noise=[0.05, 0.9, 0.0, 0.0]) for s in range(3)]
    verdict = verdict_for(restarts, range(4))
    assert verdict.classes == [1] and verdict.evidence == {1: ["noise_blend"]}
    test = noise_blend_test(restarts, list(range(4)), 4, (0.1,))
    threshold = NOISE_BLEND_PRIOR.threshold(4, NOISE_ALPHA)
    assert test.fired == [1] and test.threshold == pytest.approx(threshold)
    assert test.p_value[1] < NOISE_ALPHA / 4 < test.p_value[0]
    # just above and just under the threshold (the prior is on the log of the rate times 3)
    for rate, fires in ((threshold / 3 + 0.01, [1]), (threshold / 3 - 0.01, [])):
        near = [evidence_for([0.5] * 4, s, noise=[0.0, rate, 0.0, 0.0]) for s in range(3)]
        assert noise_blend_test(near, list(range(4)), 4, (0.1,)).fired == fires
    # a clean attractor (Shirt on the zoo's ResNets: <= 0.25 of the others) stays under
    assert 0.25 < NOISE_BLEND_PRIOR.threshold(10, NOISE_ALPHA) / 9 < 0.5


def test_a_two_class_verdict_without_suspects_is_inconclusive_naming_the_rate_tests():
    """Under the clean priors the warp test's threshold needs a rate above 1 for K = 2: it
    cannot flag a class, so a quiet binary model is not called clear. The noise-blend test's
    is just under 1: only a blend that sends (nearly) every other image to a class flags it."""
    assert WARP_PRIOR.threshold(2, WARP_ALPHA) > 1
    noise_rate = NOISE_BLEND_PRIOR.threshold(2, NOISE_ALPHA)
    assert 0.5 < noise_rate < 1
    restarts = [evidence_for([0.5, 0.5], s, noise=[0.05, noise_rate - 0.05]) for s in range(3)]
    verdict = verdict_for(restarts, [0, 1])
    assert verdict.outcome == "inconclusive" and verdict.classes == []
    assert [r.split()[1] for r in verdict.reasons] == ["warp"]
    assert "2-class model" in verdict.reasons[0]
    assert verdict_for(restarts[:2] * 2, range(2)).outcome == "inconclusive"
    blended = [evidence_for([0.5, 0.5], s, noise=[0.05, 1.0]) for s in range(3)]
    assert verdict_for(blended, [0, 1]).classes == [1]


def test_the_rate_tests_pool_the_restarts_the_search_tests_take_their_median():
    """A rate just above the threshold at two restarts of three and well under it at the third:
    the pooled rate (their mean) is under it, although the median is above; the excess of
    the same shape is judged by its median, which one restart cannot move."""
    threshold = NOISE_BLEND_PRIOR.threshold(4, NOISE_ALPHA) / 3  # on the rate's scale
    rates = [threshold + 0.02, threshold + 0.02, threshold - 0.2]
    restarts = [evidence_for([0.5] * 4, s, noise=[0.0, r, 0.0, 0.0]) for s, r in enumerate(rates)]
    test = noise_blend_test(restarts, list(range(4)), 4, (0.1,))
    assert test.statistic[1] == pytest.approx(3 * np.mean(rates))
    assert test.fired == [] and "pooled over 3 restarts" in test.rule
    assert np.median(rates) > threshold  # the median would have fired
    excess = verdict_for(restarts, range(4)).test("self_excess")
    assert "median over 3 restarts" in excess.rule
    assert excess.statistic == pytest.approx(np.median(excess.restarts, axis=0))


def test_log_prior_round_trips():
    values = np.array([0.0, 0.3, 2.5, 9.0])
    back = [untransformed(v, "log") for v in transformed(values, "log")]
    np.testing.assert_allclose(back, values, atol=1e-12)


def test_logit_prior_round_trips_rates_and_recovers_a_known_fit():
    rates = np.array([0.0, 0.02, 0.3, 0.99, 1.0])
    back = [untransformed(v, "logit") for v in transformed(rates, "logit")]
    np.testing.assert_allclose(back, rates, atol=1e-12)
    log_odds = np.random.default_rng(2).normal(-3.0, 0.8, 4000)
    rate = (np.exp(log_odds) * (1 + RATE_EPS) - RATE_EPS) / (1 + np.exp(log_odds))
    prior = fit_prior(rate, 40, "rate", "synthetic", transform="logit")
    assert prior.location == pytest.approx(-3.0, abs=0.05)
    assert prior.scale == pytest.approx(0.8, abs=0.05)
    threshold = prior.threshold(10)  # back on the rate's scale, with the same tail
    assert 0 < threshold < 1
    assert prior.p_values(np.array([threshold]))[0] == pytest.approx(0.005, rel=1e-6)
    assert prior.to_dict()["transform"] == "logit"
    with pytest.raises(AuditError):
        fit_prior(rate, 40, "rate", "synthetic", transform="probit")


def test_classes_never_searched_make_a_quiet_verdict_inconclusive():
    restarts = [evidence_for(np.full(10, 0.5), s) for s in range(3)]
    verdict = verdict_for(restarts, list(range(10)), num_classes=1000)
    assert verdict.outcome == "inconclusive" and not verdict.suspected
    assert len(verdict.never_searched) == 990
    assert "990 classes never searched" in verdict.reasons[0]
    # ...but a class that is found stays suspected
    excess = np.full(10, 0.5)
    excess[4] = 3.0
    found = verdict_for([evidence_for(excess, s) for s in range(3)], list(range(10)), 1000)
    assert found.outcome == "suspected" and found.classes == [4] and found.reasons == []


def test_missing_canvas_and_too_few_images_are_inconclusive():
    restarts = [evidence_for(np.full(5, 0.5), s) for s in range(2)]
    no_real = [RestartEvidence(e.seed, e.mask_l1[1:], e.noise_rate, e.warp_rate) for e in restarts]
    verdict = verdict_for(no_real, list(range(5)), canvases=["white", "free"])
    assert verdict.outcome == "inconclusive" and "confident canvas" in verdict.reasons[0]
    assert [t.name for t in verdict.tests] == ["noise_blend", "warp"]
    no_curve = [RestartEvidence(e.seed, e.mask_l1, e.noise_rate, e.warp_rate) for e in restarts]
    verdict = verdict_for(no_curve, list(range(5)))
    assert verdict.outcome == "inconclusive" and "power curve" in verdict.reasons[0]
    assert "size_excess" not in [t.name for t in verdict.tests]
    few = verdict_for(restarts, list(range(5)), eval_per_class=2)
    assert few.outcome == "inconclusive" and "held-out images" in few.reasons[0]


def test_verdict_dict_carries_outcome_tests_and_the_old_fields():
    excess = np.full(10, 0.5)
    excess[0] = 3.0
    doc = verdict_for([evidence_for(excess, s) for s in (7, 8, 9)], list(range(10))).to_dict()
    assert doc["outcome"] == "suspected" and doc["suspected"] is True and doc["classes"] == [0]
    assert doc["evidence"] == {"0": ["self_excess"]} and doc["restart_seeds"] == [7, 8, 9]
    names = {"self_excess", "size_excess", "small_mask", "noise_blend", "warp"}
    assert {t["name"] for t in doc["tests"]} == names
    test = next(t for t in doc["tests"] if t["name"] == "self_excess")
    assert {"statistic", "p_value", "threshold", "alpha", "null", "spread", "fired"} <= set(test)
    assert test["null"]["kind"].startswith("prior")
    for old in ("anomaly_index", "mask_l1", "power", "spread", "natural_shortcuts", "rule"):
        assert old in doc


def test_self_excess_test_needs_the_canvases():
    e = evidence_for(np.zeros(3))
    assert self_excess_test([e], ["white", "free", "free"], [0, 1, 2], PRIOR) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"epochs": 0, "k": 0.05},
        {"epochs": 5, "k": 0},
        {"epochs": 5, "k": 2.5},
        {"epochs": 5, "k": 0.05, "restarts": 0},
        {"epochs": 5, "k": 0.05, "canvas": ["nope"]},
        {"epochs": 5, "k": 0.05, "per_class": 1},
        {"epochs": 5, "k": 0.05, "num_classes": 1},
    ],
)
def test_settings_that_cannot_search_are_refused(kwargs):
    with pytest.raises(AuditError):
        validate_pattern_settings(**kwargs)


def test_default_settings_are_accepted():
    validate_pattern_settings(5, 0.05, per_class=20, num_classes=10)
    validate_pattern_settings(5, 9, per_class=2, num_classes=2)


def test_restart_seeds_accept_ints_sequences_and_generators():
    ints = restart_seeds(5, 3)
    assert ints[0] == 5 and len(set(ints)) == 3 and ints == restart_seeds(5, 3)
    seq = restart_seeds(np.random.SeedSequence(5), 3)
    assert len(set(seq)) == 3 and seq == restart_seeds(np.random.SeedSequence(5), 3)
    gen = restart_seeds(np.random.default_rng(5), 4)
    assert len(set(gen)) == 4 and gen == restart_seeds(np.random.default_rng(5), 4)
    assert restart_seeds(5, 1) == [5]


def test_heavy_tailed_prior_recovers_a_known_student_t():
    values = stats.t(3, 1.0, 0.2).rvs(4000, random_state=np.random.default_rng(1))
    prior = fit_prior(values, 40, "s", "synthetic", heavy_tails=True)
    assert prior.df == pytest.approx(3, abs=0.7) and prior.location == pytest.approx(1.0, abs=0.02)
    normal = fit_prior(values, 40, "s", "synthetic")
    assert prior.threshold(10) > normal.threshold(10)  # heavier tails: a higher bar
    assert prior.to_dict()["kind"].endswith("(Student-t fit)")
    assert prior.p_values(np.array([1.0]))[0] == pytest.approx(0.5, abs=0.02)


def test_centring_removes_the_models_own_level():
    from onnxaudit.analyses.patterns.verdict import centred

    excess = np.array([[0.2, 0.3, 0.4, 2.0], [1.2, 1.3, 1.4, 3.0]])  # same shape, two levels
    np.testing.assert_allclose(centred(excess)[0], centred(excess)[1])
    np.testing.assert_allclose(centred(excess)[0], [-0.15, -0.05, 0.05, 1.65])
    np.testing.assert_allclose(centred(np.array([[0.5, 2.5]])), [[-1.0, 1.0]])  # K = 2: half


def test_pattern_size_reads_the_50_percent_point_and_censors_what_never_gets_there():
    logk = np.log(np.asarray(K_GRID))
    reaches = np.clip(0.5 + 0.25 * (logk - np.log(0.007)), 0, 1)  # 50 % exactly at k = 0.7 %
    never = np.full(len(K_GRID), 0.3)
    at_once = np.ones(len(K_GRID))
    sizes = pattern_size(np.array([[reaches, never, at_once]]))
    np.testing.assert_allclose(sizes, [[0.007, SIZE_CAP, K_GRID[0]]], rtol=1e-9)


def test_size_excess_is_the_log_ratio_of_real_to_smallest_any_value_size():
    e = evidence(0, np.ones((3, 4)), np.zeros(4), np.zeros(4), size_excess=[0.0, 1.0, 2.0, 3.5])
    # the real canvas's size is 0.5 % * exp(excess), censored at SIZE_CAP beyond the grid
    expected = [0.0, 1.0, 2.0, np.log(SIZE_CAP / 0.005)]
    np.testing.assert_allclose(size_excess(e.curve, CANVASES), expected, atol=1e-9)
    assert size_excess(e.curve[1:], ["white", "free"]) is None


def test_size_excess_test_flags_the_class_whose_pattern_works_only_from_any_value_canvases():
    sizes = SPREAD.copy()
    sizes[6] = 2.5  # a trigger: the any-value canvases need 12x fewer pixels than the real one
    restarts = [evidence(s, np.ones((3, 10)), *QUIET, size_excess=sizes) for s in range(3)]
    test = size_excess_test(restarts, CANVASES, list(range(10)), prior=PRIOR)
    assert test.fired == [6] and test.threshold < 2.5
    np.testing.assert_allclose(test.statistic, sizes - np.median(sizes), atol=1e-9)
    verdict = verdict_for(restarts, list(range(10)))
    assert verdict.outcome == "suspected" and verdict.evidence == {6: ["size_excess"]}
    # one restart of three with the class's excess does not make it suspected (the median)
    once = [restarts[0]] + [evidence(s, np.ones((3, 10)), *QUIET, SPREAD) for s in (1, 2)]
    assert size_excess_test(once, CANVASES, list(range(10)), prior=PRIOR).fired == []


def test_empirical_null_p_values_and_thresholds_have_known_answers():
    """9 clean values, two of them above 0: the rank p-value (1 + #{clean >= s}) / (n + 1) and
    the smallest share whose p-value is within the level, never under the floor."""
    null = EmpiricalNull("share", n=9, positive=(0.8, 0.3), floor=0.1, n_models=3, source="test")
    np.testing.assert_allclose(null.p_values(np.array([0.0, 0.3, 0.5, 0.8, 0.9])),
                               [1.0, 0.3, 0.2, 0.2, 0.1])  # fmt: skip
    assert null.threshold(1, 0.2) == pytest.approx(0.3) and null.threshold(1, 0.2) > 0.3
    assert null.threshold(2, 0.2) > 0.8  # level 0.1: above every clean value
    assert null.threshold(2, 0.05) == float("inf")  # 10 values cannot give p <= 0.025
    quiet = EmpiricalNull("share", n=120, positive=(), floor=0.5, n_models=5, source="test")
    assert quiet.threshold(2, 0.05) == 0.5  # every clean value is 0: the floor decides
    assert quiet.p_values(np.array([0.2]))[0] == pytest.approx(1 / 121)


def test_fit_empirical_keeps_the_positive_values_and_refuses_negative_ones():
    null = fit_empirical([0.0, 0.25, 0.0, 0.5], 2, "share", "test", floor=0.5)
    assert (null.n, null.positive, null.floor) == (4, (0.5, 0.25), 0.5)
    with pytest.raises(AuditError):
        fit_empirical([0.0, -0.1, 0.2], 2, "share", "test", floor=0.5)


def test_confident_victims_are_the_correct_other_class_images_with_the_largest_margin():
    logits = np.array([[5.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 4.0], [2.0, 0.5]])
    y = np.array([0, 0, 0, 0, 1, 0])  # image 3 is misclassified, image 4 is of class 1 itself
    # correct class-0 images 0, 1, 2, 5 with margins 5, 1, 3, 1.5: the more confident half
    np.testing.assert_array_equal(np.sort(confident_victims(logits, y, 1)), [0, 2])
    assert len(confident_victims(logits[:1], y[:1], 0)) == 0


def test_confident_victim_power_of_a_planted_pixel():
    """A toy 2-class model on 4x4 images: the mean brightness decides the class, and a white
    pixel in the corner sends any image to class 1 (an implanted trigger). Class 1's mask on
    the corner flips every confident victim; class 0's mask elsewhere flips none."""

    def predict(x):
        mean = x.mean(axis=(1, 2, 3))
        trigger = 100.0 * (x[:, 0, 0, 0] > 0.9)
        return np.stack([10 * (0.5 - mean), 10 * (mean - 0.5) + trigger], axis=1)

    rng = np.random.default_rng(0)
    dark = rng.uniform(0.0, 0.3, (6, 1, 4, 4)).astype(np.float32)
    bright = rng.uniform(0.6, 0.8, (6, 1, 4, 4)).astype(np.float32)
    bright[:, 0, 0, 0] = 0.7  # no trigger in the clean images
    x, y = np.concatenate([dark, bright]), np.array([0] * 6 + [1] * 6)
    masks = np.zeros((2, 2, 4, 4), np.float32)  # (canvas, class, H, W)
    masks[:, 1, 0, 0] = 1.0
    masks[:, 0, 3, 3] = 1.0
    canvases = np.stack([np.ones((2, 1, 4, 4)), np.zeros((2, 1, 4, 4))]).astype(np.float32)
    power = confident_victim_power(
        predict, x, y, masks, canvases, np.zeros_like(masks), [0, 1], 1 / 16
    )
    np.testing.assert_allclose(power, [0.0, 1.0])


def test_confident_victim_test_flags_a_few_class_target_and_needs_half_the_victims():
    """Binary evidence: a class whose tiny pattern sends 0.9 of its confident victims to it is
    suspected by this test alone; 0.4 (under the floor of half) is not, although it is above
    every clean calibration value; 10-class models do not run it."""
    restarts = [evidence_for([0.1, 0.1], s) for s in range(3)]
    for r in restarts:
        r.victim_rate = np.array([0.0, 0.9])
    verdict = verdict_for(restarts, [0, 1])
    assert verdict.outcome == "suspected" and verdict.evidence == {1: ["confident_victim"]}
    test = verdict.test("confident_victim")
    assert test.threshold == VICTIM_POWER and "pooled over 3 restarts" in test.rule
    assert test.p_value[1] == pytest.approx(1 / (VICTIM_NULL.n + 1))
    for r in restarts:
        r.victim_rate = np.array([0.0, 0.4])
    assert confident_victim_test(restarts, [0, 1], 2).fired == []
    ten = [evidence_for(np.zeros(10), s) for s in range(3)]
    assert confident_victim_test(ten, list(range(10)), 10) is None
    for r in restarts:
        r.victim_rate = None  # evidence built without it
    reasons = verdict_for(restarts, [0, 1]).reasons
    assert any("confident-victim" in r for r in reasons)
