"""Q-SFT's action-level backup (pipeline.candidates): the branched forward scores every candidate exactly as a
forward over the state's prefix plus the candidate does (GPT-2 and Llama shapes); `action_values` on
hand-computed values; the training step's targets at turn ends are r + gamma * max over each next state's own
supported candidates of the last-token ratio, computed here from explicit forwards (a state with no candidate
keeps the token-level target); tokenization reads the candidates from the step infos; and pi_beta's part
precomputed by the support pass (which keeps only its support) gives the same step."""

import copy
import dataclasses
import math

import pytest
import torch
from conftest import fit_behaviour

import envs
from pipeline import algorithm
from pipeline.algorithm import step_loss, support_size_bound
from pipeline.batches import pad_rows
from pipeline.candidates import append_candidates, candidate_columns, split_candidates
from pipeline.config import ModelConfig, TrainConfig
from pipeline.models import TokenLogits, build_tokenizer, load_initial_model, save_checkpoint
from pipeline.support import PiBetaSupport
from pipeline.tokenize import TurnCodec, bootstrapped_turns, encode_episode, next_state_candidates
from pipeline.train import check_backup

MOVES = ["up", "down", "left", "right"]
TEXTS = ["goal 1 1 start 3 3\n", "2 3\n", "wall 2 3\n", "goal\n", *MOVES] * 30
OBSERVATIONS = ["goal 1 1 start 3 3\n", "2 3\n", "wall 2 3\n", "1 3\n", "goal\n"]


# Each bootstrapped turn end's next-state candidates: the first episode's three, then the second's two. They
# differ from state to state, and one state lists none (it keeps the token-level target).
STATE_MOVES = [MOVES, ["up", "left"], [], ["down", "right", "left"], MOVES]


def episode_rows(architecture: str):
    """Two maze-shaped episodes (one terminated, one truncated) as a numpy batch (as Ray Data hands it over),
    each bootstrapped turn end with its next state's candidates (`STATE_MOVES`), with their model config,
    tokenizer and codec."""
    cfg = ModelConfig(architecture=architecture, n_layer=2, n_embd=32, n_head=2, max_length=96, vocab_size=280)
    tokenizer = build_tokenizer(cfg, TEXTS)
    codec = TurnCodec(tokenizer)
    rows = [encode_episode(codec, OBSERVATIONS, ["up", "left", "up", "left"], [0, 0, 0, 1], True, 96),
            encode_episode(codec, OBSERVATIONS[:3], ["down", "right"], [0, 0], False, 96)]
    moves = iter(STATE_MOVES)
    for row in rows:
        row.update(candidate_columns([[codec.action_ids(m) for m in next(moves)] for _ in bootstrapped_turns(row)]))
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
    branches = append_candidates(batch["input_ids"], batch["lengths"], rows, states, [candidates] * 4)
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
    # states with candidate lists of their own, one of them empty
    ragged = [candidates[:1], [], candidates[2:], candidates]
    branches = append_candidates(batch["input_ids"], batch["lengths"], rows, states, ragged)
    with torch.no_grad():
        got = TokenLogits(model)(branches.input_ids, branches.attention_mask, branches.rows, branches.positions,
                                 position_ids=branches.position_ids).float().log_softmax(-1)
    expected = [x for b, p, state in zip(rows.tolist(), states.tolist(), ragged) for c in state
                for x in explicit_log_probs(model, batch["input_ids"][b, : p + 1].tolist(), c)]
    assert got.gather(-1, branches.tokens[:, None])[:, 0].tolist() == pytest.approx(expected, abs=1e-4)
    assert len(branches.last) == 7
    assert branches.last.tolist() == [i for i in range(len(expected)) if branches.tokens[i] == codec.eot_id]
    # the rows' own tokens are scored as without branches
    with torch.no_grad():
        plain = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        own = model(input_ids=branches.input_ids, attention_mask=branches.attention_mask,
                    position_ids=branches.position_ids).logits[:, : plain.shape[1]]
    real = batch["attention_mask"].bool()
    assert torch.allclose(own[real], plain[real], atol=1e-4)


