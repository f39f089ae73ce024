"""Precompute pi_beta's support once (Ray Data batch inference) so a Q-SFT step needs no pi_beta forward.

For every agent token of every training row, store the BC model's top-k next-token log-probabilities at the
token's next state s'_i (`pipeline.algorithm.transitions` order). With k = floor(1/eps) this is exact: no more
than 1/eps tokens can have probability above eps, so `bellman_targets` sees the same support as the dense
computation. Cost: one forward pass over the data, instead of one per training step.

For the action-level backup (`pipeline.candidates`) the same pass scores, at each bootstrapped turn end's next
state, every candidate's log pi_beta(a'_L | s', a'_<L) and log pi_beta(a'|s'), and keeps only the candidates in
pi_beta's support (`algorithm.action_support`): the row's candidate columns are rewritten to those, and their two
log-probs stored beside them (`pi_beta_candidates`). The support of the kept set is the kept set, so the
training step's value is the one over all candidates, and its target forward scores a few candidates, not all.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np
import torch

from pipeline.algorithm import action_support, support_size_bound, transitions
from pipeline.batches import CANDIDATE_COLUMNS, observation_inputs, pad_rows
from pipeline.candidates import by_state, candidate_columns, candidate_log_probs, state_branches
from pipeline.config import TrainConfig


class Support(NamedTuple):
    ids: torch.Tensor                                  # (N, k) pi_beta's top-k at every agent token's next state ...
    log_probs: torch.Tensor                            # (N, k) ... in transition order
    candidates: list[list[list[int]]] | None = None    # per bootstrapped turn end (transition order), the
    #                                                    candidates in pi_beta's support (token ids) ...
    candidate_log_probs: torch.Tensor | None = None    # (C, 2) ... and their last-token and action log-probs
    candidate_rows: torch.Tensor | None = None         # (M,) the batch row of each bootstrapped turn end


@torch.no_grad()
def top_support(pi_beta: torch.nn.Module, padded: dict[str, torch.Tensor], k: int, support_eps: float) -> Support:
    """pi_beta's top-k at every next state, and where the batch lists candidates, those in its support."""
    tr = transitions(padded["input_ids"], padded["action_mask"], padded["turn_end"], padded["rewards"],
                     padded["lengths"], padded["terminated"], gamma=1.0)
    if "candidate_counts" not in padded:
        log_p = pi_beta(padded["input_ids"], padded["attention_mask"], tr.row, tr.next_state_pos,
                          **observation_inputs(padded)).float().log_softmax(-1)
        top = log_p.topk(min(k, log_p.shape[-1]), dim=-1)
        return Support(top.indices, top.values)
    boot, _, sizes, per_state, branches = state_branches(padded, tr)
    log_p, last, action = candidate_log_probs(pi_beta, branches, tr.row, tr.next_state_pos)
    top = log_p.topk(min(k, log_p.shape[-1]), dim=-1)
    boot_rows = tr.row[boot]
    if not sizes:
        return Support(top.indices, top.values, per_state, action.new_zeros(0, 2), boot_rows)
    keep = action_support(by_state(action, sizes, -torch.inf), support_eps)
    keep = keep[by_state(torch.ones_like(action), sizes, 0.0).bool()]  # (C,) in candidate order
    flags = iter(keep.tolist())
    kept = [[c for c in state if next(flags)] for state in per_state]
    return Support(top.indices, top.values, kept, torch.stack([last, action], dim=-1)[keep], boot_rows)


class PiBetaSupport:
    """Ray Data callable class: adds `pi_beta_ids`, `pi_beta_logp` (flat, n_actions * k) and `support_k`;
    where rows list candidates, keeps those in pi_beta's support and adds `pi_beta_candidates` (flat, C * 2)."""

    def __init__(self, checkpoint: str, k: int, support_eps: float):
        from pipeline.models import TokenLogits, load_model, load_tokenizer

        torch.set_num_threads(1)
        self.pi_beta = TokenLogits(load_model(checkpoint))
        self.pad_id = load_tokenizer(checkpoint).pad_token_id
        self.k, self.support_eps = k, support_eps

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        padded = pad_rows(batch, self.pad_id)
        support = top_support(self.pi_beta, padded, self.k, self.support_eps)
        rows = len(padded["lengths"])
        counts = torch.bincount(padded["action_mask"].nonzero()[:, 0], minlength=rows).tolist()
        batch["pi_beta_ids"] = [x.flatten().numpy() for x in support.ids.to(torch.int32).split(counts)]
        batch["pi_beta_logp"] = [x.flatten().numpy().astype(np.float32) for x in support.log_probs.split(counts)]
        batch["support_k"] = np.full(rows, support.ids.shape[-1], dtype=np.int32)
        if support.candidates is not None:
            states = torch.bincount(support.candidate_rows, minlength=rows).tolist()
            columns = {key: [] for key in CANDIDATE_COLUMNS}
            scores, start, offset = [], 0, 0
            for n in states:
                row_states = support.candidates[start: start + n]
                for key, value in candidate_columns(row_states).items():
                    columns[key].append(value)
                size = sum(map(len, row_states))
                scores.append(support.candidate_log_probs[offset: offset + size].flatten().numpy())
                start, offset = start + n, offset + size
            batch.update(columns)
            batch["pi_beta_candidates"] = scores
        return batch


@functools.lru_cache(maxsize=1)  # per Ray worker process: the model is loaded once, not per batch
def _loaded(checkpoint: str, k: int, support_eps: float) -> PiBetaSupport:
    return PiBetaSupport(checkpoint, k, support_eps)


def support_batch(batch: dict[str, Any], checkpoint: str, k: int, support_eps: float) -> dict[str, Any]:
    """`PiBetaSupport` as a Ray Data task function. (A callable class would run on Ray Data actors, which
    log a core_worker.cc error about their constructor arguments, ray-project/ray#57733.)"""
    return _loaded(checkpoint, k, support_eps)(batch)


def add_pi_beta_support(rows, bc_checkpoint: str, cfg: TrainConfig):
    """Map training rows (a Ray Dataset) through the BC model once."""
    return rows.map_batches(support_batch, fn_kwargs={"checkpoint": bc_checkpoint,
                                                      "k": support_size_bound(cfg.support_eps),
                                                      "support_eps": cfg.support_eps},
                            batch_format="numpy", batch_size=32, num_cpus=1)
