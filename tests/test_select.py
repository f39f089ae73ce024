"""Settings are chosen on validation instances only: BC's decoding (temperature, ranking rule, greedy text) first, then
Q-SFT's extraction with it."""

import dataclasses

from pipeline.config import EvalConfig
from pipeline.select import apply_selection, decoding, describe, most_conservative, select_settings


class FakePool:
    """Scores a spec by a fixed table and records which splits were read."""

    def __init__(self, scores):
        self.scores, self.calls = scores, []

    def evaluate(self, spec, seed, split, progress):
        self.calls.append((spec, split))
        key = ("bc", spec.temperature) if spec.q is None else ("qsft", spec.temperature, spec.beta, spec.ratio_form)
        score = self.scores.get(key + (spec.ranking, spec.greedy_text),
                                self.scores.get(key + (spec.ranking,), self.scores.get(key)))
        return [{"raw_return": score, "score": score, "success": score > 50, "steps": 1}] * 4


def test_temperature_by_bc_then_extraction_at_that_temperature_on_validation_only():
    scores = {("bc", 0.0): 10.0, ("bc", 1.0): 40.0,
              ("qsft", 1.0, 4.0, False): 45.0, ("qsft", 1.0, 4.0, True): 70.0,
              ("qsft", 1.0, 16.0, False): 50.0, ("qsft", 1.0, 16.0, True): 60.0}
    cfg = EvalConfig(temperatures=(0.0, 1.0), betas=(4.0, 16.0), ratio_forms=(False, True), num_validation_episodes=4)
    pool = FakePool(scores)
    chosen = select_settings(pool, "bc-ckpt", "qsft-ckpt", cfg, progress=False)
    assert (chosen["temperature"], chosen["beta"], chosen["ratio_form"]) == (1.0, 4.0, True)
    assert {split for _, split in pool.calls} == {"validation"}
    assert all(spec.temperature == 1.0 for spec, _ in pool.calls if spec.q is not None)   # BC's choice binds Q-SFT
    assert len(chosen["validation"]) == 2 + 4 and chosen["validation"][1]["score"] == 40.0
    final = apply_selection(cfg, chosen)
    assert (final.temperature, final.beta, final.ratio_form) == (1.0, 4.0, True)


def test_the_ranking_rule_is_chosen_with_the_temperature_by_bc_and_binds_every_policy():
    scores = {("bc", 0.0, "sequence"): 5.0, ("bc", 0.0, "token"): 30.0, ("bc", 1.0, "sequence"): 20.0,
              ("bc", 1.0, "token"): 25.0, ("qsft", 0.0, 4.0, False, "token"): 35.0, ("qsft", 0.0, 16.0, False, "token"): 50.0}
    cfg = EvalConfig(temperatures=(0.0, 1.0), rankings=("sequence", "token"), betas=(4.0, 16.0),
                     num_validation_episodes=4)
    pool = FakePool(scores)
    chosen = select_settings(pool, "bc-ckpt", "qsft-ckpt", cfg, progress=False)
    assert (chosen["temperature"], chosen["ranking"], chosen["beta"]) == (0.0, "token", 16.0)
    assert all(spec.ranking == "token" for spec, _ in pool.calls if spec.q is not None)
    assert len(chosen["validation"]) == 4 + 2
    assert apply_selection(cfg, chosen).ranking == "token"
    assert apply_selection(cfg, {k: v for k, v in chosen.items() if k != "ranking"}).ranking == "sequence"


def test_greedy_text_is_chosen_with_the_temperature_by_bc_and_binds_every_policy():
    scores = {("bc", 0.0, "token", False): 3.0, ("bc", 0.0, "token", True): 3.0, ("bc", 1.0, "token", False): 34.0,
              ("bc", 1.0, "token", True): 41.0, ("qsft", 1.0, 4.0, False, "token", True): 45.0,
              ("qsft", 1.0, 16.0, False, "token", True): 44.0}
    cfg = EvalConfig(temperatures=(0.0, 1.0), ranking="token", greedy_texts=(False, True), betas=(4.0, 16.0),
                     num_validation_episodes=4)
    pool = FakePool(scores)
    chosen = select_settings(pool, "bc-ckpt", "qsft-ckpt", cfg, progress=False)
    assert (chosen["temperature"], chosen["greedy_text"], chosen["beta"]) == (1.0, True, 4.0)
    assert all(spec.greedy_text for spec, _ in pool.calls if spec.q is not None)
    assert apply_selection(cfg, chosen).greedy_text
    assert not apply_selection(cfg, {k: v for k, v in chosen.items() if k != "greedy_text"}).greedy_text
    assert decoding(chosen) == "T=1, token ranking, greedy text"


def test_single_values_need_no_validation_runs():
    pool = FakePool({})
    cfg = dataclasses.replace(EvalConfig(), beta=8.0, temperature=0.5)
    chosen = select_settings(pool, "bc", "q", cfg, progress=False)
    assert pool.calls == [] and (chosen["temperature"], chosen["beta"], chosen["ratio_form"]) == (0.5, 8.0, False)


