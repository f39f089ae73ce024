"""Theorem 4.1 on tabular MDPs, with the project's own loss functions training a table of logits.

A layered MDP (horizon 3, rewards in [0, 1] only at the last layer, so every return lies in [0, 1]) with a
known full-support behaviour policy. Each outer iteration freezes a target table, builds Bellman targets
with `bellman_targets` for every (s, a, s'), and fits the logits to the expected `qsft_token_losses`
(weights pi_beta(a|s) P(s'|s, a)). At the fixed point the lower bound p(a|s) >= pi_beta(a|s) Q*(s, a) must
hold everywhere. The upper bound p <= Q* is not asserted: it can fail for tiny action sets (DESIGN.md).
"""

import numpy as np
import pytest
import torch

from pipeline.algorithm import (
    SmoothingMass,
    bellman_targets,
    qsft_token_losses,
    smoothing_corrected,
    with_lower_bound,
)
from pipeline.extraction import extracted_log_probs

GAMMA = 0.9


def layered_mdp(rng, widths=(1, 3, 3), actions=4):
    """States numbered layer by layer; P[s, a] over all states (zero outside the next layer); R[s, a]."""
    n = sum(widths)
    starts = np.cumsum((0,) + widths)
    P = np.zeros((n, actions, n))
    R = np.zeros((n, actions))
    for layer, width in enumerate(widths):
        for s in range(starts[layer], starts[layer] + width):
            if layer + 1 < len(widths):
                nxt = slice(starts[layer + 1], starts[layer + 2])
                P[s, :, nxt] = rng.dirichlet(np.ones(widths[layer + 1]), size=actions)
            else:
                R[s] = rng.uniform(0, 1, size=actions)
    behaviour = rng.dirichlet(np.ones(actions), size=n)
    return P, R, behaviour


def q_table(P, R, playable=None, policy=None):
    """Q* by value iteration; with `playable` (a bool mask of actions per state), Q of the best policy that plays
    only those actions; with `policy` (probabilities per state), Q of that policy."""
    Q = np.zeros_like(R)
    for _ in range(10):
        next_value = ((policy * Q).sum(axis=1) if policy is not None
                      else (Q if playable is None else np.where(playable, Q, -np.inf)).max(axis=1))
        Q = R + GAMMA * P @ next_value
    return Q


