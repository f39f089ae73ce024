"""BC and Q-SFT losses as pure tensor functions (no Ray, no I/O, no config objects).

The token-level MDP over a whole trajectory sequence `x` (Hong, Dragan, Levine 2024, Sec. 4):
for every agent token at position i, the action is a_i = x_i and the state is s_i = x_<i, so
p(a_i | s_i) is read from the logits at index i - 1. The next state s'_i is the prefix before the
next agent token j (j = i + 1 inside an utterance; the first token of the agent's next turn after an
environment reply, which may be empty), read at index j - 1. Turn ends come marked from tokenization
(`turn_end`), never inferred from j != i + 1. After the episode's last action the next state is the whole
sequence (read at index length - 1, i.e. after the final observation), which is bootstrapped from
only when the episode was truncated, never when it terminated.

`transitions()` does that indexing once; both losses consume its flat (N agent tokens) output, so the
training step only needs logits at `state_pos` (p_theta) and `next_state_pos` (target, pi_beta).
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
