"""A Llama-shaped causal LM with a pointer (copy) head, for text tasks trained from scratch.

The next token's probability mixes the vocabulary softmax with attention over the context's own tokens
(the pointer-generator of See, Liu and Manning 2017):

    p(v | x_<=t) = g_t * softmax(W h_t)_v + (1 - g_t) * sum_{j <= t, x_j = v} alpha_tj
    alpha_t = softmax_j(q(h_t) . k(h_j) / sqrt(d)),   g_t = sigmoid(w . h_t + b)

h the final hidden states, j over the positions t may attend to. Copying a word of the instruction into a
search query, or an object's name into a command, is then one learned attention instead of an induction
circuit that a small model trained from scratch forms only after far more steps (benchmarks/LEARNING.md,
"A pointer head"). `logits` are log p, so every consumer (BC's cross-entropy, Q-SFT's p_theta, the
extraction) reads the mixture through its usual log-softmax unchanged. With a KV cache the pointer's keys
and their token ids are one more cache layer after the transformer's, so `pipeline.policy` carries them
like any other layer.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
from transformers.cache_utils import DynamicLayer
from transformers.modeling_outputs import CausalLMOutputWithPast


class PointerLlamaConfig(LlamaConfig):
    model_type = "pointer_llama"

    def __init__(self, pointer_dim: int = 64, **kwargs):
        self.pointer_dim = pointer_dim
        super().__init__(**kwargs)


class PointerHead(nn.Module):
    """The mixture above, from hidden states: queries at the predicting positions, keys at the sources."""

    def __init__(self, hidden_size: int, dim: int):
        super().__init__()
        self.query = nn.Linear(hidden_size, dim)
        self.key = nn.Linear(hidden_size, dim)
        self.gate = nn.Linear(hidden_size, 1)

    def attention(self, hidden: torch.Tensor, keys: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """alpha (B, Q, K) of queries `hidden` (B, Q, H) over `keys` (B, K, d), `visible` (B, Q, K) bool."""
        scores = self.query(hidden).float() @ keys.float().transpose(1, 2) / math.sqrt(keys.shape[-1])
        return scores.masked_fill(~visible, -torch.inf).softmax(-1).nan_to_num(0.0)

    def mix(self, hidden: torch.Tensor, alpha: torch.Tensor, sources: torch.Tensor,
            vocab_logits: torch.Tensor) -> torch.Tensor:
        """log p (..., V): `hidden` (..., H), `alpha` and the keys' token ids `sources` (..., K), `vocab_logits`
        (..., V), all with the same leading dimensions."""
        copy = torch.zeros(vocab_logits.shape, dtype=alpha.dtype, device=alpha.device).scatter_add_(-1, sources, alpha)
        gate = torch.sigmoid(self.gate(hidden).float())
        mixture = gate * vocab_logits.float().softmax(-1) + (1 - gate) * copy
        return mixture.clamp_min(torch.finfo(mixture.dtype).tiny).log()


def visibility(attention_mask: torch.Tensor | None, batch: int, queries: int, keys: int,
               device: torch.device) -> torch.Tensor:
    """(B, Q, K) bool: which of K positions each of the last Q may point to. A 4-D additive mask (B, 1, Q, K)
    as `pipeline.policy.block_mask` and `pipeline.candidates` build it says so itself; a (B, K) padding mask
    (or none) is made causal."""
    if attention_mask is not None and attention_mask.dim() == 4:
        mask = attention_mask[:, 0]
        return mask if mask.dtype == torch.bool else mask > torch.finfo(mask.dtype).min / 2
    causal = (torch.arange(keys, device=device)[None, :]
              <= torch.arange(keys - queries, keys, device=device)[:, None])[None].expand(batch, -1, -1)
    if attention_mask is None:
        return causal
    return causal & attention_mask[:, None, -keys:].bool()


class PointerLlamaForCausalLM(LlamaForCausalLM):
    config_class = PointerLlamaConfig

    def __init__(self, config: PointerLlamaConfig):
        super().__init__(config)
        self.pointer = PointerHead(config.hidden_size, config.pointer_dim)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """Llama's init, except the pointer, which keeps PyTorch's fan-in init: with N(0, 0.02) queries and keys
        the scores start at ~1e-4 and their gradients (each proportional to the other) with them."""
        if any(module is m for m in getattr(self, "pointer", nn.Module()).modules()):
            return
        super()._init_weights(module)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, cache=None, use_cache: bool | None = None,
                labels: torch.Tensor | None = None, **kwargs) -> CausalLMOutputWithPast:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                         use_cache=use_cache, **kwargs)
        hidden = out.last_hidden_state
        keys, sources = self.pointer.key(hidden), input_ids
        if out.cache is not None:  # the pointer's keys and token ids: one more cache layer
            layer = self.config.num_hidden_layers
            while len(out.cache.layers) <= layer:
                out.cache.layers.append(DynamicLayer())
            keys, ids = out.cache.update(keys[:, None], sources[:, None, :, None].float(), layer)
            keys, sources = keys[:, 0], ids[:, 0, :, 0].long()
        batch, queries = input_ids.shape
        alpha = self.pointer.attention(hidden, keys, visibility(attention_mask, batch, queries, keys.shape[1],
                                                                hidden.device))
        log_p = self.pointer.mix(hidden, alpha, sources[:, None, :].expand(-1, queries, -1), self.lm_head(hidden))
        loss = None if labels is None else nn.functional.nll_loss(
            log_p[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=log_p, cache=out.cache, hidden_states=out.hidden_states)

    def token_log_probs(self, hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                        rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """log p (N, V) at (rows, positions) of a full forward's hidden states (B, T, H) (`models.TokenLogits`)."""
        batch, length = input_ids.shape
        alpha = self.pointer.attention(hidden, self.pointer.key(hidden),
                                       visibility(attention_mask, batch, length, length, hidden.device))
        at = hidden[rows, positions]
        return self.pointer.mix(at, alpha[rows, positions], input_ids[rows], self.lm_head(at))


AutoConfig.register(PointerLlamaConfig.model_type, PointerLlamaConfig, exist_ok=True)
AutoModelForCausalLM.register(PointerLlamaConfig, PointerLlamaForCausalLM, exist_ok=True)
