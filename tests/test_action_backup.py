"""Q-SFT's action-level backup (pipeline.candidates): the branched forward scores every candidate exactly as a
forward over the state's prefix plus the candidate does (GPT-2 and Llama shapes); `action_values` on
hand-computed values; the training step's targets at turn ends are r + gamma * max over the supported
candidates of the last-token ratio, computed here from explicit forwards; and pi_beta's part precomputed by the
support pass gives the same step."""

import copy
import dataclasses
import math

import pytest
import torch
from conftest import fit_behaviour

from pipeline import losses
from pipeline.batches import pad_rows
from pipeline.candidates import append_candidates
from pipeline.config import ModelConfig, TrainConfig
from pipeline.losses import support_size_bound
from pipeline.models import TokenLogits, build_tokenizer, load_initial_model, save_checkpoint
from pipeline.support import BehaviourSupport
from pipeline.tokenize import TurnCodec, encode_episode
from pipeline.train import check_backup, step_loss

MOVES = ["up", "down", "left", "right"]
TEXTS = ["goal 1 1 start 3 3\n", "2 3\n", "wall 2 3\n", "goal\n", *MOVES] * 30
OBSERVATIONS = ["goal 1 1 start 3 3\n", "2 3\n", "wall 2 3\n", "1 3\n", "goal\n"]


def episode_rows(architecture: str):
    """Two maze-shaped episodes (one terminated, one truncated) as a numpy batch (as Ray Data hands it over),
    with their model config, tokenizer and codec."""
    cfg = ModelConfig(architecture=architecture, n_layer=2, n_embd=32, n_head=2, max_length=96, vocab_size=280)
    tokenizer = build_tokenizer(cfg, TEXTS)
    codec = TurnCodec(tokenizer)
    rows = [encode_episode(codec, OBSERVATIONS, ["up", "left", "up", "left"], [0, 0, 0, 1], True, 96),
            encode_episode(codec, OBSERVATIONS[:3], ["down", "right"], [0, 0], False, 96)]
    return cfg, tokenizer, codec, {k: [r[k] for r in rows] for k in rows[0]}


def episode_batch(architecture: str):
    """`episode_rows`, right-padded."""
    cfg, tokenizer, codec, rows = episode_rows(architecture)
    return cfg, tokenizer, codec, pad_rows(rows, tokenizer.pad_token_id)


def explicit_log_probs(model, prefix: list[int], candidate: list[int]) -> list[float]:
    """log p(a'_t | prefix, a'_<t) for each candidate token, from one plain forward over prefix + candidate."""
    ids = torch.tensor([prefix + candidate])
    with torch.no_grad():
        log_p = model(input_ids=ids).logits[0].float().log_softmax(-1)
    return [log_p[len(prefix) - 1 + t, token].item() for t, token in enumerate(candidate)]


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
def test_branches_score_candidates_as_explicit_forwards(architecture):
    cfg, tokenizer, codec, batch = episode_batch(architecture)
    model = load_initial_model(cfg, tokenizer, seed=3).eval()
    candidates = [codec.action_ids(m) for m in MOVES]
    rows, states = torch.tensor([0, 0, 1, 1]), torch.tensor([5, 12, 4, int(batch["lengths"][1]) - 1])
    branches = append_candidates(batch["input_ids"], batch["lengths"], rows, states, candidates)
    with torch.no_grad():
        got = TokenLogits(model)(branches.input_ids, branches.attention_mask, branches.rows, branches.positions,
                                 position_ids=branches.position_ids).float().log_softmax(-1)
    got = got.gather(-1, branches.tokens[:, None])[:, 0]
    expected = []
    for b, p in zip(rows.tolist(), states.tolist()):
        for candidate in candidates:
            expected += explicit_log_probs(model, batch["input_ids"][b, : p + 1].tolist(), candidate)
    assert got.tolist() == pytest.approx(expected, abs=1e-4)
    assert branches.owner.tolist() == [m * 4 + k for m in range(4) for k in range(4) for _ in candidates[k]]
    assert branches.last.tolist() == [i for i in range(len(expected)) if branches.tokens[i] == codec.eot_id]
    # the rows' own tokens are scored as without branches
    with torch.no_grad():
        plain = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        own = model(input_ids=branches.input_ids, attention_mask=branches.attention_mask,
                    position_ids=branches.position_ids).logits[:, : plain.shape[1]]
    real = batch["attention_mask"].bool()
    assert torch.allclose(own[real], plain[real], atol=1e-4)


def test_action_values_take_the_best_supported_last_token_ratio():
    # two states, three candidates; pi_beta(a'|s') normalised: (0.6, 0.35, 0.05) and (0.5, 0.3, 0.2)
    behaviour_action = torch.tensor([[0.6, 0.35, 0.05], [0.5, 0.3, 0.2]]).log()
    target_last = torch.tensor([[0.5, 0.72, 0.99], [0.2, 0.4, 0.3]]).log()
    behaviour_last = torch.tensor([[1.0, 0.9, 1.0], [0.8, 1.0, 1.0]]).log()
    got = losses.action_values(target_last, behaviour_last, behaviour_action + 1.7, support_eps=0.1)
    # state 0: the third candidate (0.05 <= eps) is out; ratios 0.5 and 0.8 -> 0.8
    # state 1: all in; ratios 0.25, 0.4, 0.3 -> 0.4 (an unnormalised pi_beta gives the same support)
    assert got.tolist() == pytest.approx([0.8, 0.4], abs=1e-6)
    # the most likely candidate stays even above 1/eps candidates' worth of threshold
    assert losses.action_values(target_last[:1], behaviour_last[:1], behaviour_action[:1],
                                support_eps=0.9).item() == pytest.approx(0.5)


