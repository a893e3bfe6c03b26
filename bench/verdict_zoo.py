"""The backdoor verdict on the whole zoo: collect each restart's evidence, then calibrate and report.

    python bench/verdict_zoo.py collect --seeds 0 1 2 [--models NAME ...] --out E.jsonl
    python bench/verdict_zoo.py report E.jsonl [--out bench/verdict-zoo.json]
    python bench/verdict_zoo.py probes E.jsonl [--models NAME ...] --out E2.jsonl
    python bench/verdict_zoo.py cost [--model vgg]

`collect` runs `analyse_patterns` at the audit defaults (20 images per class of the committed
test subset drawn with the seed, 5 epochs, 3 canvases, 3 restarts) on every zoo model (the
4-class ones on the subset's 4 classes; each restart on its own 20 images per class) and writes
one JSON line per (model, seed) with every restart's mask L1, noise-blend and warp rates, power
curves (R, V, T, len(K_GRID)) and the verdict. `report` fits the priors on the clean models of the calibration half only (models/zoo.json `split`), re-judges every run
with it, and prints detection on each half: found with the right target, false alarms, AUROC
and FPR at 95 % TPR (max over classes of the statistic's z-score under the prior, as score).
`probes` re-measures the noise-blend and warp rates of recorded runs with the current probes and
writes the runs with them: a restart's held-out images and probe seed follow from the run's
seed alone, so the search need not run again (a change of the probes costs minutes, not the
hours of `collect`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnxaudit.analyses.patterns import analyse_patterns
from onnxaudit.analyses.patterns.analyse import (
    DEFAULT_RESTARTS,
    SEARCH_FRACTION,
    logits_predictor,
    probe_rates,
    restart_images,
    restart_split,
)
from onnxaudit.analyses.patterns.evaluate import PredictFn
from onnxaudit.analyses.patterns.null import (
    CleanPrior,
    EmpiricalNull,
    fit_empirical,
    fit_prior,
    transformed,
)
from onnxaudit.analyses.patterns.restarts import restart_seeds
from onnxaudit.analyses.patterns.verdict import (
    MIN_CLASSES,
    MIN_MASK_CLASSES,
    POOLED_TESTS,
    VICTIM_POWER,
    TestResult,
    anomaly_index,
    centred,
    empirical_test,
    over_restarts,
    prior_test,
    spread_rate,
)
from onnxaudit.model import prepare_model
from onnxaudit.settings import PATTERN_EPOCHS

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "models"))
from zoo_data import model_data, zoo_models, zoo_split  # noqa: E402


def collect(args: argparse.Namespace) -> None:
    models = zoo_models()
    names = args.models or list(models)
    with open(args.out, "a") as out:
        for name in names:
            entry = models[name]
            pm = prepare_model(REPO / entry["file"])
            for seed in args.seeds:
                t0 = time.time()
                result = analyse_patterns(
                    pm,
                    model_data(entry, args.per_class, seed),
                    seed=seed,
                    epochs=args.epochs,
                    restarts=args.restarts,
                    threads=args.threads,
                )
                verdict = result.verdict.to_dict()
                row = {
                    "model": name,
                    "seed": seed,
                    "target": entry.get("backdoor", {}).get("target"),
                    "num_classes": pm.info.num_classes,
                    "classes": result.classes,
                    "eval_per_class": result.n_eval // len(result.classes),
                    "seconds": round(time.time() - t0, 1),
                    "restart_images": result.settings["restart_images"],
                    "tests": {t["name"]: t["restarts"] for t in verdict["tests"]},
                    "curves": np.round(result.restart_curves, 4).tolist(),
                    "outcome": verdict["outcome"],
                    "flagged": verdict["classes"],
                    "old_rule_index": verdict["anomaly_index"],
                }
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(name, seed, row["outcome"], row["flagged"], row["seconds"], flush=True)


def probes(args: argparse.Namespace) -> None:
    """Re-measure the probe rates (`tests.noise_blend`, `tests.warp`) of every recorded run of
    `args.models` (all when none), as `collect` at the same seed would now measure them."""
    models = zoo_models()
    rows = [r for r in load_rows(args.evidence) if not args.models or r["model"] in args.models]
    predictors: dict[str, tuple[tuple[int, ...], PredictFn]] = {}
    with open(args.out, "a") as out:
        for row in rows:
            t0 = time.time()
            entry = models[row["model"]]
            if row["model"] not in predictors:
                predictors[row["model"]] = predictor(REPO / entry["file"], args.threads)
            input_shape, predict = predictors[row["model"]]
            data = model_data(entry, args.per_class, row["seed"])
            seeds = restart_seeds(row["seed"], len(row["tests"]["warp"]))
            noise, warp = [], []
            for pool, restart_seed in zip(restart_images(data, seeds), seeds, strict=True):
                x, y = pool.images(input_shape), np.asarray(pool.labels, dtype=np.int64)
                _, held, probe_seed = restart_split(y, SEARCH_FRACTION, restart_seed)
                rates = probe_rates(predict, x[held], y[held], row["classes"], probe_seed)
                noise.append(rates[0].tolist())
                warp.append(rates[1].tolist())
            row["tests"] |= {"noise_blend": noise, "warp": warp}
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(row["model"], row["seed"], round(time.time() - t0, 1), flush=True)


def predictor(path: Path, threads: int) -> tuple[tuple[int, ...], PredictFn]:
    """The model's input shape and its logits on CPU, as analyse_patterns predicts."""
    pm = prepare_model(path)
    return pm.info.input_shape, logits_predictor(pm, "cpu", threads)


