"""The Q-SFT math against hand-computed values: indexing across turns, targets, loss, extraction."""

import math

import pytest
import torch

from pipeline.algorithm import (
    BellmanTargets,
    SmoothingMass,
    bc_token_losses,
    bellman_targets,
    label_smoothing_floor,
    qsft_token_losses,
    returns_to_go,
    smoothing_corrected,
    transitions,
    with_lower_bound,
)
from pipeline.extraction import extracted_log_probs
from pipeline.tokenize import encode_episode

GAMMA = 0.9

# Two rows over a 4-token vocabulary: env tokens are 0/2, agent tokens 1 (word) and 3 (<|eot|>).
#   pos:        0  1  2  3  4  5  6
#   row 0:      o  a  E  o  a  E  o     truncated: ends with the final observation (length 7)
#   row 1:      o  a  E  o  a  E  pad   terminated (length 6)
IDS = torch.tensor([[0, 1, 3, 2, 1, 3, 0], [0, 1, 3, 2, 1, 3, 0]])
MASK = torch.tensor([[0, 1, 1, 0, 1, 1, 0], [0, 1, 1, 0, 1, 1, 0]])
TURN_END = torch.tensor([[0, 0, 1, 0, 0, 1, 0], [0, 0, 1, 0, 0, 1, 0]])
REWARDS = torch.tensor([[0, 0, 0.1, 0, 0, 0.5, 0], [0, 0, 0.2, 0, 0, 0.6, 0]])
LENGTHS = torch.tensor([7, 6])
TERMINATED = torch.tensor([False, True])


def test_transitions_index_states_next_states_rewards_and_discounts():
    tr = transitions(IDS, MASK, TURN_END, REWARDS, LENGTHS, TERMINATED, GAMMA)
    assert tr.row.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert tr.action.tolist() == [1, 3, 1, 3] * 2
    # p(a_i|s_i) is read at i - 1.
    assert tr.state_pos.tolist() == [0, 1, 3, 4] * 2
    # s'_i is read at j - 1: inside a turn j = i + 1; after <|eot|> j is the next turn's first token
    # (skipping the env token at 3); after the last action, the end of the sequence.
    assert tr.next_state_pos.tolist() == [1, 3, 4, 6, 1, 3, 4, 5]
    # The reward sits on the agent token that earned it (the turn's <|eot|>), not one token off.
    assert tr.reward.tolist() == pytest.approx([0, 0.1, 0, 0.5, 0, 0.2, 0, 0.6])
    # Per-utterance discount: gamma only across turn boundaries; the terminated row's last action has none.
    assert tr.discount.tolist() == pytest.approx([1, GAMMA, 1, GAMMA, 1, GAMMA, 1, 0])


def test_returns_to_go_discount_across_turns_and_stop_at_each_row_end():
    tr = transitions(IDS, MASK, TURN_END, REWARDS, LENGTHS, TERMINATED, GAMMA)
    # row 0 (truncated; nothing after its last kept token): G = .5 on turn 2, .1 + .9 * .5 = .55 on turn 1;
    # row 1 (terminated): .6, then .2 + .9 * .6 = .74. Tokens inside a turn share their turn's return.
    assert returns_to_go(tr).tolist() == pytest.approx([0.55, 0.55, 0.5, 0.5, 0.74, 0.74, 0.6, 0.6])


def test_monte_carlo_lower_bound_only_raises_targets():
    y = BellmanTargets(torch.tensor([0.3, 0.9, 0.4]), torch.tensor([2, 2, 2]), torch.tensor([False, False, True]))
    bounded = with_lower_bound(y, torch.tensor([0.5, 0.2, 1.3]))
    assert bounded.target.tolist() == pytest.approx([0.5, 0.9, 1.0])   # a return above 1 is clipped like y
    assert bounded.raised.tolist() == [True, False, True]
    assert torch.equal(bounded.clipped, y.clipped) and torch.equal(bounded.support_size, y.support_size)


def test_per_token_discount_applies_gamma_at_every_agent_token():
    tr = transitions(IDS, MASK, TURN_END, REWARDS, LENGTHS, TERMINATED, GAMMA, per_token_discount=True)
    assert tr.discount.tolist() == pytest.approx([GAMMA] * 7 + [0])