def test_candidates_come_from_the_next_states_step_infos():
    _, _, codec, _ = episode_rows("llama")
    infos = [{"admissible_actions": ["search[...]"]}, {"admissible_actions": ["up", "down"]},
             {"admissible_actions": ["search[...]"]}, {"admissible_actions": ["left"]}, {}]
    row = encode_episode(codec, OBSERVATIONS, ["up", "left", "up", "left"], [0, 0, 0, 1], True, 96)
    columns = next_state_candidates(codec, infos, row)
    # turns 0-2 bootstrap (turn 3 is terminal); the template "search[...]" is written, not ranked
    assert split_candidates(*columns.values()) == [[codec.action_ids("up"), codec.action_ids("down")], [],
                                                   [codec.action_ids("left")]]
    cut = encode_episode(codec, OBSERVATIONS, ["up", "left", "up", "left"], [0, 0, 0, 1], True, row["length"] - 1)
    assert 0 < cut["kept_turns"] < 4 and not cut["terminated"]  # a row cut short bootstraps from its last kept state
    assert len(next_state_candidates(codec, infos, cut)["candidate_counts"]) == cut["kept_turns"]


def test_action_values_take_the_best_supported_last_token_ratio():
    # two states, three candidates; pi_beta(a'|s') normalised: (0.6, 0.35, 0.05) and (0.5, 0.3, 0.2)
    behaviour_action = torch.tensor([[0.6, 0.35, 0.05], [0.5, 0.3, 0.2]]).log()
    target_last = torch.tensor([[0.5, 0.72, 0.99], [0.2, 0.4, 0.3]]).log()
    behaviour_last = torch.tensor([[1.0, 0.9, 1.0], [0.8, 1.0, 1.0]]).log()
    got = algorithm.action_values(target_last, behaviour_last, behaviour_action + 1.7, support_eps=0.1)
    # state 0: the third candidate (0.05 <= eps) is out; ratios 0.5 and 0.8 -> 0.8
    # state 1: all in; ratios 0.25, 0.4, 0.3 -> 0.4 (an unnormalised pi_beta gives the same support)
    assert got.tolist() == pytest.approx([0.8, 0.4], abs=1e-6)
    # a state with fewer candidates is padded with log pi_beta = -inf: the padding is never in the support
    padded = algorithm.action_values(torch.tensor([[0.5, 0.99]]).log(), torch.tensor([[1.0, 0.01]]).log(),
                                  torch.tensor([[0.0, -torch.inf]]), support_eps=0.1)
    assert padded.item() == pytest.approx(0.5)
    # the most likely candidate stays even above 1/eps candidates' worth of threshold
    assert algorithm.action_values(target_last[:1], behaviour_last[:1], behaviour_action[:1],
                                support_eps=0.9).item() == pytest.approx(0.5)


