"""BC, Q-SFT and the baselines' losses (filtered BC, ILQL, SPO) as pure tensor functions (no Ray, no I/O,
no config objects).

The token-level MDP over a whole trajectory sequence `x` (Hong, Dragan, Levine 2024, Sec. 4):
for every agent token at position i, the action is a_i = x_i and the state is s_i = x_<i, so
p(a_i | s_i) is read from the logits at index i - 1. The next state s'_i is the prefix before the
next agent token j (j = i + 1 inside an utterance; the first token of the agent's next turn after an
environment reply, which may be empty), read at index j - 1. Turn ends come marked from tokenization
(`turn_end`), never inferred from j != i + 1. After the episode's last action the next state is the whole
sequence (read at index length - 1, i.e. after the final observation), which is bootstrapped from
only when the episode was truncated, never when it terminated.

`transitions()` does that indexing once; every loss consumes its flat (N agent tokens) output, so the
training step only needs logits (or value heads) at `state_pos` and `next_state_pos`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Transitions:
    """The N agent-token transitions of a padded batch, flattened.

    row:            (N,) batch row of the transition
    state_pos:      (N,) logits index of s_i, i.e. i - 1
    action:         (N,) token id a_i
    next_state_pos: (N,) logits index of s'_i, i.e. j - 1 (length - 1 after the last action)
    reward:         (N,) unit reward r_i (non-zero only on the last token of an agent turn)
    discount:       (N,) gamma_i * (1 - done_i): the weight of the bootstrapped next-state value
    """

    row: torch.Tensor
    state_pos: torch.Tensor
    action: torch.Tensor
    next_state_pos: torch.Tensor
    reward: torch.Tensor
    discount: torch.Tensor


def transitions(
    input_ids: torch.Tensor,
    action_mask: torch.Tensor,
    turn_end: torch.Tensor,
    rewards: torch.Tensor,
    lengths: torch.Tensor,
    terminated: torch.Tensor,
    gamma: float,
    per_token_discount: bool = False,
) -> Transitions:
    """Index the agent-token transitions of a right-padded batch.

    input_ids, action_mask, turn_end, rewards: (B, L), turn_end marking the last agent token of each turn;
    lengths: (B,) real lengths; terminated: (B,) bool, True when the sequence ends with the episode's
    terminal action (no bootstrap after it).
    Discount gamma_i: per utterance (default) gamma_i = gamma where turn_end_i, else 1; per token,
    gamma_i = gamma at every agent token.
    """
    batch, length = input_ids.shape
    positions = torch.arange(length, device=input_ids.device).expand(batch, length)
    is_action = action_mask.bool() & (positions < lengths[:, None])
    if bool(is_action[:, 0].any()):
        raise ValueError("an agent token at position 0 has no state to condition on")

    # next_agent[b, i] = smallest agent position > i in row b, or lengths[b] if there is none.
    agent_or_end = torch.where(is_action, positions, lengths[:, None].expand(batch, length))
    suffix_min = agent_or_end.flip(1).cummin(1).values.flip(1)
    next_agent = torch.cat([suffix_min[:, 1:], lengths[:, None]], dim=1)

    row, pos = is_action.nonzero(as_tuple=True)
    nxt = next_agent[row, pos]
    is_last = nxt >= lengths[row]
    ends_turn = turn_end.bool()[row, pos]
    if not bool(ends_turn[is_last].all()):
        raise ValueError("a row's last agent token must be marked in turn_end (every turn ends)")
    step_gamma = torch.full_like(pos, 1, dtype=torch.float32)
    if per_token_discount:
        step_gamma.fill_(gamma)
    else:
        step_gamma[ends_turn] = gamma
    done = is_last & terminated.bool()[row]
    return Transitions(
        row=row,
        state_pos=pos - 1,
        action=input_ids[row, pos],
        next_state_pos=nxt - 1,
        reward=rewards[row, pos].float(),
        discount=step_gamma * (~done).float(),
    )


def bc_token_losses(action_logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Behavioural cloning: -log pi(a_i | s_i) for each agent token. action_logits: (N, V)."""
    return F.cross_entropy(action_logits.float(), actions, reduction="none")