def test_agent_token_at_position_zero_is_rejected():
    with pytest.raises(ValueError, match="position 0"):
        transitions(IDS[:1], torch.tensor([[1, 1, 1, 0, 1, 1, 0]]), TURN_END[:1], REWARDS[:1], LENGTHS[:1],
                    TERMINATED[:1], GAMMA)


class StubCodec:
    """Observation characters are token 2, action characters token 1, then <|eot|> = 3."""

    def observation_ids(self, text):
        return [2] * len(text)

    def action_ids(self, text):
        return [1] * len(text) + [3]


def test_an_observation_of_zero_tokens_still_ends_the_turn():
    """The second observation is empty, so turn 1's <|eot|> is followed directly by turn 2's first token:
    the turn end comes from tokenization, and gamma still applies across it."""
    row = encode_episode(StubCodec(), ["ab", "", "c"], ["x", "y"], [0.1, 0.5], terminated=False, max_length=50)
    #   pos:       0  1  2  3  4  5  6
    #   ids:       o  o  x  E  y  E  o
    assert row["input_ids"].tolist() == [2, 2, 1, 3, 1, 3, 2]
    assert row["action_mask"].tolist() == [0, 0, 1, 1, 1, 1, 0]
    assert row["turn_end"].tolist() == [0, 0, 0, 1, 0, 1, 0]
    batch = {k: torch.as_tensor(row[k])[None] for k in ("input_ids", "action_mask", "turn_end", "rewards")}
    tr = transitions(*batch.values(), torch.tensor([row["length"]]), torch.tensor([False]), GAMMA)
    assert tr.state_pos.tolist() == [1, 2, 3, 4]
    assert tr.next_state_pos.tolist() == [2, 3, 4, 6]   # after the first <|eot|>, s' ends just before y
    assert tr.reward.tolist() == pytest.approx([0, 0.1, 0, 0.5])
    assert tr.discount.tolist() == pytest.approx([1, GAMMA, 1, GAMMA])   # adjacency alone would give 1 at E


def test_a_row_whose_last_agent_token_ends_no_turn_is_rejected():
    with pytest.raises(ValueError, match="turn_end"):
        transitions(IDS, MASK, torch.zeros_like(TURN_END), REWARDS, LENGTHS, TERMINATED, GAMMA)


def logits_of(probs):
    return torch.log(torch.tensor(probs, dtype=torch.float32))


def test_bellman_target_uses_support_ratio_at_next_state_and_clips():
    # p_target and pi_beta at three next states. Support eps = 0.01.
    p_target = logits_of([[0.4, 0.25, 0.05, 0.3],      # ratios .8, .625, .526, (60: pi_beta .005 outside support)
                          [0.4, 0.25, 0.05, 0.3],
                          [0.1, 0.1, 0.1, 0.7]])
    pi_beta = logits_of([[0.5, 0.4, 0.095, 0.005],
                         [0.5, 0.4, 0.095, 0.005],
                         [0.001, 0.001, 0.001, 0.997]])  # support {3}: ratio .7 / .997
    reward = torch.tensor([0.0, 0.5, 0.2])
    discount = torch.tensor([GAMMA, GAMMA, 0.0])
    y = bellman_targets(p_target, pi_beta, reward, discount, support_eps=0.01)
    # row 0: 0 + .9 * .8 = .72 ; row 1: .5 + .72 = 1.22 -> clipped to 1 ; row 2: terminal, y = r = .2
    assert y.target.tolist() == pytest.approx([0.72, 1.0, 0.2], abs=1e-5)
    assert y.clipped.tolist() == [False, True, False]
    assert y.support_size.tolist() == [3, 3, 1]
    # The same targets from pi_beta's top-k only (k = 1/eps covers every token above eps).
    top = pi_beta.topk(2, dim=-1)
    sparse = bellman_targets(p_target.gather(-1, top.indices), top.values, reward, discount, support_eps=0.5)
    dense = bellman_targets(p_target, pi_beta, reward, discount, support_eps=0.5)
    assert torch.equal(sparse.target, dense.target) and torch.equal(sparse.support_size, dense.support_size)
    # Without the support mask the rare token's ratio (60) would dominate.
    loose = bellman_targets(p_target, pi_beta, reward, discount, support_eps=1e-4)
    assert loose.target.tolist() == pytest.approx([1.0, 1.0, 0.2])


