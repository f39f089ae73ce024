"""The baselines' math against hand-computed values: filtered BC's selection, ILQL's losses and extraction,
SPO's initial values, cumulative Q, targets and regression losses."""

import math

import pytest
import torch

from pipeline.algorithm import (
    cumulative_q,
    expectile_losses,
    ilql_token_losses,
    spo_initial_values,
    spo_regression_losses,
    spo_targets,
    top_fraction_filter,
)
from pipeline.config import ConfigError, TrainConfig, apply_overrides
from pipeline.extraction import ilql_log_probs


def test_filtered_bc_keeps_the_top_fraction_and_ties_at_the_threshold():
    returns = torch.tensor([0.1, 0.9, 0.5, 0.7, 0.5, 0.2])
    keep, threshold = top_fraction_filter(returns, 0.5)   # k = 3: the 3rd largest is 0.5, and the tie stays
    assert threshold == pytest.approx(0.5)
    assert keep.tolist() == [False, True, True, True, True, False]
    keep, threshold = top_fraction_filter(returns, 0.1)   # k = ceil(0.6) = 1
    assert keep.tolist() == [False, True, False, False, False, False] and threshold == pytest.approx(0.9)


def test_expectile_weighs_under_estimates_by_tau():
    assert expectile_losses(torch.tensor([2.0, -2.0]), 0.9).tolist() == pytest.approx([0.9 * 4, 0.1 * 4])


def test_ilql_losses_match_hand_computation():
    q = torch.tensor([[1.0, 2.0, 0.0], [0.5, 0.0, -1.0]], requires_grad=True)
    target_q = torch.tensor([[1.5, 3.0, 0.0], [0.0, 0.0, 0.0]])
    actions = torch.tensor([1, 0])
    value = torch.tensor([2.5, 0.2], requires_grad=True)
    next_value = torch.tensor([1.0, 4.0], requires_grad=True)
    reward, discount = torch.tensor([0.0, 0.3]), torch.tensor([0.9, 0.0])   # the second transition is terminal
    parts = ilql_token_losses(q, actions, target_q, value, next_value, reward, discount, tau_e=0.7)
    # TD: Q(s,a) = 2 vs 0 + 0.9 * 1 ; Q = 0.5 vs 0.3 + 0 * 4
    assert parts.q.tolist() == pytest.approx([(2 - 0.9) ** 2, (0.5 - 0.3) ** 2])
    # expectile: u = 3 - 2.5 = 0.5 > 0 (weight 0.7); u = 0 - 0.2 < 0 (weight 0.3)
    assert parts.v.tolist() == pytest.approx([0.7 * 0.25, 0.3 * 0.04])
    lse = [math.log(math.e ** 1 + math.e ** 2 + 1), math.log(math.e ** 0.5 + 1 + math.e ** -1)]
    assert parts.cql.tolist() == pytest.approx([lse[0] - 2, lse[1] - 0.5])
    (parts.q + parts.v).sum().backward()
    assert next_value.grad is None or bool((next_value.grad == 0).all())   # the TD target is stop-gradient
    assert value.grad.tolist() == pytest.approx([-2 * 0.7 * 0.5, -2 * 0.3 * -0.2])


def test_ilql_extraction_is_behaviour_times_exp_beta_advantage():
    behaviour = torch.tensor([[0.0, 1.0, -1.0]])
    q, v = torch.tensor([[0.2, -0.1, 0.4]]), torch.tensor([0.3])
    pb = behaviour.softmax(-1)
    weights = pb * torch.exp(2.0 * (q - v[:, None]))
    expected = weights / weights.sum()
    assert torch.allclose(ilql_log_probs(behaviour, q, v, beta=2.0).exp(), expected, atol=1e-6)
    assert torch.allclose(ilql_log_probs(behaviour, q, v, beta=0.0).exp(), pb, atol=1e-6)   # beta 0 is BC


