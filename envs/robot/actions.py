"""RT-1 style action tokens: each action dimension discretized into `num_bins` uniform bins.

Bin of a value a in [low, high]: b = min(floor((a - low) / w), num_bins - 1) with bin width
w = (high - low) / num_bins; decoding gives the bin centre low + (b + 1/2) w, so the round-trip error
is at most w / 2 per dimension. As in RT-1, every dimension shares one vocabulary of `num_bins` words
`<bin_{b}>` (the position of a word within the action says which dimension it is); text form: one word
per dimension separated by spaces, e.g. "<bin_17> <bin_3> <bin_255> <bin_1>". `vocabulary()` lists the
words in bin order, for building a tokenizer whose ids are contiguous in the bin.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"<bin_(\d+)>")


class ActionTokenizer:
    """Maps actions in a box [low, high]^action_dim to `action_dim` bin indices and back."""

    def __init__(self, num_bins: int = 256, action_dim: int = 4, low: float = -1.0, high: float = 1.0) -> None:
        if num_bins < 2 or action_dim < 1 or not low < high:
            raise ValueError(f"bad tokenizer: num_bins={num_bins}, action_dim={action_dim}, [{low}, {high}]")
        self.num_bins = num_bins
        self.action_dim = action_dim
        self.low = low
        self.high = high
        self.bin_width = (high - low) / num_bins

    def encode(self, action: Sequence[float] | np.ndarray) -> list[int]:
        """One bin index in [0, num_bins) per dimension; values outside [low, high] are clipped."""
        values = np.asarray(action, dtype=np.float64).reshape(-1)
        if values.shape[0] != self.action_dim:
            raise ValueError(f"expected {self.action_dim} action values, got {values.shape[0]}")
        scaled = (np.clip(np.nan_to_num(values), self.low, self.high) - self.low) / self.bin_width
        return [int(b) for b in np.minimum(np.floor(scaled), self.num_bins - 1)]

    def decode(self, tokens: Sequence[int]) -> np.ndarray:
        """The bin centres of `tokens` as a float32 action."""
        bins = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if bins.shape[0] != self.action_dim or (bins < 0).any() or (bins >= self.num_bins).any():
            raise ValueError(f"expected {self.action_dim} bins in [0, {self.num_bins}), got {list(tokens)}")
        return (self.low + (bins + 0.5) * self.bin_width).astype(np.float32)

    def to_text(self, tokens: Sequence[int]) -> str:
        self.decode(tokens)  # validates
        return " ".join(f"<bin_{int(b)}>" for b in tokens)

    def from_text(self, text: str) -> list[int]:
        """Bins of a text action; raises ValueError unless it is exactly `action_dim` words in order."""
        words = text.split()
        matches = [_WORD.fullmatch(word) for word in words]
        if len(words) != self.action_dim or not all(matches):
            raise ValueError(f"expected {self.action_dim} words like '<bin_17>', got {text!r}")
        tokens = [int(m.group(1)) for m in matches if m]
        self.decode(tokens)  # validates the range
        return tokens

    def vocabulary(self) -> list[str]:
        """Every action word, in bin order."""
        return [f"<bin_{b}>" for b in range(self.num_bins)]