def test_targets_are_read_with_behaviour_at_the_next_state_not_the_current_one():
    # Position-dependent distributions: behaviour at state position 1 vs next-state position 3 differ.
    vocab = 4
    target = torch.zeros(2, 7, vocab)
    behaviour = torch.zeros(2, 7, vocab)
    behaviour[0, 1] = logits_of([0.97, 0.01, 0.01, 0.01])  # s_i of the <|eot|> at i = 2
    behaviour[0, 3] = logits_of([0.25, 0.25, 0.25, 0.25])  # s'_i of that <|eot|>
    target[0, 3] = logits_of([0.1, 0.1, 0.1, 0.7])
    tr = transitions(IDS, MASK, TURN_END, REWARDS, LENGTHS, TERMINATED, GAMMA)
    y = bellman_targets(target[tr.row, tr.next_state_pos].log_softmax(-1),
                        behaviour[tr.row, tr.next_state_pos].log_softmax(-1), tr.reward, tr.discount, 0.01).target
    # Transition 1 (row 0, <|eot|> at 2): 0.1 + 0.9 * max(0.7 / 0.25) -> clipped to 1; with pi_beta read at
    # s_i instead it would be 0.1 + 0.9 * (0.1 / 0.97).
    assert y[1].item() == pytest.approx(1.0)
    # Transition 0 (inside the turn, s' at 1): pi_beta(.97, .01, .01, .01) has support {0} only (.01 is not
    # > eps), so y = 0 + 1 * (.25 / .97).
    assert y[0].item() == pytest.approx(0.25 / 0.97, rel=1e-5)


def test_qsft_loss_matches_hand_computation_and_has_no_gradient_into_targets():
    logits = logits_of([[0.5, 0.2, 0.2, 0.1]]).requires_grad_()
    y = torch.tensor([0.6])
    loss = qsft_token_losses(logits, torch.tensor([0]), y)
    expected = -(0.6 * math.log(0.5) + 0.4 / 3 * (math.log(0.2) + math.log(0.2) + math.log(0.1)))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.sum().backward()
    # d/dz of the label-smoothed CE is softmax - target distribution (y on a, (1-y)/(V-1) elsewhere).
    target_dist = torch.tensor([0.6, 0.4 / 3, 0.4 / 3, 0.4 / 3])
    assert torch.allclose(logits.grad[0], torch.tensor([0.5, 0.2, 0.2, 0.1]) - target_dist, atol=1e-5)


def test_label_smoothing_spreads_only_over_the_action_vocabulary():
    """With an action vocabulary A = {1, 2, 3} (a pixel task's bins), the (1 - y) mass goes to A's other tokens
    only, (1 - y) / (|A| - 1) each, and the gradient pushes token 0 (pad, say) down, never up."""
    logits = logits_of([[0.1, 0.5, 0.3, 0.1]]).requires_grad_()
    y, vocab = torch.tensor([0.6]), torch.tensor([1, 2, 3])
    loss = qsft_token_losses(logits, torch.tensor([1]), y, vocab)
    assert loss.item() == pytest.approx(-(0.6 * math.log(0.5) + 0.4 / 2 * (math.log(0.3) + math.log(0.1))), rel=1e-5)
    loss.sum().backward()
    target_dist = torch.tensor([0.0, 0.6, 0.2, 0.2])
    assert torch.allclose(logits.grad[0], torch.tensor([0.1, 0.5, 0.3, 0.1]) - target_dist, atol=1e-5)
    assert label_smoothing_floor(len(vocab)) == 0.5


def test_bc_loss_is_negative_log_likelihood():
    logits = logits_of([[0.5, 0.2, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]])
    assert bc_token_losses(logits, torch.tensor([1, 3])).tolist() == pytest.approx([-math.log(0.2), math.log(4)])


