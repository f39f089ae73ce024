"""BC, Q-SFT and the baselines (filtered BC, ILQL, SPO), top to bottom: the indexing, the losses, one
training step, the target network and the learning-rate schedule. No Ray and no I/O: `pipeline.train` runs
`step_loss` in a Ray Train loop and only orchestrates.

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

Q-SFT's step (`step_loss`, stage "qsft"), per agent token i:

    y_i = clip(r_i + gamma_i (1 - done_i) max_{a' in supp pi_beta(.|s'_i)} p_target(a'|s'_i) / pi_beta(a'|s'_i), 0, 1)
    l_i = -[y_i log p_theta(a_i|s_i) + (1 - y_i) / (|A| - 1) sum_{a' in A, a' != a_i} log p_theta(a'|s_i)]

with pi_beta the frozen BC model, p_target a Polyak copy of p_theta (`update_target`), and A the action
vocabulary. With `backup = "action"` the max at a turn's last token runs over the next state's admissible
actions instead (`action_values`, `pipeline.candidates`). With `smoothing_correction` the ratio is read without
the (1 - y) / (|A| - 1) mass the loss spreads on every action (`smoothing_corrected`), which inflates it when A is a
few action bins.
With `mc_lower_bound` each y_i is raised to the data's own discounted return from token i (`returns_to_go`,
`with_lower_bound`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from pipeline.batches import observation_inputs
from pipeline.candidates import by_state, candidate_log_probs, state_branches
from pipeline.config import TrainConfig


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
    raised: torch.Tensor | None = None  # (N,) bool, the Monte Carlo lower bound replaced the target (`with_lower_bound`)


class SmoothingMass(NamedTuple):
    """What `bellman_targets` needs to take the smoothing mass out of p_target / pi_beta (`smoothing_corrected`)."""
    action_mass: torch.Tensor   # (N,) p_target's total probability on the action vocabulary A at s'_i
    vocab_size: int             # |A|


@torch.no_grad()
def bellman_targets(
    next_target_logp: torch.Tensor,
    next_pi_beta_logp: torch.Tensor,
    reward: torch.Tensor,
    discount: torch.Tensor,
    support_eps: float,
    smoothing: SmoothingMass | None = None,
) -> BellmanTargets:
    """Q-SFT's Bellman probability target (stop-gradient), in log space:

        y_i = clip( r_i + gamma_i (1 - done_i) * max_{a': pi_beta(a'|s'_i) > eps} p_target(a'|s'_i) / pi_beta(a'|s'_i), 0, 1 )

    with pi_beta evaluated at the NEXT state s'_i (not at s_i, as the authors' research code does).
    next_target_logp, next_pi_beta_logp: (N, K) log-probabilities of the same K candidate tokens a': the
    whole vocabulary, or pi_beta's top-k at s'_i, which loses nothing when k >= 1/eps (at most 1/eps
    tokens can have a probability above eps). With `smoothing`, the ratio is replaced by its
    label-smoothing-corrected form (`smoothing_corrected`).
    """
    in_support = next_pi_beta_logp > math.log(support_eps)
    if smoothing is None:
        log_ratio = torch.where(in_support, next_target_logp.float() - next_pi_beta_logp.float(),
                                torch.full_like(next_target_logp, -torch.inf, dtype=torch.float32))
        next_value = log_ratio.max(dim=-1).values.exp()  # exp(-inf) = 0 when the support is empty
    else:
        values = smoothing_corrected(next_target_logp.float().exp(), next_pi_beta_logp.float().exp(), in_support,
                                     smoothing)
        next_value = values.masked_fill(~in_support, -torch.inf).max(dim=-1).values.clamp_min(0.0)
    unclipped = reward + discount * next_value
    y = unclipped.clamp(0.0, 1.0)
    return BellmanTargets(y, in_support.sum(dim=-1), unclipped != y)


def smoothing_corrected(p_target: torch.Tensor, pi_beta: torch.Tensor, in_support: torch.Tensor,
                        smoothing: SmoothingMass) -> torch.Tensor:
    """Q(s, a) read from p_target without the label-smoothing mass that `qsft_token_losses` puts on every action.

    With data actions a_i ~ pi_beta(.|s) and targets y = Q(s, a_i), the loss's minimiser over A (K = |A| - 1) is

        p(a|s) = pi_beta(a|s) Q(s,a) + [ (1 - V(s)) - pi_beta(a|s) (1 - Q(s,a)) ] / K,   V(s) = sum_a pi_beta Q,

    so p / pi_beta = Q + (1 - V - pi_beta) / (K pi_beta) + Q / K: the ratio overstates Q by up to
    (1 - V) / (K eps) on the support, 0.36 for |A| = 15 bins, eps = 0.1, V = 0.5 (for a text vocabulary, K ~ 10^3,
    0.005). Inverted:

        Q(s,a) = [ K p(a|s) - (1 - V(s)) + pi_beta(a|s) ] / [ (K + 1) pi_beta(a|s) ]

    1 - V(s) is read off the actions outside the support O, where pi_beta ~ 0 leaves p(a|s) ~ (1 - V(s)) / K:
    1 - V ~ K p(O) / |O|, off by at most K pi_beta(O) / |O|. p_target, pi_beta: (N, C) probabilities of C
    candidate tokens holding the support (`in_support`); returns (N, C), meaningful on the support.
    """
    k = smoothing.vocab_size - 1
    outside = (smoothing.vocab_size - in_support.sum(dim=-1)).clamp_min(1)
    outside_mass = (smoothing.action_mass - (p_target * in_support).sum(dim=-1)).clamp_min(0.0)
    one_minus_v = (k * outside_mass / outside).clamp(0.0, 1.0)
    return (k * p_target - one_minus_v[:, None] + pi_beta) / ((k + 1) * pi_beta.clamp_min(1e-12))


def returns_to_go(tr: Transitions) -> torch.Tensor:
    """The data's own discounted return from each agent token to the end of its row, (N,):

        G_i = r_i + gamma_i (1 - done_i) G_{i+1},   G after a row's last transition = 0

    with the transitions' own discounts (`transitions`: gamma at turn ends, 1 inside an utterance). Unit rewards are
    non-negative, so a row cut before its episode's end only loses reward: G_i stays a lower bound of the return.
    """
    rewards, discounts, rows = tr.reward.tolist(), tr.discount.tolist(), tr.row.tolist()
    out, following = [0.0] * len(rows), 0.0
    for i in reversed(range(len(rows))):
        if i + 1 == len(rows) or rows[i + 1] != rows[i]:
            following = 0.0
        following = rewards[i] + discounts[i] * following
        out[i] = following
    return torch.tensor(out, dtype=torch.float32, device=tr.reward.device)


def with_lower_bound(y: BellmanTargets, lower: torch.Tensor) -> BellmanTargets:
    """Q-Transformer's Monte Carlo lower bound (Chebotar et al. 2023) on Q-SFT's targets: y_i <- max(y_i, G_i).

    In a deterministic environment, replaying the data's actions from s_i earns G_i again, so
    G_i <= Q*(s_i, a_i) for the best policy on pi_beta's support, and the bound leaves the fixed point where it is;
    what it changes is the speed: a sparse final reward reaches the first token of a long episode at once, not
    after one target-network backup per token. In a stochastic one G_i is a sample of Q^beta(s_i, a_i) <= Q*.
    """
    lower = lower.clamp(0.0, 1.0)
    return y._replace(target=torch.maximum(y.target, lower), raised=lower > y.target)


def action_support(pi_beta_action_logp: torch.Tensor, support_eps: float) -> torch.Tensor:
    """(M, K) bool: the candidates in pi_beta's support at each state, pi_beta(a'|s') / sum_c pi_beta(c|s') > eps,
    plus the most likely one, so that every state has one. Padding candidates carry log-probability -inf."""
    normalised = pi_beta_action_logp.float() - pi_beta_action_logp.float().logsumexp(-1, keepdim=True)
    return (normalised > math.log(support_eps)) | (normalised == normalised.max(-1, keepdim=True).values)


def action_values(target_last_logp: torch.Tensor, pi_beta_last_logp: torch.Tensor,
                  pi_beta_action_logp: torch.Tensor, support_eps: float) -> torch.Tensor:
    """The action-level next-state value of Q-SFT's backup (`pipeline.candidates`), for M states and K candidates:

        V(s') = max_{a' : pi_beta(a'|s') / sum_c pi_beta(c|s') > eps}  p_target(a'_L | s', a'_<L) / pi_beta(a'_L | s', a'_<L)

    target_last_logp, pi_beta_last_logp: (M, K) log-probabilities of each candidate's last token a'_L;
    pi_beta_action_logp: (M, K) log pi_beta(a'|s') = sum_t log pi_beta(a'_t | s', a'_<t), -inf where a state
    has fewer than K candidates (padding). The most likely candidate is always in the support, so V(s') is
    defined at every state with a candidate.
    """
    in_support = action_support(pi_beta_action_logp, support_eps)
    log_ratio = (target_last_logp.float() - pi_beta_last_logp.float()).masked_fill(~in_support, -torch.inf)
    return log_ratio.max(dim=-1).values.exp()


def support_size_bound(support_eps: float) -> int:
    """The most tokens that can have probability > eps: a top-k with this k holds the whole support."""
    return math.floor(1.0 / support_eps)


def label_smoothing_floor(action_vocab_size: int) -> float:
    """The most probability `qsft_token_losses` pushes onto each action token not taken:
    (1 - y) / (|A| - 1) <= 1 / (|A| - 1).

    A support threshold eps at or below it lets a rare token's p_target / pi_beta exceed 1 from smoothing
    alone, so the clipped Bellman targets saturate at 1.
    """
    return 1.0 / (action_vocab_size - 1)


def qsft_token_losses(action_logits: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor,
                      action_vocab: torch.Tensor | None = None) -> torch.Tensor:
    """Q-SFT's weighted cross-entropy with label smoothing, per agent token:

        l_i = -[ y_i log p(a_i|s_i) + (1 - y_i) / (|A| - 1) * sum_{a' in A, a' != a_i} log p(a'|s_i) ]

    A is the action vocabulary: the token ids an action can consist of (`action_vocab`, e.g. a pixel task's
    bin tokens: smoothing onto pad or observation tokens, which the policy never emits, would only waste the
    (1 - y) mass), or, when None, the whole output vocabulary, |A| = action_logits.shape[-1] (a text action
    may use any token). `label_smoothing_floor` takes the same |A|. The sum over the other tokens is
    sum_A log_softmax - log p(a_i): no one-hot or V-sized target tensor.
    """
    log_p = F.log_softmax(action_logits.float(), dim=-1)
    log_p_action = log_p.gather(-1, actions[:, None]).squeeze(-1)
    in_vocab = log_p if action_vocab is None else log_p.index_select(-1, action_vocab)
    log_p_others = in_vocab.sum(dim=-1) - log_p_action
    return -(targets * log_p_action + (1.0 - targets) / (in_vocab.shape[-1] - 1) * log_p_others)


# ------------------------------------------------------------------------------- the training step
def step_loss(cfg: TrainConfig, batch: dict[str, torch.Tensor], policy: torch.nn.Module,
              target: torch.nn.Module | None, pi_beta: torch.nn.Module | None,
              action_vocab: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """The stage's loss on one padded batch (`pipeline.batches`), and its diagnostics. `policy` is p_theta (or
    ILQL's Q and V heads), `target` its target network, `pi_beta` the frozen BC model (SPO's pi_0) where the
    batch does not carry pi_beta's precomputed support, `action_vocab` Q-SFT's smoothing vocabulary."""
    tr = transitions(batch["input_ids"], batch["action_mask"], batch["turn_end"], batch["rewards"],
                     batch["lengths"], batch["terminated"], cfg.gamma, cfg.per_token_discount)
    ids, attn, obs = batch["input_ids"], batch["attention_mask"], observation_inputs(batch)
    if cfg.stage == "ilql":
        return _ilql_loss(cfg, batch, tr, policy, target)
    logits = policy(ids, attn, tr.row, tr.state_pos, **obs)
    if cfg.stage in ("bc", "filtered_bc"):
        token_losses = bc_token_losses(logits, tr.action)
        return token_losses.mean(), {"tokens": tr.action.numel()}
    if cfg.stage == "spo":
        return _spo_loss(cfg, batch, tr, logits, pi_beta)
    if cfg.backup == "action":
        y = _action_backup_targets(cfg, batch, tr, target, pi_beta, action_vocab)
    else:
        with torch.no_grad():
            next_target = target(ids, attn, tr.row, tr.next_state_pos, **obs).float().log_softmax(-1)
            smoothing = smoothing_mass(cfg, next_target, action_vocab)
            next_target, next_pi_beta = _with_pi_beta(batch, next_target, lambda: pi_beta(
                ids, attn, tr.row, tr.next_state_pos, **obs).float().log_softmax(-1))
        y = bellman_targets(next_target, next_pi_beta, tr.reward, tr.discount, cfg.support_eps, smoothing)
    if cfg.mc_lower_bound:
        y = with_lower_bound(y, returns_to_go(tr))
    token_losses = qsft_token_losses(logits, tr.action, y.target, action_vocab)
    return token_losses.mean(), {
        "tokens": tr.action.numel(),
        "target_mean": y.target.mean().item(),
        **({"target_raised_frac": y.raised.float().mean().item()} if y.raised is not None else {}),
        "target_clipped_frac": y.clipped.float().mean().item(),
        "support_size": y.support_size.float().mean().item(),
        "p_action_mean": logits.float().softmax(-1).gather(-1, tr.action[:, None]).mean().item(),
    }


def smoothing_mass(cfg: TrainConfig, next_target_logp: torch.Tensor, action_vocab: torch.Tensor | None
                   ) -> SmoothingMass | None:
    """p_target's mass on the action vocabulary at every next state, when `cfg.smoothing_correction` asks for the
    corrected ratio (`smoothing_corrected`); next_target_logp: (N, V) over the whole output vocabulary."""
    if not cfg.smoothing_correction:
        return None
    in_vocab = next_target_logp if action_vocab is None else next_target_logp.index_select(-1, action_vocab)
    return SmoothingMass(in_vocab.exp().sum(dim=-1), in_vocab.shape[-1])


def _with_pi_beta(batch: dict[str, torch.Tensor], next_target: torch.Tensor, pi_beta_log_probs
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(p_target, pi_beta) log-probabilities at the next states over the same tokens: pi_beta's precomputed top-k
    (pipeline.support) with p_target gathered on it, or the full vocabulary from `pi_beta_log_probs()`."""
    if "pi_beta_logp" in batch:
        return next_target.gather(-1, batch["pi_beta_ids"]), batch["pi_beta_logp"]
    return next_target, pi_beta_log_probs()


@torch.no_grad()
def _action_backup_targets(cfg: TrainConfig, batch: dict[str, torch.Tensor], tr: Transitions,
                           target: torch.nn.Module, pi_beta: torch.nn.Module | None,
                           action_vocab: torch.Tensor | None) -> BellmanTargets:
    """Q-SFT's targets with the action-level next-state value (pipeline.candidates) at every turn's last token
    that bootstraps from a state with candidates (the batch's `candidate_*` columns); the tokens inside an
    utterance, and turn ends before a state with none, keep the token-level targets. One forward per model reads
    both: the batch's rows with each state's candidates branched after it. pi_beta's part comes from the batch
    where the support pass stored it (`pi_beta_candidates`), else from a forward. `smoothing_correction` applies to
    the token-level targets: at a candidate's last token pi_beta ~ 1, where the smoothing mass is negligible."""
    _, ranked, sizes, _, branches = state_branches(batch, tr, torch.bfloat16 if cfg.bf16 else torch.float32)
    next_target, target_last, _ = candidate_log_probs(target, branches, tr.row, tr.next_state_pos)
    smoothing = smoothing_mass(cfg, next_target, action_vocab)
    if "pi_beta_candidates" in batch:
        pi_beta_last, pi_beta_action = batch["pi_beta_candidates"].unbind(-1)
        next_target, next_pi_beta = _with_pi_beta(batch, next_target, None)
    else:
        next_pi_beta, pi_beta_last, pi_beta_action = candidate_log_probs(
            pi_beta, branches, tr.row, tr.next_state_pos)
    y = bellman_targets(next_target, next_pi_beta, tr.reward, tr.discount, cfg.support_eps, smoothing)
    if not sizes:
        return y
    value = action_values(by_state(target_last, sizes, 0.0), by_state(pi_beta_last, sizes, 0.0),
                          by_state(pi_beta_action, sizes, -torch.inf), cfg.support_eps)
    unclipped = y.target.clone()
    unclipped[ranked] = tr.reward[ranked] + tr.discount[ranked] * value
    target_values = unclipped.clamp(0.0, 1.0)
    support = y.support_size.clone()
    support[ranked] = torch.tensor(sizes, device=support.device, dtype=support.dtype)
    clipped = y.clipped.clone()
    clipped[ranked] = unclipped[ranked] != target_values[ranked]
    return BellmanTargets(target_values, support, clipped)


@torch.no_grad()
def update_target(target: torch.nn.Module, online: torch.nn.Module, cfg: TrainConfig, step: int) -> None:
    """Polyak: theta_target <- (1 - tau) theta_target + tau theta; or a hard copy every K steps."""
    if cfg.target_update == "polyak":
        for t, o in zip(target.parameters(), online.parameters()):
            t.lerp_(o, cfg.tau)
    elif step % cfg.hard_update_every == 0:
        target.load_state_dict(online.state_dict())


def learning_rate(cfg: TrainConfig, step: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 10%."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress))))


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


def _ilql_loss(cfg: TrainConfig, batch: dict[str, torch.Tensor], tr: Transitions, online: torch.nn.Module,
               target: torch.nn.Module) -> tuple[torch.Tensor, dict]:
    """ILQL: one backbone pass gives Q and V at s_i and V at s'_i; the target network gives Q_target at s_i."""
    ids, attn, obs = batch["input_ids"], batch["attention_mask"], observation_inputs(batch)
    n = tr.action.numel()
    q_values, values = online(ids, attn, torch.cat([tr.row, tr.row]), torch.cat([tr.state_pos, tr.next_state_pos]),
                              **obs)
    with torch.no_grad():
        target_q, _ = target(ids, attn, tr.row, tr.state_pos, **obs)
    parts = ilql_token_losses(q_values[:n], tr.action, target_q, values[:n], values[n:].detach(), tr.reward,
                                     tr.discount, cfg.tau_e)
    loss = (parts.q + parts.v + cfg.cql_weight * parts.cql).mean()
    return loss, {"tokens": n, "q_loss": parts.q.mean().item(), "v_loss": parts.v.mean().item(),
                  "cql": parts.cql.mean().item(), "v_mean": values[:n].mean().item()}


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


def _spo_loss(cfg: TrainConfig, batch: dict[str, torch.Tensor], tr: Transitions, logits: torch.Tensor,
              reference: torch.nn.Module) -> tuple[torch.Tensor, dict]:
    """SPO: Q-regression of the cumulative Q of pi_theta (`logits`) against pi_0 (`reference`) on the returns."""
    ids, attn, obs = batch["input_ids"], batch["attention_mask"], observation_inputs(batch)
    logp = -bc_token_losses(logits, tr.action)
    with torch.no_grad():
        reference_logp = -bc_token_losses(reference(ids, attn, tr.row, tr.state_pos, **obs), tr.action)
    q = cumulative_q(logp, reference_logp, tr.row, batch["q0"], cfg.spo_beta)
    ends_turn = batch["turn_end"][tr.row, tr.state_pos + 1]
    mask, returns = spo_targets(tr.reward, tr.row, ends_turn, cfg.spo_turn_targets)
    token_losses = spo_regression_losses(q[mask], returns[mask], cfg.spo_beta, cfg.spo_loss)
    return token_losses.mean(), {"tokens": tr.action.numel(), "targets": int(mask.sum()),
                                 "q_mean": q[mask].mean().item(), "return_mean": returns[mask].mean().item(),
                                 "log_ratio_mean": (logp - reference_logp).mean().item()}
