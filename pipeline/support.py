"""Precompute pi_beta's support once (Ray Data batch inference) so a Q-SFT step needs no pi_beta forward.

For every agent token of every training row, store the BC model's top-k next-token log-probabilities at the
token's next state s'_i (`pipeline.losses.transitions` order). With k = floor(1/eps) this is exact: no more
than 1/eps tokens can have probability above eps, so `bellman_targets` sees the same support as the dense
computation. Cost: one forward pass over the data, instead of one per training step.

For the action-level backup (`pipeline.candidates`) the same pass also stores, at each bootstrapped turn end's
next state, every candidate's log pi_beta(a'_L | s', a'_<L) and log pi_beta(a'|s') (`behaviour_candidates`).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np
import torch

from pipeline.batches import observation_inputs, pad_rows
from pipeline.candidates import append_candidates, bootstrapped_turn_ends, candidate_log_probs
from pipeline.config import TrainConfig
from pipeline.losses import support_size_bound, transitions


class Support(NamedTuple):
    ids: torch.Tensor                           # (N, k) pi_beta's top-k at every agent token's next state ...
    log_probs: torch.Tensor                     # (N, k) ... in transition order
    candidates: torch.Tensor | None = None      # (M, K, 2) each candidate's last-token and action log-probs at
    #                                             the M bootstrapped turn ends' next states (transition order)
    candidate_rows: torch.Tensor | None = None  # (M,) the batch row of each of those states


@torch.no_grad()
def top_support(behaviour: torch.nn.Module, padded: dict[str, torch.Tensor], k: int,
                candidates: list[list[int]] = ()) -> Support:
    """pi_beta's top-k at every next state, and with `candidates` its scores of each one (`pipeline.candidates`)."""
    tr = transitions(padded["input_ids"], padded["action_mask"], padded["turn_end"], padded["rewards"],
                     padded["lengths"], padded["terminated"], gamma=1.0)
    if candidates:
        boot = bootstrapped_turn_ends(padded["turn_end"], tr)
        branches = append_candidates(padded["input_ids"], padded["lengths"], tr.row[boot], tr.next_state_pos[boot],
                                     candidates)
        log_p, last, action = candidate_log_probs(behaviour, branches, tr.row, tr.next_state_pos, len(candidates))
        top = log_p.topk(min(k, log_p.shape[-1]), dim=-1)
        return Support(top.indices, top.values, torch.stack([last, action], dim=-1), tr.row[boot])
    log_p = behaviour(padded["input_ids"], padded["attention_mask"], tr.row, tr.next_state_pos,
                      **observation_inputs(padded)).float().log_softmax(-1)
    top = log_p.topk(min(k, log_p.shape[-1]), dim=-1)
    return Support(top.indices, top.values)


class BehaviourSupport:
    """Ray Data callable class: adds `behaviour_ids`, `behaviour_logp` (flat, n_actions * k) and `support_k`;
    with `candidates`, `behaviour_candidates` (flat, n_bootstrapped_turn_ends * K * 2) and `support_candidates`."""

    def __init__(self, checkpoint: str, k: int, candidates: list[list[int]] = ()):
        from pipeline.models import TokenLogits, load_model, load_tokenizer

        torch.set_num_threads(1)
        self.behaviour = TokenLogits(load_model(checkpoint))
        self.pad_id = load_tokenizer(checkpoint).pad_token_id
        self.k, self.candidates = k, [list(c) for c in candidates]

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        padded = pad_rows(batch, self.pad_id)
        support = top_support(self.behaviour, padded, self.k, self.candidates)
        rows = len(padded["lengths"])
        counts = torch.bincount(padded["action_mask"].nonzero()[:, 0], minlength=rows).tolist()
        batch["behaviour_ids"] = [x.flatten().numpy() for x in support.ids.to(torch.int32).split(counts)]
        batch["behaviour_logp"] = [x.flatten().numpy().astype(np.float32) for x in support.log_probs.split(counts)]
        batch["support_k"] = np.full(rows, support.ids.shape[-1], dtype=np.int32)
        if support.candidates is not None:
            ends = torch.bincount(support.candidate_rows, minlength=rows).tolist()
            batch["behaviour_candidates"] = [x.flatten().numpy() for x in support.candidates.split(ends)]
            batch["support_candidates"] = np.full(rows, len(self.candidates), dtype=np.int32)
        return batch


@functools.lru_cache(maxsize=1)  # per Ray worker process: the model is loaded once, not per batch
def _loaded(checkpoint: str, k: int, candidates: tuple[tuple[int, ...], ...]) -> BehaviourSupport:
    return BehaviourSupport(checkpoint, k, candidates)


def support_batch(batch: dict[str, Any], checkpoint: str, k: int, candidates: list[list[int]]) -> dict[str, Any]:
    """`BehaviourSupport` as a Ray Data task function. (A callable class would run on Ray Data actors, which
    log a core_worker.cc error about their constructor arguments, ray-project/ray#57733.)"""
    return _loaded(checkpoint, k, tuple(map(tuple, candidates)))(batch)


def add_behaviour_support(rows, bc_checkpoint: str, cfg: TrainConfig, candidates: list[list[int]] = ()):
    """Map training rows (a Ray Dataset) through the BC model once."""
    return rows.map_batches(support_batch, fn_kwargs={"checkpoint": bc_checkpoint,
                                                      "k": support_size_bound(cfg.support_eps),
                                                      "candidates": list(candidates)},
                            batch_format="numpy", batch_size=32, num_cpus=1)