def test_extracted_policy_matches_the_formula():
    behaviour = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    q = torch.tensor([[0.0, 3.0, 1.0, 0.5]])
    beta = 4.0
    pb = torch.softmax(behaviour, -1)[0]
    pq = torch.softmax(q, -1)[0]
    unnorm = pb * torch.exp(beta * pq)
    assert torch.allclose(extracted_log_probs(behaviour, q, beta).exp()[0], unnorm / unnorm.sum(), atol=1e-6)
    ratio = pb * torch.exp(beta * pq / pb)
    assert torch.allclose(extracted_log_probs(behaviour, q, beta, ratio_form=True).exp()[0], ratio / ratio.sum(),
                          atol=1e-6)
    assert torch.allclose(extracted_log_probs(behaviour, q, 0.0).exp()[0], pb, atol=1e-6)


def test_support_threshold_must_clear_the_label_smoothing_floor():
    """With eps below 1/(V-1), a token outside the data keeps (1 - y)/(V - 1) > eps-level pi_beta mass, so
    p_target / pi_beta > 1 and the clipped target is 1 whatever the reward: the threshold has to clear it."""
    vocab, y = 67, 0.2
    others = (1 - y) / (vocab - 1)                     # what the loss's optimum puts on each untaken token
    assert label_smoothing_floor(vocab) == pytest.approx(1 / 66) and others < label_smoothing_floor(vocab)
    behaviour = torch.full((1, vocab), 0.011).log()    # a rare token just inside an eps = 0.01 support
    target = torch.full((1, vocab), others).log()
    low = bellman_targets(target, behaviour, torch.zeros(1), torch.ones(1), support_eps=0.01)
    assert low.target.item() == 1.0 and low.clipped.item()
    high = bellman_targets(target, behaviour, torch.zeros(1), torch.ones(1), support_eps=0.05)
    assert high.target.item() == 0.0 and high.support_size.item() == 0


def test_smoothing_correction_recovers_q_from_the_loss_minimiser():
    """Hand-computed, |A| = 4 (K = 3): pi_beta = (.6, .4, 0, 0), Q = (.8, .4, q, q), so V = .64. The loss's
    minimiser is p = pi_beta Q + (1 - V - pi_beta (1 - Q)) / K = (.56, .20, .12, .12): the plain ratios .933 and .5
    overstate Q, and the max (.933) is not Q's best value (.8). Corrected: 1 - V = K p(O) / |O| = 3 * .24 / 2 = .36,
    Q(a0) = (3 * .56 - .36 + .6) / (4 * .6) = .8, Q(a1) = (3 * .2 - .36 + .4) / (4 * .4) = .4."""
    p_target = torch.tensor([[0.56, 0.20, 0.12, 0.12]])
    pi_beta = torch.tensor([[0.6, 0.4, 0.0, 0.0]])
    in_support = pi_beta > 0.1
    smoothing = SmoothingMass(torch.ones(1), 4)
    assert smoothing_corrected(p_target, pi_beta, in_support, smoothing)[0, :2].tolist() == pytest.approx([0.8, 0.4])
    args = (p_target.log(), pi_beta.log(), torch.zeros(1), torch.ones(1), 0.1)
    assert bellman_targets(*args).target.item() == pytest.approx(0.56 / 0.6)
    assert bellman_targets(*args, smoothing).target.item() == pytest.approx(0.8)


def test_extraction_keeps_only_the_behaviour_support():
    """Hand-computed: pi_beta = (0.6, 0.395, 0.005), p_theta = (0.2, 0.3, 0.5), beta = 2, eps = 0.01. The third
    token is outside the support, so it gets 0 even though its ratio 0.5 / 0.005 = 100 would dominate."""
    pb, pq = torch.tensor([0.6, 0.395, 0.005]), torch.tensor([0.2, 0.3, 0.5])
    got = extracted_log_probs(pb.log()[None], pq.log()[None], 2.0, ratio_form=True, support_eps=0.01).exp()[0]
    kept = torch.tensor([0.6 * math.exp(2 * 0.2 / 0.6), 0.395 * math.exp(2 * 0.3 / 0.395)])
    assert torch.allclose(got, torch.cat([kept / kept.sum(), torch.zeros(1)]), atol=1e-6)
    assert extracted_log_probs(pb.log()[None], pq.log()[None], 2.0, ratio_form=True).exp()[0, 2] > 0.99
    flat = torch.zeros(1, 200)  # every pi_beta = 0.005 <= eps: the most likely token still stays
    assert extracted_log_probs(flat, flat, 2.0, support_eps=0.01).exp().sum() == pytest.approx(1.0)
