"""Q-SFT's action-level backup: each next state's admissible actions scored after it, for a whole training batch.

In Q-SFT's token-level MDP an utterance carries no reward and no discount until its last token, so the value of
a whole action a' at a state s' is the ratio at its last token a'_L (`<|eot|>`), where pi_beta(a'_L | s', a'_<L)
~ 1 and the ratio is p_target itself. The token-level backup instead maximises the ratio at the first tokens of
s', dividing by pi_beta's small and imprecise probability of each action's first token. For a task that lists
the admissible actions A(s') at each state (`info["admissible_actions"]`, kept in the data's step infos), the
action-level backup reads the value at the last tokens:

    V(s') = max_{a' in A(s') : pi_beta(a'|s') / sum_{c in A(s')} pi_beta(c|s') > eps}
                p_target(a'_L | s', a'_<L) / pi_beta(a'_L | s', a'_<L)

with pi_beta(a'|s') = prod_t pi_beta(a'_t | s', a'_<t) (`pipeline.algorithm.action_values`). The same operator in
exact arithmetic; read where the model is precise. A state that lists no rankable action (WebShop's search page
offers only the template "search[...]") keeps the token-level value.

Each training row carries, per bootstrapped turn end in order, its next state's candidates as token ids
(`candidate_columns`: `candidate_counts`, `candidate_lengths`, `candidate_tokens`). `append_candidates` builds
the batch: each row's sequence, then, for each of its next states, every candidate's tokens a'_<L as a branch
that attends to the prefix up to that state and to itself only (a 4-D additive mask and explicit position ids),
so one forward per model scores them all (`candidate_log_probs`). pi_beta's part is fixed, so the support pass
(`pipeline.support`) computes it once over the data and keeps only the candidates in its support.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch


def is_template(action: str) -> bool:
    """An admissible "action" the policy must write itself, such as WebShop's "search[...]"."""
    return action.endswith("[...]")


def rankable(actions: Sequence[str]) -> list[str]:
    """The admissible actions that are whole actions (templates are written, not ranked)."""
    return [a for a in actions if not is_template(a)]


def candidate_columns(per_state: Sequence[Sequence[Sequence[int]]]) -> dict[str, np.ndarray]:
    """A row's candidates, one list of token-id lists per bootstrapped turn end, as three flat int32 columns."""
    lists = [c for state in per_state for c in state]
    return {"candidate_counts": np.asarray([len(state) for state in per_state], dtype=np.int32),
            "candidate_lengths": np.asarray([len(c) for c in lists], dtype=np.int32),
            "candidate_tokens": np.asarray([t for c in lists for t in c], dtype=np.int32)}


def split_candidates(counts: Sequence[int], lengths: Sequence[int], tokens: Sequence[int]) -> list[list[list[int]]]:
    """The inverse of `candidate_columns`: per state, its candidates' token ids."""
    out, c, t = [], 0, 0
    for count in counts:
        state = []
        for length in lengths[c: c + count]:
            state.append([int(x) for x in tokens[t: t + length]])
            t += length
        out.append(state)
        c += count
    return out


def batch_candidates(batch: dict[str, Any]) -> list[list[list[int]]]:
    """Per bootstrapped turn end of a padded batch (transition order: row by row), its candidates' token ids."""
    return split_candidates(batch["candidate_counts"].tolist(), batch["candidate_lengths"].tolist(),
                            batch["candidate_tokens"].tolist())


class StateBranches(NamedTuple):
    boot: torch.Tensor       # the transitions that are bootstrapped turn ends
    ranked: torch.Tensor     # (M,) those of them whose next state lists candidates
    sizes: list[int]         # (M,) how many candidates each of those states lists
    per_state: list[list[list[int]]]  # per bootstrapped turn end (transition order), its candidates' token ids
    branches: Branches       # the batch with every candidate branched after its state


def state_branches(batch: dict[str, Any], tr, dtype: torch.dtype = torch.float32) -> StateBranches:
    """The batch's rows with each bootstrapped turn end's next-state candidates (its `candidate_*` columns)
    branched after that state; the states that list none are left out."""
    boot = bootstrapped_turn_ends(batch["turn_end"], tr).nonzero()[:, 0]
    per_state = batch_candidates(batch)
    if len(per_state) != len(boot):
        raise ValueError(f"the batch lists candidates for {len(per_state)} next states but has {len(boot)} "
                         "bootstrapped turn ends; tokenize the data again")
    listed = [c for c in per_state if c]
    ranked = boot[torch.tensor([bool(c) for c in per_state], dtype=torch.bool)]
    branches = append_candidates(batch["input_ids"], batch["lengths"], tr.row[ranked], tr.next_state_pos[ranked],
                                 listed, dtype)
    return StateBranches(boot, ranked, [len(c) for c in listed], per_state, branches)