def test_a_baseline_is_chosen_among_its_candidates_on_validation_only():
    from pipeline.policy import PolicySpec
    from pipeline.select import select_policy

    class ByLabel(FakePool):
        def evaluate(self, spec, seed, split, progress):
            self.calls.append((spec, split))
            return [{"raw_return": 0, "score": self.scores[spec.name], "success": False, "steps": 1}] * 4

    candidates = {f"top {f}": PolicySpec(checkpoint=f"ckpt-{f}", label=f"fbc{f}") for f in (0.1, 0.3, 0.5)}
    pool = ByLabel({"fbc0.1": 20.0, "fbc0.3": 55.0, "fbc0.5": 55.0})
    chosen = select_policy(pool, candidates, EvalConfig(num_validation_episodes=4), progress=False)
    assert chosen["chosen"] == "top 0.3" and [t["score"] for t in chosen["validation"]] == [20.0, 55.0, 55.0]
    assert {split for _, split in pool.calls} == {"validation"}
    single = ByLabel({})
    assert select_policy(single, {"only": PolicySpec(checkpoint="x")}, EvalConfig())["chosen"] == "only"
    assert single.calls == []


def test_bc_over_the_support_is_chosen_with_the_temperature_and_only_where_bc_samples():
    """`sample_supports`: whether BC samples over pi_beta's support (where Q-SFT's extraction always samples) is a
    decoding choice made by BC's validation score; greedy decoding never leaves the support, so it is tried once."""
    scores = {("bc", 0.0): 20.0, ("bc", 1.0, True): 35.0, ("bc", 1.0, False): 30.0,
              ("qsft", 1.0, 4.0, False): 45.0, ("qsft", 1.0, 8.0, False): 40.0}
    cfg = EvalConfig(temperatures=(0.0, 1.0), sample_supports=(True, False), num_validation_episodes=4)

    class BySupport(FakePool):
        def evaluate(self, spec, seed, split, progress):
            self.calls.append((spec, split))
            key = ("bc", spec.temperature) if spec.q is None else ("qsft", spec.temperature, spec.beta, spec.ratio_form)
            score = self.scores.get(key + (spec.support_eps > 0,), self.scores.get(key))
            return [{"raw_return": score, "score": score, "success": False, "steps": 1}] * 4

    pool = BySupport(scores)
    chosen = select_settings(pool, "bc", "q", dataclasses.replace(cfg, betas=(4.0, 8.0)), progress=False)
    bc_runs = [(s.temperature, s.support_eps > 0) for s, _ in pool.calls if s.q is None]
    assert bc_runs == [(0.0, True), (1.0, True), (1.0, False)]
    assert (chosen["temperature"], chosen["sample_support"]) == (1.0, True)
    assert all(s.support_eps == cfg.support_eps for s, _ in pool.calls if s.q is not None)
    assert apply_selection(cfg, chosen).sample_support and decoding(chosen) == "T=1"
    pool = BySupport({**scores, ("bc", 1.0, False): 40.0})
    chosen = select_settings(pool, "bc", "q", dataclasses.replace(cfg, betas=(4.0, 8.0)), progress=False)
    assert not chosen["sample_support"] and decoding(chosen) == "T=1, BC over every action"
    # a selection written before the choice existed decoded BC over every action
    assert not apply_selection(cfg, {k: v for k, v in chosen.items() if k != "sample_support"}).sample_support


def test_the_one_standard_error_rule_takes_the_smallest_beta_within_one_se_of_the_best():
    rows = [{"beta": 16.0, "score": 44.0, "score_ci": 6.6}, {"beta": 64.0, "score": 52.9, "score_ci": 6.7},
            {"beta": 256.0, "score": 51.4, "score_ci": 6.9}, {"beta": 1024.0, "score": 53.2, "score_ci": 1.96 * 2.0}]
    assert most_conservative(rows) == 1            # best 53.2, se 2.0: floor 51.2 admits 64, 256 and 1024
    rows[3]["score_ci"] = 1.96 * 0.2               # se 0.2: floor 53.0 admits the best alone
    assert most_conservative(rows) == 3
    listed_high_first = [dict(r) for r in reversed(rows)]
    listed_high_first[0]["score_ci"] = 1.96 * 2.0
    assert listed_high_first[most_conservative(listed_high_first)]["beta"] == 64.0   # by beta, not listing order


class SpreadPool(FakePool):
    """FakePool whose four records per setting are score -+ 6, so score_ci = 1.96 * std / 2 = 6.79 (se 3.46)."""

    def evaluate(self, spec, seed, split, progress):
        score = super().evaluate(spec, seed, split, progress)[0]["score"]
        return [{"raw_return": score + d, "score": score + d, "success": True, "steps": 1} for d in (-6, 6, -6, 6)]


def test_select_settings_applies_the_beta_rule():
    scores = {("bc", 1.0): 30.0, ("qsft", 1.0, 16.0, True): 44.0, ("qsft", 1.0, 64.0, True): 50.0,
              ("qsft", 1.0, 256.0, True): 52.0}
    cfg = EvalConfig(temperature=1.0, betas=(16.0, 64.0, 256.0), ratio_forms=(True,), num_validation_episodes=4)
    best = select_settings(SpreadPool(scores), "bc-ckpt", "qsft-ckpt", cfg, progress=False)
    one_se = select_settings(SpreadPool(scores), "bc-ckpt", "qsft-ckpt",
                             dataclasses.replace(cfg, beta_rule="one_se"), progress=False)
    assert (best["beta"], best["beta_rule"]) == (256.0, "best")
    assert (one_se["beta"], one_se["beta_rule"]) == (64.0, "one_se")   # 50 >= 52 - 3.46 > 44
    assert "within one standard error" in describe(one_se) and "standard error" not in describe(best)