def fit_qsft_table(P, R, behaviour, iterations=4, inner_steps=300, support_eps=1e-9, smoothing_correction=False,
                   lower_bound=None):
    n, actions = R.shape
    logits = torch.zeros(n, actions, requires_grad=True)
    log_beta = torch.log(torch.tensor(behaviour, dtype=torch.float32))
    s_idx, a_idx, s2_idx = np.nonzero(P)
    terminal = [(s, a) for s in range(n) for a in range(actions) if P[s, a].sum() == 0]
    rows_s = torch.tensor(list(s_idx) + [s for s, _ in terminal])
    rows_a = torch.tensor(list(a_idx) + [a for _, a in terminal])
    rows_next = torch.tensor(list(s2_idx) + [0] * len(terminal))
    discount = torch.tensor([GAMMA] * len(s_idx) + [0.0] * len(terminal))
    weight = torch.tensor(list(behaviour[s_idx, a_idx] * P[s_idx, a_idx, s2_idx])
                          + [behaviour[s, a] for s, a in terminal], dtype=torch.float32)
    reward = torch.tensor(R, dtype=torch.float32)[rows_s, rows_a]
    for _ in range(iterations):
        frozen = logits.detach().clone()
        smoothing = SmoothingMass(torch.ones(len(rows_next)), actions) if smoothing_correction else None
        y = bellman_targets(torch.log_softmax(frozen[rows_next], -1), log_beta[rows_next], reward, discount,
                            support_eps, smoothing)
        if lower_bound is not None:
            y = with_lower_bound(y, torch.tensor(lower_bound, dtype=torch.float32)[rows_s, rows_a])
        y = y.target
        opt = torch.optim.Adam([logits], lr=0.1)
        for _ in range(inner_steps):
            loss = (weight * qsft_token_losses(logits[rows_s], rows_a, y)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return torch.softmax(logits.detach(), -1).numpy()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fixed_point_satisfies_the_lower_bound(seed):
    P, R, behaviour = layered_mdp(np.random.default_rng(seed))
    Q = q_table(P, R)
    p = fit_qsft_table(P, R, behaviour)
    assert np.all(p >= behaviour * Q - 2e-3), np.max(behaviour * Q - p)
    # and it is informative: not the trivial bound p = pi_beta * Q everywhere
    assert np.mean(p > behaviour * Q + 1e-2) > 0.3


def test_extraction_picks_the_rare_better_action_where_bc_follows_the_common_mistake():
    # s0 -a0-> s1 (the behaviour's common choice, 70%), s0 -a1-> s2 (29%); a2, a3 are rare (outside the
    # support) and also lead to s1. In s1 and s2 the behaviour plays a0 (97%), worth .3 in s1 and .95 in s2.
    P = np.zeros((3, 4, 3))
    P[0, [0, 2, 3], 1] = 1.0
    P[0, 1, 2] = 1.0
    R = np.zeros((3, 4))
    R[1] = [0.3, 0.1, 0.0, 0.0]
    R[2] = [0.95, 0.2, 0.0, 0.0]
    behaviour = np.array([[0.7, 0.29, 0.005, 0.005], [0.97, 0.01, 0.01, 0.01], [0.97, 0.01, 0.01, 0.01]])
    Q = q_table(P, R)
    assert Q[0].argmax() == 1
    p = fit_qsft_table(P, R, behaviour, iterations=3, inner_steps=400, support_eps=0.02)
    assert np.all(p >= behaviour * Q - 2e-3)
    policy = extracted_log_probs(torch.log(torch.tensor(behaviour)), torch.log(torch.tensor(p)), beta=16.0).exp()
    assert behaviour[0].argmax() == 0                 # BC (greedy) follows the common mistake
    assert policy[0].argmax().item() == 1             # the extracted policy takes the optimal action
    assert policy[0, 1] > 0.9


@pytest.mark.parametrize("seed", [0, 1])
def test_smoothing_corrected_fixed_point_is_the_support_optimal_q(seed):
    """With 6 actions of which the behaviour plays 3 (the others have pi_beta = 0, as far bins of a robot's
    action dimension nearly do), the corrected ratio read from the fitted table is Q of the best in-support
    policy at every (s, a) the behaviour plays, while the plain ratio p / pi_beta overstates it."""
    rng = np.random.default_rng(seed)
    P, R, _ = layered_mdp(rng, actions=6)
    behaviour = np.zeros((P.shape[0], 6))
    for s in range(P.shape[0]):
        played = rng.choice(6, size=3, replace=False)
        behaviour[s, played] = rng.dirichlet(np.ones(3))
    Q = q_table(P, R, playable=behaviour > 0)   # the best in-support policy's Q
    p = torch.tensor(fit_qsft_table(P, R, behaviour, iterations=4, inner_steps=400, support_eps=1e-6,
                                    smoothing_correction=True))
    pi_beta = torch.tensor(behaviour, dtype=torch.float32)
    played = pi_beta > 0
    corrected = smoothing_corrected(p, pi_beta, played, SmoothingMass(torch.ones(len(p)), 6)).numpy()
    assert np.abs(corrected - Q)[played.numpy()].max() < 2e-2
    plain = (p / pi_beta.clamp_min(1e-12)).numpy()
    assert np.mean((plain - Q)[played.numpy()]) > 0.05


def test_monte_carlo_lower_bound_keeps_the_fixed_point_and_reaches_it_sooner():
    """The expected return of the data from (s, a), Q^beta <= the support-optimal Q, as a lower bound on the targets
    (the tabular form of `returns_to_go` averaged over the data): after one backup the early layers already hold
    the behaviour's value instead of the initial table's, and the converged table is the same."""
    rng = np.random.default_rng(3)
    P, R, _ = layered_mdp(rng, widths=(1, 3, 3, 3), actions=6)
    behaviour = np.zeros((P.shape[0], 6))
    for s in range(P.shape[0]):
        behaviour[s, rng.choice(6, size=3, replace=False)] = rng.dirichlet(np.ones(3))
    Q = q_table(P, R, playable=behaviour > 0)
    returns = q_table(P, R, policy=behaviour)
    pi_beta = torch.tensor(behaviour, dtype=torch.float32)
    played = (pi_beta > 0).numpy()

    def error(iterations, lower_bound):
        p = torch.tensor(fit_qsft_table(P, R, behaviour, iterations=iterations, inner_steps=400, support_eps=1e-6,
                                        smoothing_correction=True, lower_bound=lower_bound))
        corrected = smoothing_corrected(p, pi_beta, pi_beta > 0, SmoothingMass(torch.ones(len(p)), 6)).numpy()
        return np.abs(corrected - Q)[played]

    assert np.all(returns[played] <= Q[played] + 1e-9)
    early_plain, early_bounded = error(1, None), error(1, returns)
    assert np.all(early_bounded <= (Q - returns)[played] + 2e-2)   # no further from Q than the data's own value
    assert early_bounded.mean() < 0.6 * early_plain.mean(), (early_bounded.mean(), early_plain.mean())
    assert error(5, returns).max() < 2e-2
