"""Training batches: right-padded tensors from variable-length token rows (text, pixel, pi_beta-support, action
candidate and SPO Q0_hat columns).

Shared by the training loop (`pipeline.train`) and pi_beta's support pass (`pipeline.support`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

CANDIDATE_COLUMNS = ("candidate_counts", "candidate_lengths", "candidate_tokens")


class PadBatch:
    """Right-pad a numpy batch of variable-length rows into tensors (Ray Data collate function)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return pad_rows(batch, self.pad_id)


def pad_rows(batch: dict[str, Any], pad_id: int) -> dict[str, torch.Tensor]:
    lengths = [len(x) for x in batch["input_ids"]]
    width = max(lengths)

    def pad(column: str, value: float, dtype: torch.dtype) -> torch.Tensor:
        out = torch.full((len(lengths), width), value, dtype=dtype)
        for i, row in enumerate(batch[column]):
            out[i, : len(row)] = torch.as_tensor(np.asarray(row), dtype=dtype)
        return out

    input_ids = pad("input_ids", pad_id, torch.long)
    length = torch.as_tensor(lengths)
    observations = {}
    if "obs_images" in batch:  # pixel tasks: one image and proprio row per <|obs|> token, packed in order
        images = np.concatenate(list(batch["obs_images"]))
        proprio = np.concatenate(list(batch["obs_proprio"])).astype(np.float32)
        observations = {"images": torch.from_numpy(images),
                        "proprio": torch.from_numpy(proprio).view(len(images), -1)}
    support = {}
    if "pi_beta_ids" in batch:  # pi_beta's top-k per agent token, flat per row, in transition order
        k = int(batch["support_k"][0])
        support = {"pi_beta_ids": torch.as_tensor(np.concatenate(list(batch["pi_beta_ids"]))).long().view(-1, k),
                   "pi_beta_logp": torch.as_tensor(np.concatenate(list(batch["pi_beta_logp"]))).view(-1, k)}
    if "pi_beta_candidates" in batch:  # per candidate, in order: pi_beta's last-token and action log-probs
        support["pi_beta_candidates"] = torch.as_tensor(np.concatenate(list(batch["pi_beta_candidates"]))).view(-1, 2)
    if "q0" in batch:  # SPO's Q0_hat per row (pipeline.train.with_initial_values)
        support["q0"] = torch.as_tensor(np.asarray(batch["q0"], dtype=np.float32))
    candidates = {key: torch.as_tensor(np.concatenate([np.asarray(row, dtype=np.int64) for row in batch[key]]))
                  for key in CANDIDATE_COLUMNS if key in batch}  # pipeline.candidates, rows concatenated in order
    return {**support, **observations, **candidates,
        "input_ids": input_ids,
        "attention_mask": (torch.arange(width)[None, :] < length[:, None]).long(),
        "action_mask": pad("action_mask", 0, torch.long),
        "turn_end": pad("turn_end", 0, torch.long),
        "rewards": pad("rewards", 0.0, torch.float32),
        "lengths": length,
        "terminated": torch.as_tensor(np.asarray(batch["terminated"], dtype=bool)),
    }


def observation_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The packed images and proprioception a pixel model reads beside the ids (empty for text)."""
    return {key: batch[key] for key in ("images", "proprio") if key in batch}