def test_training_targets_use_the_action_level_value_at_turn_ends():
    cfg, tokenizer, codec, batch = episode_batch("llama")
    online = load_initial_model(cfg, tokenizer, seed=1)
    target_model, behaviour_model = copy.deepcopy(online).eval(), load_initial_model(cfg, tokenizer, seed=2).eval()
    with torch.no_grad():  # a target that differs from the online model
        for p in target_model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    candidates = [codec.action_ids(m) for m in MOVES]
    train = TrainConfig(stage="qsft", model=cfg, gamma=0.9, support_eps=0.2, backup="action",
                        behaviour_support="online")
    captured = {}
    original = losses.qsft_token_losses

    def capture(logits, actions, targets):
        captured["y"] = targets
        return original(logits, actions, targets)

    losses.qsft_token_losses = capture
    try:
        step_loss(train, batch, TokenLogits(online), TokenLogits(target_model), TokenLogits(behaviour_model),
                  candidates)
    finally:
        losses.qsft_token_losses = original
    y = captured["y"]
    tr = losses.transitions(batch["input_ids"], batch["action_mask"], batch["turn_end"], batch["rewards"],
                            batch["lengths"], batch["terminated"], 0.9)
    ends = batch["turn_end"][tr.row, tr.state_pos + 1].bool()
    checked = 0
    for i in range(len(y)):
        if not ends[i]:
            continue
        if tr.discount[i] == 0:  # the terminal move: no bootstrap
            assert y[i].item() == pytest.approx(tr.reward[i].item())
            continue
        prefix = batch["input_ids"][tr.row[i], : tr.next_state_pos[i] + 1].tolist()
        beta = [explicit_log_probs(behaviour_model, prefix, c) for c in candidates]
        q = [explicit_log_probs(target_model, prefix, c) for c in candidates]
        pi = torch.tensor([sum(b) for b in beta]).softmax(0)
        ratios = [math.exp(qc[-1] - bc[-1]) for qc, bc, p in zip(q, beta, pi) if p > 0.2 or p == pi.max()]
        assert y[i].item() == pytest.approx(min(1.0, tr.reward[i].item() + 0.9 * max(ratios)), abs=1e-4)
        checked += 1
    assert checked == 5  # three bootstrapped turn ends in the first episode (its last is terminal), two in the second


def test_precomputed_behaviour_gives_the_same_action_backup_step(tmp_path):
    cfg, tokenizer, codec, rows = episode_rows("llama")
    behaviour_model = fit_behaviour(load_initial_model(cfg, tokenizer, seed=2), pad_rows(rows, tokenizer.pad_token_id))
    save_checkpoint(str(tmp_path), behaviour_model, tokenizer, {"stage": "bc"})
    candidates = [codec.action_ids(m) for m in MOVES]
    train = TrainConfig(stage="qsft", model=cfg, gamma=0.9, support_eps=0.2, backup="action")
    supported = BehaviourSupport(str(tmp_path), k=support_size_bound(train.support_eps), candidates=candidates)(rows)
    precomputed = pad_rows(supported, tokenizer.pad_token_id)
    online = pad_rows({k: v for k, v in supported.items() if not k.startswith(("behaviour", "support"))},
                      tokenizer.pad_token_id)
    assert precomputed["behaviour_candidates"].shape == (5, 4, 2)  # the five bootstrapped turn ends, 4 moves
    target_model = copy.deepcopy(behaviour_model)
    with torch.no_grad():  # a target whose ratios to pi_beta differ from state to state
        for p in target_model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    policy, target = TokenLogits(load_initial_model(cfg, tokenizer, seed=1)), TokenLogits(target_model)
    loss_online, stats_online = step_loss(dataclasses.replace(train, behaviour_support="online"), online, policy,
                                          target, TokenLogits(behaviour_model), candidates)
    loss_pre, stats_pre = step_loss(train, precomputed, policy, target, None, candidates)
    assert loss_pre.item() == pytest.approx(loss_online.item(), rel=1e-5)
    assert stats_pre["target_mean"] == pytest.approx(stats_online["target_mean"], rel=1e-5)


def test_action_backup_needs_the_qsft_stage_and_a_fixed_action_set():
    from pipeline.config import ConfigError

    assert check_backup(TrainConfig(stage="qsft"), "wordle") == ()
    assert check_backup(TrainConfig(stage="qsft", backup="action"), "maze_small") == tuple(MOVES)
    with pytest.raises(ConfigError, match="backup"):
        check_backup(TrainConfig(stage="qsft", backup="action"), "wordle")
    with pytest.raises(ConfigError, match="backup"):
        check_backup(TrainConfig(stage="bc", backup="action"), "maze_small")