def test_training_targets_use_the_action_level_value_at_turn_ends():
    cfg, tokenizer, codec, batch = episode_batch("llama")
    online = load_initial_model(cfg, tokenizer, seed=1)
    target_model, behaviour_model = copy.deepcopy(online).eval(), load_initial_model(cfg, tokenizer, seed=2).eval()
    with torch.no_grad():  # a target that differs from the online model
        for p in target_model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    train = TrainConfig(stage="qsft", model=cfg, gamma=0.9, support_eps=0.2, backup="action",
                        pi_beta_support="online")
    captured = {}
    original = algorithm.qsft_token_losses

    def capture(logits, actions, targets, action_vocab=None):
        captured["y"] = targets
        return original(logits, actions, targets, action_vocab)

    algorithm.qsft_token_losses = capture
    try:
        step_loss(train, batch, TokenLogits(online), TokenLogits(target_model), TokenLogits(behaviour_model))
        step_loss(dataclasses.replace(train, backup="token"), batch, TokenLogits(online), TokenLogits(target_model),
                  TokenLogits(behaviour_model))
        captured["token_level"] = captured["y"]
        step_loss(train, batch, TokenLogits(online), TokenLogits(target_model), TokenLogits(behaviour_model))
    finally:
        algorithm.qsft_token_losses = original
    y = captured["y"]
    state_moves = iter(STATE_MOVES)
    tr = algorithm.transitions(batch["input_ids"], batch["action_mask"], batch["turn_end"], batch["rewards"],
                            batch["lengths"], batch["terminated"], 0.9)
    ends = batch["turn_end"][tr.row, tr.state_pos + 1].bool()
    checked = 0
    for i in range(len(y)):
        if not ends[i]:
            continue
        if tr.discount[i] == 0:  # the terminal move: no bootstrap
            assert y[i].item() == pytest.approx(tr.reward[i].item())
            continue
        candidates = [codec.action_ids(m) for m in next(state_moves)]
        if not candidates:  # a state that lists no action: the token-level target
            assert y[i].item() == pytest.approx(captured["token_level"][i].item(), abs=1e-6)
            checked += 1
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
    cfg, tokenizer, _, rows = episode_rows("llama")
    behaviour_model = fit_behaviour(load_initial_model(cfg, tokenizer, seed=2), pad_rows(rows, tokenizer.pad_token_id))
    save_checkpoint(str(tmp_path), behaviour_model, tokenizer, {"stage": "bc"})
    train = TrainConfig(stage="qsft", model=cfg, gamma=0.9, support_eps=0.2, backup="action")
    online = pad_rows(rows, tokenizer.pad_token_id)
    supported = PiBetaSupport(str(tmp_path), k=support_size_bound(train.support_eps),
                                 support_eps=train.support_eps)(copy.deepcopy(rows))
    precomputed = pad_rows(supported, tokenizer.pad_token_id)
    # the support pass kept each state's candidates in pi_beta's support: some, but never none where there were any
    kept = split_candidates(precomputed["candidate_counts"].tolist(), precomputed["candidate_lengths"].tolist(),
                            precomputed["candidate_tokens"].tolist())
    assert [len(c) > 0 for c in kept] == [len(m) > 0 for m in STATE_MOVES]
    assert 0 < sum(map(len, kept)) < sum(map(len, STATE_MOVES))
    assert precomputed["pi_beta_candidates"].shape == (sum(map(len, kept)), 2)
    target_model = copy.deepcopy(behaviour_model)
    with torch.no_grad():  # a target whose ratios to pi_beta differ from state to state
        for p in target_model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    policy, target = TokenLogits(load_initial_model(cfg, tokenizer, seed=1)), TokenLogits(target_model)
    loss_online, stats_online = step_loss(dataclasses.replace(train, pi_beta_support="online"), online, policy,
                                          target, TokenLogits(behaviour_model))
    loss_pre, stats_pre = step_loss(train, precomputed, policy, target, None)
    assert loss_pre.item() == pytest.approx(loss_online.item(), rel=1e-5)
    assert stats_pre["target_mean"] == pytest.approx(stats_online["target_mean"], rel=1e-5)


def test_action_backup_needs_the_qsft_stage_and_a_task_that_lists_actions():
    from pipeline.config import ConfigError

    assert check_backup(TrainConfig(stage="qsft"), envs.get_task("wordle")) is False
    assert check_backup(TrainConfig(stage="qsft", backup="action"), envs.get_task("maze_small")) is True
    assert check_backup(TrainConfig(stage="qsft", backup="action"), envs.get_task("webshop")) is True
    with pytest.raises(ConfigError, match="backup"):
        check_backup(TrainConfig(stage="qsft", backup="action"), envs.get_task("wordle"))
    with pytest.raises(ConfigError, match="backup"):
        check_backup(TrainConfig(stage="bc", backup="action"), envs.get_task("maze_small"))


def test_constrained_log_probs_by_hand():
    """Two candidates [5, 7] and [5, 8] and a third [6]: the first token chooses between 5 and 6, the second
    (after 5) between 7 and 8; each is renormalised over those tokens only."""
    from pipeline.candidates import constrained_log_probs, continuations

    candidates = [[5, 7], [5, 8], [6]]
    allowed = continuations(candidates)
    assert allowed == [[5, 6], [7, 8], [5, 6], [7, 8], [5, 6]]
    log_p = torch.full((5, 10), -5.0)
    log_p[:, 5], log_p[:, 6], log_p[:, 7], log_p[:, 8] = math.log(0.3), math.log(0.1), math.log(0.2), math.log(0.05)
    tokens = torch.tensor([t for c in candidates for t in c])
    got = constrained_log_probs(log_p, tokens, allowed)
    first, second = {5: 0.3 / 0.4, 6: 0.1 / 0.4}, {7: 0.2 / 0.25, 8: 0.05 / 0.25}
    expected = [first[5], second[7], first[5], second[8], first[6]]
    assert torch.allclose(got.exp(), torch.tensor(expected), atol=1e-6)