def load_rows(paths: list[Path]) -> list[dict]:
    """Evidence rows; a later row for the same (model, seed) replaces an earlier one."""
    rows: dict[tuple[str, int], dict] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            row = json.loads(line)
            rows[row["model"], row["seed"]] = row
    return list(rows.values())


def small_mask_index(row: dict) -> np.ndarray | None:
    """(T,) the small_mask test's MAD index (median over restarts); None below MIN_CLASSES."""
    log_l1 = row["tests"].get("small_mask")
    if log_l1 is None or len(row["classes"]) < MIN_MASK_CLASSES:
        return None
    return anomaly_index(over_restarts(log_l1))


@dataclass(frozen=True)
class Priors:
    """The fitted nulls: the self-excess's, the pattern-size excess's, the small-mask index's, the
    warp rate's and the noise-blend rate's (on its log), and the confident-victim share's
    empirical sample (models of fewer than MIN_CLASSES classes)."""

    excess: CleanPrior
    size: CleanPrior
    mask: CleanPrior
    warp: CleanPrior
    noise: CleanPrior
    victim: EmpiricalNull

    def of(self, test: str) -> CleanPrior | EmpiricalNull:
        return {
            "self_excess": self.excess,
            "size_excess": self.size,
            "small_mask": self.mask,
            "warp": self.warp,
            "noise_blend": self.noise,
            "confident_victim": self.victim,
        }[test]


TESTS = ("self_excess", "size_excess", "small_mask", "warp", "noise_blend", "confident_victim")
Levels = dict[str, float]  # test name -> its per-test level


def run_tests(row: dict, priors: Priors, levels: Levels) -> list[TestResult]:
    """The verdict's five tests of one run, re-judged from the recorded restarts with the
    verdict's own `prior_test` under `priors` and each test's level."""
    classes = row["classes"]
    per_restart = {
        "self_excess": centred(np.asarray(row["tests"]["self_excess"])),
        "size_excess": centred(np.asarray(row["tests"]["size_excess"])),
        "warp": np.asarray(row["tests"]["warp"]),
        "noise_blend": np.asarray(row["tests"]["noise_blend"]),
    }
    statistic = {
        name: spread_rate(values, row["num_classes"])
        if name in POOLED_TESTS
        else over_restarts(values)
        for name, values in per_restart.items()
    }
    index = small_mask_index(row)
    if index is not None:
        per_restart["small_mask"], statistic["small_mask"] = row["tests"]["small_mask"], index
    victim = victim_share(row)
    tests = [
        prior_test(
            name, "", "", statistic[name], np.asarray(per_restart[name]), classes,
            priors.of(name), levels[name],
        )
        for name in TESTS
        if name in statistic
    ]  # fmt: skip
    if victim is not None:
        shares = np.asarray(row["tests"]["confident_victim"])
        name = "confident_victim"
        tests.append(empirical_test(name, "", victim, shares, classes, priors.victim, levels[name]))
    return tests


def victim_share(row: dict) -> np.ndarray | None:
    """(T,) the confident-victim share (pooled over restarts); None when not measured (models
    of MIN_CLASSES classes or more, or rows collected before the test)."""
    shares = row["tests"].get("confident_victim")
    if shares is None or row["num_classes"] >= MIN_CLASSES:
        return None
    return over_restarts(np.asarray(shares, dtype=float), pooled=True)