def bootstrapped_turn_ends(turn_end: torch.Tensor, tr) -> torch.Tensor:
    """(N,) bool over `Transitions`: the agent tokens that end a turn and bootstrap from a next state (the
    states whose value the action-level backup reads)."""
    return turn_end[tr.row, tr.state_pos + 1].bool() & (tr.discount > 0)


class Branches(NamedTuple):
    input_ids: torch.Tensor       # (B, L + W): each row, then its branches (padded to W)
    attention_mask: torch.Tensor  # (B, 1, L + W, L + W) additive
    position_ids: torch.Tensor    # (B, L + W)
    rows: torch.Tensor            # (T,) where each candidate token a'_t is predicted: batch row ...
    positions: torch.Tensor       # (T,) ... and sequence index
    tokens: torch.Tensor          # (T,) the candidate token a'_t
    owner: torch.Tensor           # (T,) index of the candidate the token belongs to (all states' candidates in order)
    last: torch.Tensor            # (C,) index into the T tokens of each candidate's last token a'_L


def append_candidates(input_ids: torch.Tensor, lengths: torch.Tensor, rows: torch.Tensor, states: torch.Tensor,
                      candidates: Sequence[Sequence[Sequence[int]]], dtype: torch.dtype = torch.float32) -> Branches:
    """Branches of each of the M next states' `candidates` (per state, token-id lists, each ending with its last
    token a'_L) after that state (`rows`, `states`: the index of the state's last token s', as in
    `Transitions.next_state_pos`).

    input_ids: (B, L) right-padded, lengths: (B,). A branch token at sequence position p + 1 + t (p = the state
    index) attends to the row's tokens 0..p and to its own branch's earlier tokens; the rows' own tokens keep
    the causal mask over their real length. Padding (token 0) attends to itself only, and nothing reads it.
    """
    batch, length = input_ids.shape
    device = input_ids.device
    blocks: list[list[int]] = [[] for _ in range(batch)]       # branch tokens per row
    block_pos: list[list[int]] = [[] for _ in range(batch)]    # their position ids
    block_state: list[list[int]] = [[] for _ in range(batch)]  # the state index each one sees up to
    block_group: list[list[int]] = [[] for _ in range(batch)]  # its branch, unique in the row
    read_rows, read_pos, tokens, owner, last = [], [], [], [], []
    branch_count = [0] * batch
    for b, p, state_candidates in zip(rows.tolist(), states.tolist(), candidates):
        for candidate in state_candidates:
            group, branch_count[b] = branch_count[b], branch_count[b] + 1
            start = length + len(blocks[b])
            for t, token in enumerate(candidate):
                read_rows.append(b)
                read_pos.append(p if t == 0 else start + t - 1)
                tokens.append(token)
                owner.append(len(last))
            last.append(len(tokens) - 1)
            prefix = candidate[:-1]
            blocks[b] += prefix
            block_pos[b] += list(range(p + 1, p + 1 + len(prefix)))
            block_state[b] += [p] * len(prefix)
            block_group[b] += [group] * len(prefix)
    width = max(map(len, blocks), default=0)
    total = length + width

    ids = torch.zeros((batch, total), dtype=torch.long, device=device)
    ids[:, :length] = input_ids
    position_ids = torch.arange(total, device=device).repeat(batch, 1)
    state = torch.full((batch, width), -1, dtype=torch.long)
    group = torch.full((batch, width), -1, dtype=torch.long)
    for b in range(batch):
        n = len(blocks[b])
        if n:
            ids[b, length: length + n] = torch.tensor(blocks[b], device=device)
            position_ids[b, length: length + n] = torch.tensor(block_pos[b], device=device)
            state[b, :n], group[b, :n] = torch.tensor(block_state[b]), torch.tensor(block_group[b])
    state, group = state.to(device), group.to(device)

    keys = torch.arange(length, device=device)
    real = keys[None, :] < lengths[:, None]                                             # (B, L)
    own = torch.tril(torch.ones(length, length, dtype=torch.bool, device=device))[None] & real[:, None, :]
    prefix = (keys[None, None, :] <= state[:, :, None]) & (state[:, :, None] >= 0)      # (B, W, L)
    causal = torch.tril(torch.ones(width, width, dtype=torch.bool, device=device))
    same = (group[:, :, None] == group[:, None, :]) & causal & (group[:, :, None] >= 0)  # (B, W, W)
    allowed = torch.zeros(batch, total, total, dtype=torch.bool, device=device)
    allowed[:, :length, :length] = own
    allowed[:, length:, :length] = prefix
    allowed[:, length:, length:] = same
    allowed |= torch.eye(total, dtype=torch.bool, device=device)  # padding attends to itself: no empty rows
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)

    def tensor(values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    return Branches(ids, mask[:, None], position_ids, tensor(read_rows), tensor(read_pos), tensor(tokens),
                    tensor(owner), tensor(last))


def trie(candidates: Sequence[Sequence[int]]) -> dict[tuple[int, ...], list[int]]:
    """Each prefix of the candidates -> the distinct tokens that continue it among them (its trie node's
    children): the tokens constrained decoding may choose after that prefix."""
    children: dict[tuple[int, ...], list[int]] = {}
    for candidate in candidates:
        for t, token in enumerate(candidate):
            node = children.setdefault(tuple(candidate[:t]), [])
            if token not in node:
                node.append(token)
    return children


def continuations(candidates: Sequence[Sequence[int]]) -> list[list[int]]:
    """For each token of each candidate in turn, the `trie` children of its prefix."""
    children = trie(candidates)
    return [children[tuple(candidate[:t])] for candidate in candidates for t in range(len(candidate))]


def constrained_log_probs(log_p: torch.Tensor, tokens: torch.Tensor, allowed: Sequence[Sequence[int]]
                          ) -> torch.Tensor:
    """Each token's log-probability renormalised over the tokens that continue an admissible action there:

        log pi_c(a_t | s, a_<t) = log pi(a_t | s, a_<t) - log sum_{v in allowed_t} pi(v | s, a_<t)

    log_p: (T, V) log pi(. | s, a_<t) at each candidate token; tokens: (T,); allowed: per token, its
    `continuations`. Summed over a candidate this is the probability that token-by-token decoding restricted
    to the candidates (constrained decoding) writes it; over one state's candidates these sum to 1.
    """
    width = max(map(len, allowed), default=1)
    index = torch.tensor([list(a) + [a[0]] * (width - len(a)) for a in allowed], dtype=torch.long,
                         device=log_p.device)
    real = torch.tensor([[True] * len(a) + [False] * (width - len(a)) for a in allowed], device=log_p.device)
    norm = log_p.gather(-1, index).masked_fill(~real, -torch.inf).logsumexp(-1)
    return log_p.gather(-1, tokens[:, None])[:, 0] - norm


def candidate_log_probs(model: torch.nn.Module, branches: Branches, rows: torch.Tensor, states: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward over `branches`: (log p(.|s) at each of the rows' positions (`rows`, `states`): (N, V);
    log p(a'_L | s', a'_<L) of each candidate's last token: (C,); log p(a'|s') = sum_t log p(a'_t | s', a'_<t):
    (C,)), for the C candidates of all the states the branches were built for, in order."""
    n = len(rows)
    log_p = model(branches.input_ids, branches.attention_mask, torch.cat([rows, branches.rows]),
                  torch.cat([states, branches.positions]), position_ids=branches.position_ids).float().log_softmax(-1)
    token = log_p[n:].gather(-1, branches.tokens[:, None])[:, 0]
    action = torch.zeros(len(branches.last), device=token.device).index_add_(0, branches.owner, token)
    return log_p[:n], token[branches.last], action


def by_state(values: torch.Tensor, counts: Sequence[int], fill: float) -> torch.Tensor:
    """Flat per-candidate values (C,) as (M, K_max), one row per state, padded with `fill`."""
    width = max(counts, default=0)
    out = values.new_full((len(counts), width), fill)
    index = torch.tensor([m * width + k for m, count in enumerate(counts) for k in range(count)],
                         dtype=torch.long, device=values.device)
    return out.view(-1).index_copy(0, index, values).view(len(counts), width)
