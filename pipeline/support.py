"""Precompute pi_beta's support once (Ray Data batch inference) so a Q-SFT step needs no pi_beta forward.

For every agent token of every training row, store the BC model's top-k next-token log-probabilities at the
token's next state s'_i (`pipeline.losses.transitions` order). With k = floor(1/eps) this is exact: no more
than 1/eps tokens can have probability above eps, so `bellman_targets` sees the same support as the dense
computation. Cost: one forward pass over the data, instead of one per training step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pipeline.batches import observation_inputs, pad_rows
from pipeline.config import TrainConfig
from pipeline.losses import support_size_bound, transitions


@torch.no_grad()
def top_support(behaviour: torch.nn.Module, padded: dict[str, torch.Tensor], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, log-probs), each (N, k): pi_beta's top-k at every agent token's next state, transition order."""
    tr = transitions(padded["input_ids"], padded["action_mask"], padded["turn_end"], padded["rewards"],
                     padded["lengths"], padded["terminated"], gamma=1.0)
    logits = behaviour(padded["input_ids"], padded["attention_mask"], tr.row, tr.next_state_pos,
                       **observation_inputs(padded))
    top = logits.float().log_softmax(-1).topk(min(k, logits.shape[-1]), dim=-1)
    return top.indices, top.values


class BehaviourSupport:
    """Ray Data callable class: adds `behaviour_ids`, `behaviour_logp` (flat, n_actions * k) and `support_k`."""

    def __init__(self, checkpoint: str, k: int):
        from pipeline.models import TokenLogits, load_model, load_tokenizer

        torch.set_num_threads(1)
        self.behaviour = TokenLogits(load_model(checkpoint))
        self.pad_id = load_tokenizer(checkpoint).pad_token_id
        self.k = k

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        padded = pad_rows(batch, self.pad_id)
        ids, logp = top_support(self.behaviour, padded, self.k)
        rows = len(padded["lengths"])
        counts = torch.bincount(padded["action_mask"].nonzero()[:, 0], minlength=rows).tolist()
        batch["behaviour_ids"] = [x.flatten().numpy() for x in ids.to(torch.int32).split(counts)]
        batch["behaviour_logp"] = [x.flatten().numpy().astype(np.float32) for x in logp.split(counts)]
        batch["support_k"] = np.full(rows, ids.shape[-1], dtype=np.int32)
        return batch


def add_behaviour_support(rows, bc_checkpoint: str, cfg: TrainConfig):
    """Map training rows (a Ray Dataset) through the BC model once."""
    return rows.map_batches(BehaviourSupport, fn_constructor_kwargs={"checkpoint": bc_checkpoint,
                                                                     "k": support_size_bound(cfg.support_eps)},
                            batch_format="numpy", batch_size=32, concurrency=1, num_cpus=1)