def judge(row: dict, priors: Priors, levels: Levels) -> tuple[list[int], float]:
    """Flagged classes and a normalised score (> 1 iff flagged) of one run: each test's
    statistic over its threshold, both less the prior's location, on the prior's scale."""
    tests = run_tests(row, priors, levels)
    fired = {t for test in tests for t in test.fired}
    scores = []
    for test in tests:
        prior = priors.of(test.name)
        if isinstance(prior, EmpiricalNull):  # a share against its threshold
            scores.append(test.statistic / test.threshold)
            continue
        value = transformed(test.statistic, prior.transform) - prior.location
        scores.append(value / (transformed(test.threshold, prior.transform) - prior.location))
    return sorted(fired), float(np.max(scores))


def detection(rows: list[dict], priors: Priors, levels: Levels) -> dict:
    """Found with the right target, false alarms, AUROC and FPR at 95 % TPR over `rows`."""
    found = wrong = alarms = n_bd = n_clean = 0
    scores, labels = [], []
    for row in rows:
        flagged, score = judge(row, priors, levels)
        backdoored = row["target"] is not None
        scores.append(score)
        labels.append(backdoored)
        if backdoored:
            n_bd += 1
            found += row["target"] in flagged
            wrong += bool(set(flagged) - {row["target"]})
        else:
            n_clean += 1
            alarms += bool(flagged)
    scores_a, labels_a = np.array(scores, dtype=float), np.array(labels, dtype=bool)
    pos, neg = scores_a[labels_a], scores_a[~labels_a]
    pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]
    auroc = float(np.mean(pairs)) if pairs else None
    cut = np.quantile(pos, 0.05) if len(pos) else np.inf  # 95 % of backdoors score >= cut
    return {
        "backdoored": n_bd,
        "found_with_target": found,
        "flagged_a_wrong_class_too": wrong,
        "clean": n_clean,
        "false_alarms": alarms,
        "auroc": auroc,
        "fpr_at_95_tpr": float(np.mean(neg >= cut)) if len(neg) else None,
    }


def stability(rows: list[dict], priors: Priors, levels: Levels) -> dict[str, dict]:
    """Per model: seeds measured, and how many give its most common flagged set."""
    sets: dict[str, list[tuple[int, ...]]] = {}
    for row in rows:
        sets.setdefault(row["model"], []).append(tuple(judge(row, priors, levels)[0]))
    out = {}
    for model, found in sets.items():
        common = max(set(found), key=found.count)
        out[model] = {"seeds": len(found), "same_set": found.count(common), "set": list(common)}
    return out


ALPHAS = (0.05, 0.025, 0.01, 0.005)


def choose_levels(calibration: list[dict], priors: Priors) -> Levels:
    """Each test's level: the largest in ALPHAS at which that test fires on no clean run of the
    calibration half (the only thresholds tuned, and only on calibration; with none firing
    alone, none fires together)."""
    clean = [r for r in calibration if r["target"] is None]
    levels = {}
    for name in TESTS:
        levels[name] = ALPHAS[-1]
        for alpha in ALPHAS:
            strict = dict.fromkeys(TESTS, 0.0) | {name: alpha}
            if not any(judge(r, priors, strict)[0] for r in clean):
                levels[name] = alpha
                break
    return levels


def common_seeds(rows: list[dict]) -> list[int]:
    """The seeds every model of `rows` was measured at."""
    seeds: dict[str, set[int]] = {}
    for r in rows:
        seeds.setdefault(r["model"], set()).add(r["seed"])
    return sorted(set.intersection(*seeds.values()))


def fit_priors(rows: list[dict], split: dict[str, str], heavy_tails: bool) -> Priors:
    """The priors, from the clean calibration models' classes at every seed all of them were
    measured at (so each model weighs the same)."""
    clean = [r for r in rows if split[r["model"]] == "calibration" and r["target"] is None]
    common = common_seeds(clean)
    clean = [r for r in clean if r["seed"] in common]

    def fit(per_run: dict[str, np.ndarray], statistic: str, transform: str = "none") -> CleanPrior:
        values = [v for stats in per_run.values() for v in stats]
        models = {key.split("@")[0] for key in per_run}
        source = "clean calibration models of models/zoo.json split, bench/verdict_zoo.py"
        return fit_prior(
            values, len(models), statistic, source, heavy_tails=heavy_tails, transform=transform
        )

    def key(r: dict) -> str:
        return f"{r['model']}@{r['seed']}"

    def restart_median(test: str, centre: bool = False) -> dict[str, np.ndarray]:
        return {key(r): seed_median([r], test, centre) for r in clean}

    def spread(test: str) -> dict[str, np.ndarray]:
        return {key(r): spread_rate(r["tests"][test], r["num_classes"]) for r in clean}

    indexed = {key(r): i for r in clean if (i := small_mask_index(r)) is not None}
    shares = {key(r): v for r in clean if (v := victim_share(r)) is not None}
    few = {k.split("@")[0] for k in shares}
    return Priors(
        fit(restart_median("self_excess", centre=True), "self-explained excess: log(L1 "
            "confident / min L1 white, free)"),
        fit(restart_median("size_excess", centre=True), "pattern-size excess: log(size at 50 % "
            "power on confident / smallest on white, free)"),
        fit(indexed, "MAD index of the log smallest white/free mask L1 (median over restarts)"),
        fit(spread("warp"), "share of other-class held-out images a random smooth warp sends "
            "to the class (pooled over restarts), times K - 1"),
        fit(spread("noise_blend"), "share of other-class held-out images a uniform-noise blend "
            "sends to the class (pooled over restarts), times K - 1, on its log", "log"),
        fit_empirical([v for s in shares.values() for v in s], len(few), "share of the "
            "confident victims the class's any-value top-0.5 % pattern sends to it (pooled over "
            "restarts)", "clean calibration models of models/zoo.json split with fewer than "
            f"{MIN_CLASSES} classes, bench/verdict_zoo.py", VICTIM_POWER),
    )  # fmt: skip


