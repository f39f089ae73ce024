"""Choose the decoding and extraction settings on validation instances, never on the held-out split.

Validation instances are the first `num_validation_episodes` instances of the task's training split
(`pipeline.evaluate`, split "validation"). The choice is made in two steps, so that BC is never handicapped:
1. the decoding: BC's best validation score among `EvalConfig.temperatures` x `rankings` x `greedy_texts` x
   `sample_supports` (the ranking rule of tasks with admissible actions, whether their free text is generated
   greedily, and whether BC samples over pi_beta's support {pi_beta > support_eps}, where Q-SFT's extraction
   always samples; greedy decoding never leaves it; ties: the first listed); Q-SFT decodes the same way;
2. Q-SFT's extraction among `betas` x `ratio_forms` with that decoding: the best validation score, or with
   `beta_rule = "one_se"` the smallest beta whose score is within one standard error of the best
   (`most_conservative`).
An empty grid keeps the config's single value. The held-out evaluation then uses the chosen settings.
The baselines (benchmarks/learning.py) decode the same way and pick their own settings, training
fields such as filtered BC's fraction or inference ones such as ILQL's beta, the same way (`select_policy`).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from pipeline.config import EvalConfig
from pipeline.policy import PolicySpec

SELECTION_FILE = "selection.json"


def select_settings(pool, bc_checkpoint: str, qsft_checkpoint: str, cfg: EvalConfig, progress: bool = True
                    ) -> dict[str, Any]:
    """{"temperature", "ranking", "greedy_text", "sample_support", "beta", "ratio_form", "beta_rule", "validation":
    [one row per setting tried]};
    `pool` is the task's `pipeline.evaluate.EvalPool`."""
    from pipeline.evaluate import summarize

    trials: list[dict[str, Any]] = []

    def score(policy: str, **settings: Any) -> float:
        trial_cfg = dataclasses.replace(cfg, **settings)
        spec = PolicySpec.from_config(trial_cfg, bc_checkpoint, qsft_checkpoint if policy == "qsft" else None)
        summary = summarize(pool.evaluate(spec, cfg.seed, "validation", progress))
        trials.append({"policy": policy, **settings, **{k: summary[k] for k in (
            "episodes", "score", "score_ci", "raw_return", "success_rate")}})
        return summary["score"]

    supports = cfg.sample_supports or (cfg.sample_support,)
    decodings = [{"temperature": t, "ranking": r, "greedy_text": g, "sample_support": s}
                 for t, r, g, s in itertools.product(cfg.temperatures or (cfg.temperature,), cfg.rankings or (
                     cfg.ranking,), cfg.greedy_texts or (cfg.greedy_text,), supports) if t > 0 or s == supports[0]]
    chosen = decodings[0]
    if len(decodings) > 1:
        scores = [score("bc", **d) for d in decodings]
        chosen = decodings[best_index(scores)]
    grid = list(itertools.product(cfg.betas or (cfg.beta,), cfg.ratio_forms or (cfg.ratio_form,)))
    beta, ratio_form = grid[0]
    if len(grid) > 1:
        for b, r in grid:
            score("qsft", **chosen, beta=b, ratio_form=r)
        rows = trials[-len(grid):]
        pick = most_conservative(rows) if cfg.beta_rule == "one_se" else best_index([r["score"] for r in rows])
        beta, ratio_form = grid[pick]
    return {**chosen, "beta": beta, "ratio_form": ratio_form, "beta_rule": cfg.beta_rule, **validation_size(cfg),
            "validation": trials}


def best_index(scores: list[float]) -> int:
    """The first of the highest validation scores (ties: the first listed)."""
    return scores.index(max(scores))


def most_conservative(rows: list[dict[str, Any]]) -> int:
    """The one-standard-error rule: the index of the row with the smallest beta (the first listed among equal
    ones) whose validation score is at least best - se_best, where se = score_ci / 1.96 of the best row."""
    best = best_index([r["score"] for r in rows])
    floor = rows[best]["score"] - rows[best]["score_ci"] / 1.96
    return min((i for i, row in enumerate(rows) if row["score"] >= floor), key=lambda i: (rows[i]["beta"], i))


def select_policy(pool, candidates: dict[str, PolicySpec], cfg: EvalConfig, progress: bool = True
                  ) -> dict[str, Any]:
    """{"chosen": the name of the candidate with the best validation score (ties: the first listed),
    "validation": one row per candidate}; a single candidate is chosen without a validation run."""
    from pipeline.evaluate import summarize

    names = list(candidates)
    if len(names) == 1:
        return {"chosen": names[0], **validation_size(cfg), "validation": []}
    trials = []
    for name in names:
        summary = summarize(pool.evaluate(candidates[name], cfg.seed, "validation", progress))
        trials.append({"candidate": name, **{k: summary[k] for k in (
            "episodes", "score", "score_ci", "raw_return", "success_rate")}})
    scores = [t["score"] for t in trials]
    return {"chosen": names[best_index(scores)], **validation_size(cfg),
            "validation": trials}


def validation_size(cfg: EvalConfig) -> dict[str, int]:
    return {"validation_episodes": cfg.num_validation_episodes, "validation_repeats": cfg.repeats_of("validation")}


def apply_selection(cfg: EvalConfig, selection: dict[str, Any]) -> EvalConfig:
    """The evaluation config with the chosen temperature, ranking rule, text decoding, support, beta and extraction
    form (a selection written before ranking rules, greedy text or BC's support existed decoded without them)."""
    return dataclasses.replace(cfg, temperature=float(selection["temperature"]),
                               ranking=selection.get("ranking", EvalConfig.ranking),
                               greedy_text=bool(selection.get("greedy_text", EvalConfig.greedy_text)),
                               sample_support=bool(selection.get("sample_support", False)),
                               beta=float(selection["beta"]), ratio_form=bool(selection["ratio_form"]))


def decoding(selection: dict[str, Any]) -> str:
    """The chosen decoding in short, e.g. "T=1" or "T=1, token ranking, greedy text, BC over every action" (the
    ranking rule when not the default; greedy text, and BC sampled outside pi_beta's support, when sampling)."""
    ranking = selection.get("ranking", EvalConfig.ranking)
    sampled = selection["temperature"] > 0
    return (f"T={selection['temperature']:g}" + (f", {ranking} ranking" if ranking != EvalConfig.ranking else "")
            + (", greedy text" if selection.get("greedy_text") and sampled else "")
            + (", BC over every action" if not selection.get("sample_support") and sampled else ""))


def describe(selection: dict[str, Any]) -> str:
    """One line: what was chosen, and on how many validation episodes."""
    form = "ratio form" if selection["ratio_form"] else "paper form"
    repeats = selection.get("validation_repeats", 1)
    rule = " (the smallest within one standard error of the best)" if selection.get("beta_rule") == "one_se" else ""
    return (f"{decoding(selection)}, beta {selection['beta']:g}{rule}, {form} "
            f"(chosen on {selection['validation_episodes']} validation instances of the training split"
            f"{f', {repeats} plays each' if repeats > 1 else ''}, "
            f"{len(selection['validation'])} settings tried)")
