"""Pool the held-out evaluations of several runs (seeds) of one task, and compare two policies pair by pair.

    python benchmarks/pooled.py RUN [RUN ...] [--policies bc,qsft] [--episodes START:STOP]

Each RUN is a pipeline output folder (`<RUN>/eval/<policy>/`, as `benchmarks/learning.py --out` writes it). Prints,
per policy, each run's and the pooled success rate with its 95% Wilson interval (`pipeline.evaluate.summarize`),
then the paired comparison of the second policy against the first over the same (run, episode) pairs: both
policies play an episode index on the same instance and seed, so

    d = (n_10 - n_01) / n,   95% CI  d +- 1.96 sqrt(((n_10 + n_01) / n - d^2) / n)

with n_10 the pairs only the second policy solves and n_01 those only the first solves, and McNemar's exact
two-sided p = min(1, 2 P(X <= min(n_10, n_01))), X ~ Binomial(n_10 + n_01, 1/2); and the paired difference of
normalized scores, the mean of d_i = score2_i - score1_i with its 95% percentile-bootstrap interval (10,000
resamples of the pairs, seed 0), for tasks whose score is not success alone (the maze). Pairs share their layout across
runs when the runs share a held-out split; the pooled intervals treat the episodes as independent. `--episodes`
keeps the episode indices in [START, STOP) of every run, e.g. the instances a split gained after a result was seen.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def paired_difference(first: list[bool], second: list[bool]) -> dict[str, float]:
    """Success of `second` minus `first` over matched episodes: the difference, its 95% CI and McNemar's p."""
    if len(first) != len(second) or not first:
        raise ValueError(f"need as many matched episodes of each policy, got {len(first)} and {len(second)}")
    n = len(first)
    only_second = sum(b and not a for a, b in zip(first, second))
    only_first = sum(a and not b for a, b in zip(first, second))
    discordant = only_second + only_first
    d = (only_second - only_first) / n
    half = 1.96 * math.sqrt(max(0.0, discordant / n - d * d) / n)
    tail = sum(math.comb(discordant, k) for k in range(min(only_second, only_first) + 1)) / 2 ** discordant
    return {"pairs": n, "only_second": only_second, "only_first": only_first, "difference": d,
            "low": d - half, "high": d + half, "mcnemar_p": min(1.0, 2 * tail)}


def paired_score_difference(first: list[float], second: list[float], resamples: int = 10_000, seed: int = 0
                            ) -> dict[str, float]:
    """Mean of second - first over matched episodes, with the 2.5th and 97.5th percentiles of the mean over
    `resamples` bootstrap resamples of the pairs (numpy's default_rng(seed))."""
    import numpy as np

    if len(first) != len(second) or not first:
        raise ValueError(f"need as many matched episodes of each policy, got {len(first)} and {len(second)}")
    d = np.asarray(second, dtype=float) - np.asarray(first, dtype=float)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"pairs": len(d), "difference": float(d.mean()), "low": float(low), "high": float(high)}


def episode_span(text: str) -> range:
    """"START:STOP" (either may be left out) -> the episode indices START <= i < STOP."""
    start, sep, stop = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"--episodes takes START:STOP, got {text!r}")
    return range(int(start or 0), int(stop) if stop else sys.maxsize)


def main() -> None:
    from pipeline.evaluate import summarize
    from pipeline.report import load_records

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--policies", default="bc,qsft", help="two policies' eval folders, the baseline first")
    parser.add_argument("--episodes", type=episode_span, default=":", help="START:STOP, the episodes kept (all)")
    args = parser.parse_args()
    names = args.policies.split(",")
    if len(names) != 2:
        raise SystemExit("--policies names two policies, e.g. bc,qsft")
    records = {(run, name): [r for r in load_records(os.path.join(run, "eval", name)) if r["episode"] in args.episodes]
               for run in args.runs for name in names}
    for name in names:
        for label, rows in [(run, records[run, name]) for run in args.runs] + [
                ("pooled", [r for run in args.runs for r in records[run, name]])]:
            s = summarize(rows)
            print(f"{name:5s} {label}: {100 * s['success_rate']:.1f}% [{100 * s['success_ci_low']:.1f}, "
                  f"{100 * s['success_ci_high']:.1f}], n={s['episodes']}")
    matched: dict[str, list[dict]] = {name: [] for name in names}
    for run in args.runs:
        by_episode = {name: {r["episode"]: r for r in records[run, name]} for name in names}
        if by_episode[names[0]].keys() != by_episode[names[1]].keys():
            raise SystemExit(f"{run}: {names[0]} and {names[1]} were evaluated on different episodes")
        for episode in sorted(by_episode[names[0]]):
            for name in names:
                matched[name].append(by_episode[name][episode])
    first, second = matched[names[0]], matched[names[1]]
    p = paired_difference([bool(r["success"]) for r in first], [bool(r["success"]) for r in second])
    print(f"{names[1]} - {names[0]}, paired over {p['pairs']} episodes: {100 * p['difference']:+.1f} points "
          f"[{100 * p['low']:.1f}, {100 * p['high']:.1f}]; solved by {names[1]} only {p['only_second']}, "
          f"by {names[0]} only {p['only_first']}; McNemar exact p = {p['mcnemar_p']:.4f}")
    for name, rows in matched.items():
        s = summarize(rows)
        print(f"{name:5s} pooled normalized score: {s['score']:.1f} +- {s['score_ci']:.1f}, n={s['episodes']}")
    q = paired_score_difference([r["score"] for r in first], [r["score"] for r in second])
    print(f"{names[1]} - {names[0]}, normalized score paired over {q['pairs']} episodes: {q['difference']:+.1f} "
          f"[{q['low']:.1f}, {q['high']:.1f}] (bootstrap)")


if __name__ == "__main__":
    main()