class BellmanTargets(NamedTuple):
    target: torch.Tensor        # (N,) y_i in [0, 1]
    support_size: torch.Tensor  # (N,) |{a' : pi_beta(a'|s'_i) > eps}|
    clipped: torch.Tensor       # (N,) bool, the unclipped target lay outside [0, 1]


@torch.no_grad()
def bellman_targets(
    next_target_logp: torch.Tensor,
    next_behaviour_logp: torch.Tensor,
    reward: torch.Tensor,
    discount: torch.Tensor,
    support_eps: float,
) -> BellmanTargets:
    """Q-SFT's Bellman probability target (stop-gradient), in log space:

        y_i = clip( r_i + gamma_i (1 - done_i) * max_{a': pi_beta(a'|s'_i) > eps} p_target(a'|s'_i) / pi_beta(a'|s'_i), 0, 1 )

    with pi_beta evaluated at the NEXT state s'_i (not at s_i, as the authors' research code does).
    next_target_logp, next_behaviour_logp: (N, K) log-probabilities of the same K candidate tokens a': the
    whole vocabulary, or pi_beta's top-k at s'_i, which loses nothing when k >= 1/eps (at most 1/eps
    tokens can have a probability above eps).
    """
    in_support = next_behaviour_logp > math.log(support_eps)
    log_ratio = torch.where(in_support, next_target_logp.float() - next_behaviour_logp.float(),
                            torch.full_like(next_target_logp, -torch.inf, dtype=torch.float32))
    next_value = log_ratio.max(dim=-1).values.exp()  # exp(-inf) = 0 when the support is empty
    unclipped = reward + discount * next_value
    y = unclipped.clamp(0.0, 1.0)
    return BellmanTargets(y, in_support.sum(dim=-1), unclipped != y)


def action_support(behaviour_action_logp: torch.Tensor, support_eps: float) -> torch.Tensor:
    """(M, K) bool: the candidates in pi_beta's support at each state, pi_beta(a'|s') / sum_c pi_beta(c|s') > eps,
    plus the most likely one, so that every state has one. Padding candidates carry log-probability -inf."""
    normalised = behaviour_action_logp.float() - behaviour_action_logp.float().logsumexp(-1, keepdim=True)
    return (normalised > math.log(support_eps)) | (normalised == normalised.max(-1, keepdim=True).values)


def action_values(target_last_logp: torch.Tensor, behaviour_last_logp: torch.Tensor,
                  behaviour_action_logp: torch.Tensor, support_eps: float) -> torch.Tensor:
    """The action-level next-state value of Q-SFT's backup (`pipeline.candidates`), for M states and K candidates:

        V(s') = max_{a' : pi_beta(a'|s') / sum_c pi_beta(c|s') > eps}  p_target(a'_L | s', a'_<L) / pi_beta(a'_L | s', a'_<L)

    target_last_logp, behaviour_last_logp: (M, K) log-probabilities of each candidate's last token a'_L;
    behaviour_action_logp: (M, K) log pi_beta(a'|s') = sum_t log pi_beta(a'_t | s', a'_<t), -inf where a state
    has fewer than K candidates (padding). The most likely candidate is always in the support, so V(s') is
    defined at every state with a candidate.
    """
    in_support = action_support(behaviour_action_logp, support_eps)
    log_ratio = (target_last_logp.float() - behaviour_last_logp.float()).masked_fill(~in_support, -torch.inf)
    return log_ratio.max(dim=-1).values.exp()


def support_size_bound(support_eps: float) -> int:
    """The most tokens that can have probability > eps: a top-k with this k holds the whole support."""
    return math.floor(1.0 / support_eps)


def label_smoothing_floor(vocab_size: int) -> float:
    """The most probability `qsft_token_losses` pushes onto each token not taken: (1 - y) / (V - 1) <= 1 / (V - 1).

    A support threshold eps at or below it lets a rare token's p_target / pi_beta exceed 1 from smoothing
    alone, so the clipped Bellman targets saturate at 1.
    """
    return 1.0 / (vocab_size - 1)