def report(args: argparse.Namespace) -> None:
    rows = load_rows(args.evidence)
    split = zoo_split()
    priors = fit_priors(rows, split, args.heavy_tails)
    seeds = common_seeds(rows)
    # the level: no false alarm on any calibration run, every seed measured (stability seeds too)
    levels = choose_levels([r for r in rows if split[r["model"]] == "calibration"], priors)
    halves = {
        half: {
            str(seed): detection(
                [r for r in rows if split[r["model"]] == half and r["seed"] == seed],
                priors,
                levels,
            )
            for seed in seeds
        }
        for half in ("calibration", "held-out")
    }
    judged = {(r["model"], r["seed"]): judge(r, priors, levels) for r in rows}
    per_run = [
        {
            "model": r["model"],
            "seed": r["seed"],
            "half": split[r["model"]],
            "target": r["target"],
            "flagged": judged[r["model"], r["seed"]][0],
            "score": round(judged[r["model"], r["seed"]][1], 3),
            "seconds": r["seconds"],
        }
        for r in sorted(rows, key=lambda r: (r["model"], r["seed"]))
    ]
    doc = {
        "prior": priors.excess.to_dict(),
        "size_prior": priors.size.to_dict(),
        "mask_prior": priors.mask.to_dict(),
        "warp_prior": priors.warp.to_dict(),
        "halves": halves,
        "noise_prior": priors.noise.to_dict(),
        "victim_null": priors.victim.to_dict(),
        "stability": stability(rows, priors, levels),
        "levels": levels,
        "runs": per_run,
    }
    text = json.dumps(doc, indent=1)
    print(markdown(rows, split, priors, levels))
    print()
    print(summary(halves))
    if args.out:
        args.out.write_text(text + "\n")


def summary(halves: dict) -> str:
    """Detection per half and seed as a markdown table."""
    lines = [
        "| half | seed | backdoored found with target | also flagged a wrong class | clean "
        "false alarms | AUROC | FPR at 95 % TPR |",
        "|---|---|---|---|---|---|---|",
    ]
    for half, seeds in halves.items():
        for seed, d in seeds.items():
            auroc = "-" if d["auroc"] is None else f"{d['auroc']:.2f}"
            fpr = "-" if d["fpr_at_95_tpr"] is None else f"{d['fpr_at_95_tpr']:.2f}"
            lines.append(
                f"| {half} | {seed} | {d['found_with_target']} / {d['backdoored']} "
                f"| {d['flagged_a_wrong_class_too']} | {d['false_alarms']} / {d['clean']} "
                f"| {auroc} | {fpr} |"
            )
    return "\n".join(lines)


def seed_median(runs: list[dict], test: str, centre: bool = False) -> np.ndarray:
    """(T,) a test's per-class statistic: over the restarts as the verdict takes it (median,
    or pooled for the rates), then the median over the seeds."""
    per_run = [np.asarray(r["tests"][test], dtype=float) for r in runs]
    pooled = test in POOLED_TESTS
    return np.median(
        [over_restarts(centred(v) if centre else v, pooled=pooled) for v in per_run], axis=0
    )


def target_and_top(
    values: np.ndarray | None, target: int | None, digits: int = 2, missing: str = "< 5 classes"
) -> str:
    """'target / largest other class' of per-class values ('-' for a clean model's target)."""
    if values is None:
        return f"- ({missing})"
    others = [c for c in range(len(values)) if c != target]
    shown = "-" if target is None else f"{values[target]:.{digits}f}"
    return f"{shown} / {max(values[c] for c in others):.{digits}f}"