def test_spo_initial_values_are_soft_values_per_instance_with_a_dataset_fallback():
    returns = torch.tensor([1.0, 0.0, 0.5, 0.25])
    groups = torch.tensor([0, 0, 1, 2])            # instance 0 has two episodes, 1 and 2 one each
    beta = 0.5
    overall = beta * math.log((math.exp(2) + 1 + math.exp(1) + math.exp(0.5)) / 4)
    q0 = spo_initial_values(returns, groups, beta, "squared")
    assert q0.tolist() == pytest.approx([beta * math.log((math.exp(2) + 1) / 2)] * 2 + [overall] * 2, rel=1e-5)
    # cross-entropy: beta * log mean R, the returns read as success probabilities
    q0 = spo_initial_values(returns, groups, beta, "cross_entropy")
    assert q0[:2].tolist() == pytest.approx([beta * math.log(0.5)] * 2, rel=1e-5)
    assert q0[2].item() == pytest.approx(beta * math.log((1 + 1e-6 + 0.5 + 0.25) / 4), rel=1e-5)


def test_cumulative_q_equals_the_explicit_sum_on_a_hand_built_sequence():
    # two rows: three agent tokens in row 0, two in row 1 (transitions order)
    row = torch.tensor([0, 0, 0, 1, 1])
    policy = torch.log(torch.tensor([0.5, 0.8, 0.9, 0.2, 0.6]))
    reference = torch.log(torch.tensor([0.25, 0.8, 0.3, 0.4, 0.6]))
    q0, beta = torch.tensor([0.3, -0.2]), 0.1
    q = cumulative_q(policy, reference, row, q0, beta)
    a = [beta * math.log(2), 0.0, beta * math.log(3), beta * math.log(0.5), 0.0]
    expected = [0.3 + a[0], 0.3 + a[0] + a[1], 0.3 + a[0] + a[1] + a[2], -0.2 + a[3], -0.2 + a[3] + a[4]]
    assert q.tolist() == pytest.approx(expected, abs=1e-6)


def test_spo_targets_are_the_row_return_at_turn_ends_or_only_at_the_last_token():
    row = torch.tensor([0, 0, 0, 0, 1, 1])
    reward = torch.tensor([0.0, 0.1, 0.0, 0.5, 0.0, 0.2])
    ends_turn = torch.tensor([0, 1, 0, 1, 0, 1])
    mask, returns = spo_targets(reward, row, ends_turn, every_turn=True)
    assert mask.tolist() == [False, True, False, True, False, True]
    assert returns.tolist() == pytest.approx([0.6] * 4 + [0.2] * 2)
    mask, _ = spo_targets(reward, row, ends_turn, every_turn=False)
    assert mask.tolist() == [False, False, False, True, False, True]


def test_spo_regression_losses_squared_and_clipped_cross_entropy():
    q = torch.tensor([-0.1, 0.05, -0.3], requires_grad=True)
    target = torch.tensor([1.0, 0.0, 0.5])
    assert spo_regression_losses(q, target, 0.1, "squared").tolist() == pytest.approx([1.1 ** 2, 0.05 ** 2, 0.8 ** 2])
    losses = spo_regression_losses(q, target, 0.1, "cross_entropy")
    expected = [1.0 * 1.0,                                       # y = Q / beta = -1: x relu(-y), nothing at x = 1
                -math.log(-math.expm1(-1e-6)),                   # y = 0.5 > 0 is clipped to -eps; relu(-y) = 0
                0.5 * 3.0 - 0.5 * math.log(1 - math.exp(-3.0))]  # y = -3
    assert losses.tolist() == pytest.approx(expected, rel=2e-3)   # float32 near log(0)
    losses[1].backward()   # straight through the clip: d/dy of -log(1 - exp(y)) at the clipped y, times 1/beta
    assert q.grad[1].item() > 0


@pytest.mark.parametrize("overrides, field", [
    ({"filter_top_fraction": 0.0}, "filter_top_fraction"), ({"filter_top_fraction": 1.5}, "filter_top_fraction"),
    ({"tau_e": 1.0}, "tau_e"), ({"tau_e": 0.0}, "tau_e"), ({"cql_weight": -1.0}, "cql_weight"),
    ({"spo_beta": 0.0}, "spo_beta"), ({"spo_loss": "huber"}, "spo_loss"), ({"stage": "cql"}, "stage"),
])
def test_bad_baseline_config_values_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        apply_overrides(TrainConfig(), overrides)