def qsft_token_losses(action_logits: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Q-SFT's weighted cross-entropy with label smoothing, per agent token:

        l_i = -[ y_i log p(a_i|s_i) + (1 - y_i) / (V - 1) * sum_{a' != a_i} log p(a'|s_i) ]

    with V = action_logits.shape[-1], the model's output vocabulary (`label_smoothing_floor` needs the
    same V). The sum over other tokens is sum(log_softmax) - log p(a_i): no one-hot or V-sized target tensor.
    """
    log_p = F.log_softmax(action_logits.float(), dim=-1)
    vocab = log_p.shape[-1]
    log_p_action = log_p.gather(-1, actions[:, None]).squeeze(-1)
    log_p_others = log_p.sum(dim=-1) - log_p_action
    return -(targets * log_p_action + (1.0 - targets) / (vocab - 1) * log_p_others)


# ------------------------------------------------------------------------------------- filtered BC
def top_fraction_filter(returns: torch.Tensor, fraction: float) -> tuple[torch.Tensor, float]:
    """Filtered BC's episode selection (LMRL-Gym trains BC on the top 10, 30 or 50% of episodes):

        keep_e = [R_e >= R_(k)],   k = ceil(fraction * E),   R_(k) the k-th largest of the E returns

    returns: (E,). Episodes tied with R_(k) are all kept, so more than k may pass. Returns (keep (E,), R_(k)).
    """
    values = returns.double()
    k = max(1, math.ceil(fraction * values.numel()))
    threshold = values.topk(k).values[-1]
    return values >= threshold, float(threshold)


# --------------------------------------------------------------------------------------------- ILQL
class ILQLLosses(NamedTuple):
    q: torch.Tensor    # (N,) TD error
    v: torch.Tensor    # (N,) expectile regression of V on the target Q
    cql: torch.Tensor  # (N,) conservative term


def expectile_losses(diff: torch.Tensor, tau_e: float) -> torch.Tensor:
    """|tau_e - 1[u < 0]| * u^2 for u = diff: tau_e > 0.5 weighs under-estimates (u > 0) more."""
    weight = torch.where(diff < 0, 1.0 - tau_e, tau_e)
    return weight * diff.square()


def ilql_token_losses(q_values: torch.Tensor, actions: torch.Tensor, target_q_values: torch.Tensor,
                      value: torch.Tensor, next_value: torch.Tensor, reward: torch.Tensor, discount: torch.Tensor,
                      tau_e: float) -> ILQLLosses:
    """ILQL (Snell et al. 2022), token level, per agent token i (the `transitions` indexing):

        L_Q   = ( Q(s_i, a_i) - [r_i + gamma_i (1 - done_i) V(s'_i)] )^2        (V(s'_i) stop-gradient)
        L_V   = |tau_e - 1[u_i < 0]| u_i^2,   u_i = Q_target(s_i, a_i) - V(s_i)   (Q_target stop-gradient)
        L_CQL = log sum_a exp Q(s_i, a) - Q(s_i, a_i)

    q_values, target_q_values: (N, V) Q(s_i, .) of the online and the Polyak target network; value,
    next_value: (N,) V(s_i) and V(s'_i); `discount` is gamma_i (1 - done_i). The training loss is
    mean(L_Q + L_V + cql_weight * L_CQL).

    Variant: one Q head (no twin heads and min over them), V and Q heads on the same backbone, the target
    network a Polyak copy of backbone and Q head, per-utterance discount. LMRL-Gym's ILQL differs: twin Q
    heads with a min for V's target, and the CQL term on both heads.
    """
    q = q_values.float()
    q_taken = q.gather(-1, actions[:, None]).squeeze(-1)
    with torch.no_grad():
        target_taken = target_q_values.float().gather(-1, actions[:, None]).squeeze(-1)
        td_target = reward + discount * next_value.float()
    return ILQLLosses(q=(q_taken - td_target).square(),
                      v=expectile_losses(target_taken - value.float(), tau_e),
                      cql=torch.logsumexp(q, dim=-1) - q_taken)


# ---------------------------------------------------------------------------------------------- SPO
CROSS_ENTROPY_FLOOR = 1e-6  # the least success probability a return stands for (log 0 would be -inf)


def spo_initial_values(returns: torch.Tensor, groups: torch.Tensor, beta: float, loss: str,
                       min_episodes: int = 2) -> torch.Tensor:
    """SPO's Q0_hat for each episode: the soft value of its first state under pi_0, estimated from the
    returns of the dataset's episodes of the same instance (pi_0's samples):

        Q0_hat(x) = beta * log mean_{e : x_e = x} exp(g(R_e) / beta)
        g(R) = R                                (squared loss)
        g(R) = beta * log max(R, floor)         (cross-entropy: R in [0, 1] read as a success probability,
                                                 so Q0_hat = beta * log mean R, a log-probability)

    Fallback: an instance with fewer than `min_episodes` episodes gets the same soft value over all the
    dataset's episodes. returns: (E,) unit returns; groups: (E,) instance index. Returns (E,).
    """
    returns = returns.double()
    z = returns / beta if loss == "squared" else torch.log(returns.clamp_min(CROSS_ENTROPY_FLOOR))
    size = int(groups.max()) + 1
    peak = torch.full((size,), -torch.inf, dtype=z.dtype).scatter_reduce(0, groups, z, "amax")
    sums = torch.zeros(size, dtype=z.dtype).index_add(0, groups, (z - peak[groups]).exp())
    counts = torch.bincount(groups, minlength=size)
    per_group = beta * (peak + sums.log() - counts.log())
    overall = beta * (torch.logsumexp(z, 0) - math.log(z.numel()))
    return torch.where(counts[groups] >= min_episodes, per_group[groups], overall).float()


def cumulative_q(policy_logp: torch.Tensor, reference_logp: torch.Tensor, row: torch.Tensor,
                 q0: torch.Tensor, beta: float) -> torch.Tensor:
    """SPO's cumulative Q-parameterisation over each row's agent tokens (Cohen et al. 2025, Eq. 12):

        Q_i = Q0_hat[row_i] + sum_{k <= i, row_k = row_i} beta * (log pi_theta(a_k|s_k) - log pi_0(a_k|s_k))

    policy_logp, reference_logp: (N,) log-probabilities of the taken tokens in `transitions` order (rows
    ascending, positions ascending within a row); row: (N,); q0: (B,). Environment tokens are not actions and
    add nothing.
    """
    advantage = beta * (policy_logp.float() - reference_logp.float())
    running = advantage.cumsum(0)
    per_row = torch.zeros_like(q0, dtype=advantage.dtype).index_add(0, row, advantage)
    earlier_rows = per_row.cumsum(0) - per_row
    return q0.float()[row] + running - earlier_rows[row]


def spo_targets(reward: torch.Tensor, row: torch.Tensor, ends_turn: torch.Tensor, every_turn: bool
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Where SPO regresses Q, and on what: (mask (N,), R (N,)).

    R_b = sum_j r_j, the row's undiscounted unit return (SPO's soft values are of the whole return). The
    last agent token of a row is always a target (terminal Q-regression: Q_T -> R). With `every_turn`, per-turn
    rewards also enter as return-to-go targets at each turn's last token t_k (the paper's non-terminal
    Q-regression, with Monte Carlo targets): Q_{t_k} is the soft value of the whole return given the prefix,
    which holds the rewards of turns before k, so its target is their sum plus the return-to-go
    G_k = sum_{j >= k} r_j, which is R_b again. A truncated row's target is the return it collected.
    """
    size = int(row.max()) + 1 if row.numel() else 0
    returns = torch.zeros(size, dtype=torch.float32, device=reward.device).index_add(0, row, reward.float())
    is_last = torch.ones_like(row, dtype=torch.bool)
    is_last[:-1] = row[1:] != row[:-1]
    return (ends_turn.bool() | is_last) if every_turn else is_last, returns[row]


def spo_regression_losses(q: torch.Tensor, target: torch.Tensor, beta: float, loss: str) -> torch.Tensor:
    """SPO's Q-regression of the predictions Q (M,) on the returns R (M,), per prediction:

        squared:        (Q - R)^2
        cross_entropy:  x relu(-y) - (1 - x) log(1 - exp(min(y, -eps))),   y = Q / beta,  x = R in [0, 1]

    the paper's clipped binary cross-entropy of the log-probability y (the clip passes y's gradient
    straight through; relu(-y) removes any pull of y above 0).
    """
    if loss == "squared":
        return (q - target).square()
    y = q / beta
    clipped = y + (y.clamp(max=-CROSS_ENTROPY_FLOOR) - y).detach()
    return target * F.relu(-y) - (1.0 - target) * torch.log(-torch.expm1(clipped))