def model_row(model: str, runs: list[dict], half: str, priors: Priors, levels: Levels) -> str:
    """One markdown row of `markdown`'s table."""
    target = runs[0]["target"]
    excess = seed_median(runs, "self_excess", centre=True)
    top = max((c for c in range(len(excess)) if c != target), key=lambda c: excess[c])
    flags = " ".join("".join(str(c) for c in judge(r, priors, levels)[0]) or "-" for r in runs)
    indices = [small_mask_index(r) for r in runs]
    index = None if indices[0] is None else np.median(indices, axis=0)
    shares = [victim_share(r) for r in runs]
    victims = None if shares[0] is None else np.median(shares, axis=0)
    return (
        f"| `{model}` | {half} | {'-' if target is None else target} | {flags} "
        f"| {'-' if target is None else f'{excess[target]:.2f}'} | {top}: {excess[top]:.2f} "
        f"| {target_and_top(seed_median(runs, 'size_excess', centre=True), target)} "
        f"| {target_and_top(seed_median(runs, 'noise_blend'), target)} "
        f"| {target_and_top(index, target)} | {target_and_top(seed_median(runs, 'warp'), target)} "
        f"| {target_and_top(victims, target, missing='>= 5 classes')} |"
    )


def markdown(rows: list[dict], split: dict[str, str], priors: Priors, levels: Levels) -> str:
    """One table row per model: half, target, flagged set per seed, the target's and the
    largest other class's statistics (median over seeds)."""
    lines = [
        "| model | half | target | flagged per seed | target excess | top other class: excess "
        "| size excess: target / top other | noise rate: target / top other | small-mask index: target / top other "
        "| warp rate: target / top other | confident-victim share: target / top other |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_model: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: r["seed"]):
        by_model.setdefault(row["model"], []).append(row)
    for model in sorted(by_model, key=lambda m: (split[m], m)):
        lines.append(model_row(model, by_model[model], split[model], priors, levels))
    return "\n".join(lines)


TODAY_EPOCHS = 5.0  # the pattern search when issue 13 was filed: one search of 5 epochs


def cost(args: argparse.Namespace) -> None:
    """Wall time of the default verdict (DEFAULT_RESTARTS restarts of PATTERN_EPOCHS) against
    the pattern analysis when issue 13 was filed (one search of 5 epochs + measurement),
    alternated `repeats` times so load swings hit both; uptime around."""
    entry = zoo_models()[args.model]
    pm = prepare_model(REPO / entry["file"])
    data = model_data(entry, args.per_class, 0)
    load = [os.getloadavg()]
    runs = {
        "one search of 5 epochs (issue 13's today)": (1, TODAY_EPOCHS),
        "default verdict": (DEFAULT_RESTARTS, PATTERN_EPOCHS),
    }
    times: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(args.repeats):
        for label, (restarts, epochs) in runs.items():
            t0 = time.perf_counter()
            analyse_patterns(
                pm, data, seed=0, restarts=restarts, epochs=epochs, threads=args.threads
            )
            times[label].append(round(time.perf_counter() - t0, 2))
    load.append(os.getloadavg())
    median = {k: float(np.median(v)) for k, v in times.items()}
    today, default = (median[label] for label in runs)
    doc = {
        "model": args.model,
        "per_class": args.per_class,
        "threads": args.threads,
        "runs": {label: {"restarts": r, "epochs": e} for label, (r, e) in runs.items()},
        "seconds": times,
        "median": median,
        "ratio": default / today,
        "loadavg_before_after": load,
    }
    print(json.dumps(doc, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--models", nargs="*")
    c.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    c.add_argument("--per-class", type=int, default=20)
    c.add_argument("--epochs", type=float, default=5)
    c.add_argument("--restarts", type=int, default=3)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("report")
    r.add_argument("evidence", type=Path, nargs="+")
    r.add_argument("--out", type=Path)
    r.add_argument("--heavy-tails", action="store_true", help="Student-t prior (else normal)")
    p = sub.add_parser("probes")
    p.add_argument("evidence", type=Path, nargs="+")
    p.add_argument("--models", nargs="*")
    p.add_argument("--per-class", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("cost")
    t.add_argument("--model", default="vgg")
    t.add_argument("--per-class", type=int, default=20)
    t.add_argument("--repeats", type=int, default=3)
    t.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    commands = {"collect": collect, "probes": probes, "report": report, "cost": cost}
    commands[args.command](args)


if __name__ == "__main__":
    main()