@pytest.fixture(scope="module")
def tiny_batch():
    from pipeline.batches import pad_rows
    from pipeline.config import ModelConfig
    from pipeline.models import build_tokenizer
    from pipeline.tokenize import TurnCodec, encode_episode

    texts = ["Guess the word.\n", "crane", "crane: _ Y _ _ G\n", "slate", "slate: G G G G G\n"] * 30
    mcfg = ModelConfig(n_layer=1, n_embd=32, n_head=2, max_length=64, vocab_size=300)
    tokenizer = build_tokenizer(mcfg, texts)
    rows = [encode_episode(TurnCodec(tokenizer), ["Guess the word.\n", "crane: _ Y _ _ G\n", "slate: G G G G G\n"],
                           ["crane", "slate"], [0.2, 0.6], terminated=t, max_length=64) for t in (True, False)]
    batch = pad_rows({k: [r[k] for r in rows] for k in rows[0]}, tokenizer.pad_token_id)
    return mcfg, tokenizer, batch


def test_spo_step_at_initialisation_regresses_q0_on_the_return(tiny_batch):
    """pi_theta = pi_0 at the start, so every Q_t is Q0_hat and the loss is mean (Q0_hat - R)^2 over the targets."""
    from pipeline.algorithm import step_loss
    from pipeline.models import TokenLogits, load_initial_model

    mcfg, tokenizer, batch = tiny_batch
    model = load_initial_model(mcfg, tokenizer, seed=1)
    cfg = TrainConfig(stage="spo", model=mcfg, spo_beta=0.5)
    batch = {**batch, "q0": torch.tensor([0.1, 0.3])}
    loss, stats = step_loss(cfg, batch, TokenLogits(model), None, TokenLogits(model))
    # two turn ends per row, each with the row's return 0.8
    assert stats["targets"] == 4 and loss.item() == pytest.approx(((0.1 - 0.8) ** 2 + (0.3 - 0.8) ** 2) / 2, rel=1e-5)
    loss.backward()
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters())


def test_ilql_step_trains_the_heads_and_the_backbone(tiny_batch):
    import copy

    from pipeline.algorithm import step_loss
    from pipeline.models import TokenValues, load_initial_model, new_value_heads

    mcfg, tokenizer, batch = tiny_batch
    model = load_initial_model(mcfg, tokenizer, seed=1)
    online = TokenValues(model, new_value_heads(model))
    cfg = TrainConfig(stage="ilql", model=mcfg, cql_weight=0.5)
    loss, stats = step_loss(cfg, batch, online, copy.deepcopy(online).requires_grad_(False), None)
    assert loss.item() == pytest.approx(stats["q_loss"] + stats["v_loss"] + 0.5 * stats["cql"], rel=1e-5)
    loss.backward()
    assert online.heads.q.weight.grad.abs().sum() > 0 and online.heads.v.weight.grad.abs().sum() > 0
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0


def test_the_learning_table_keeps_runs_above_the_baselines_section(tmp_path, monkeypatch):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "learning.py"
    spec = importlib.util.spec_from_file_location("learning_benchmark", path)
    learning = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(learning)

    table = tmp_path / "LEARNING.md"
    table.write_text(learning.HEADER)
    monkeypatch.setattr(learning, "TABLE", str(table))
    learning.add_row("| run 1 |\n")
    assert table.read_text() == learning.HEADER + "| run 1 |\n"   # without baselines: plain appending
    learning.add_row("| spo 1 |\n", baseline=True)
    learning.add_row("| run 2 |\n")
    learning.add_row("| spo 2 |\n", baseline=True)
    assert table.read_text() == learning.HEADER + "| run 1 |\n| run 2 |\n" + learning.BASELINE_HEADER + \
        "| spo 1 |\n| spo 2 |\n"
    assert learning.settings_grid("filtered_bc", {}) == [{"filter_top_fraction": f} for f in (0.1, 0.3, 0.5)]
    assert learning.settings_grid("filtered_bc", {"filter_top_fraction": "0.2"}) == [{}]
    assert learning.settings_grid("spo", {}) == [{"spo_beta": b} for b in (0.03, 0.1, 0.3)]
    assert learning.settings_grid("ilql", {}) == [{}]
