"""Tokenizers, causal LMs and checkpoints (Hugging Face `save_pretrained` folders).

A model is any `AutoModelForCausalLM`, loaded from a local path or hub id, or, by default, a GPT-2-shaped
(or, with `architecture="llama"`, a Llama-shaped one; "llama_pointer" adds a pointer head, pipeline.pointer_model)
model initialised from scratch with a seed (so BC and Q-SFT start from identical weights), with a
byte-level BPE tokenizer trained on the task's own text. Pixel tasks get `PixelGPT` (pipeline.pixel_model)
and a word-level tokenizer over `<|obs|>` and the action bins. A checkpoint folder holds the model, the
tokenizer, `stage.json` (config and metrics of the stage that wrote it), ILQL's Q and V heads
(`value_heads.pt`, beside the LM they read) and, for resuming, `trainer_state.pt`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

# importing these registers PixelGPT and PointerLlama with the Auto classes
from pipeline import pixel_model, pointer_model
from pipeline.config import ModelConfig
from pipeline.tokens import EOT, OBS, PAD

STAGE_FILE = "stage.json"
TRAINER_STATE_FILE = "trainer_state.pt"
HEADS_FILE = "value_heads.pt"


def build_tokenizer(cfg: ModelConfig, texts: Iterable[str], extra_tokens: Iterable[str] = ()):
    """The pretrained model's tokenizer plus <|eot|>/<|pad|>, or a byte-level BPE trained on `texts`."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if cfg.name_or_path:
        tokenizer = AutoTokenizer.from_pretrained(cfg.name_or_path)
        tokenizer.add_special_tokens({"additional_special_tokens": [EOT]})
        if tokenizer.pad_token is None:
            tokenizer.add_special_tokens({"pad_token": PAD})
        tokenizer.add_tokens(list(extra_tokens))
        return tokenizer

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, special_tokens=[PAD, EOT, *extra_tokens],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token=PAD, eos_token=EOT,
                                   additional_special_tokens=[EOT])


def build_action_tokenizer(action_tokenizer):
    """A word-level tokenizer for pixel tasks: <|pad|>, <|eot|>, <|obs|>, then the bin words in bin order."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = [PAD, EOT, OBS, *action_tokenizer.vocabulary()]
    word_level = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=PAD))
    word_level.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=word_level, pad_token=PAD, eos_token=EOT,
                                   additional_special_tokens=[EOT, OBS])


def build_task_tokenizer(cfg: ModelConfig, task, texts: Iterable[str]):
    """A task's tokenizer: the <|obs|> + action-bin vocabulary for pixel tasks trained from scratch, else
    `build_tokenizer` on `texts` (an iterable that is not read for pixel tasks)."""
    if task.action_tokenizer is not None and not cfg.name_or_path:
        return build_action_tokenizer(task.action_tokenizer)
    return build_tokenizer(cfg, texts)


def load_initial_model(cfg: ModelConfig, tokenizer, seed: int, observation_space=None,
                       proprio_stats: dict[str, list[float]] | None = None):
    """The 'pretrained' starting point shared by BC and Q-SFT: hub/local weights, or a seeded scratch init.

    With a pixel task's `observation_space` (a Dict with "image" and "proprio"), the scratch model is a
    `PixelGPT` sized to it, standardising proprio with `proprio_stats` ({"mean", "std"} per dimension, from the
    training data; none: unscaled).
    """
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if cfg.name_or_path:
        model = AutoModelForCausalLM.from_pretrained(cfg.name_or_path)
        if model.get_input_embeddings().num_embeddings < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer))
    else:
        # GPT-2's tanh GELU (its default "gelu_new") as one fused kernel instead of eight elementwise ops: the same
        # function, and about an eighth of a pixel training step on 2 CPUs (benchmarks/RESULTS.md, pixel step)
        shape = {"vocab_size": len(tokenizer), "n_positions": cfg.max_length, "n_embd": cfg.n_embd,
                 "n_layer": cfg.n_layer, "n_head": cfg.n_head, "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout,
                 "attn_pdrop": cfg.dropout, "activation_function": "gelu_pytorch_tanh",
                 "bos_token_id": tokenizer.eos_token_id, "eos_token_id": tokenizer.eos_token_id,
                 "pad_token_id": tokenizer.pad_token_id}
        if observation_space is not None:
            stats = proprio_stats or {}
            model = pixel_model.PixelGPT(pixel_model.PixelGPTConfig(
                image_size=observation_space["image"].shape[0], proprio_dim=observation_space["proprio"].shape[0],
                observation_token_id=tokenizer.convert_tokens_to_ids(OBS), proprio_mean=stats.get("mean"),
                proprio_std=stats.get("std"), **shape))
        elif cfg.architecture in ("llama", "llama_pointer"):
            llama = {"vocab_size": len(tokenizer), "hidden_size": cfg.n_embd, "intermediate_size": 4 * cfg.n_embd,
                     "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
                     "num_key_value_heads": cfg.n_head, "max_position_embeddings": cfg.max_length,
                     "attention_dropout": cfg.dropout, "tie_word_embeddings": True,
                     "bos_token_id": tokenizer.eos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id}
            model = (LlamaForCausalLM(LlamaConfig(**llama)) if cfg.architecture == "llama" else
                     pointer_model.PointerLlamaForCausalLM(pointer_model.PointerLlamaConfig(**llama)))
        else:
            model = GPT2LMHeadModel(GPT2Config(**shape))
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def load_model(path: str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """A checkpoint's model in eval mode."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per load floods the logs of every worker and actor
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    return model.to(device).eval()


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


class TokenLogits(nn.Module):
    """Logits only at the requested (row, position) pairs: backbone once, LM head on N rows, not B x T."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor,
                positions: torch.Tensor, position_ids: torch.Tensor | None = None,
                **observations: torch.Tensor) -> torch.Tensor:
        """`attention_mask`: (B, T) padding, or a (B, 1, T, T) additive mask with its `position_ids`
        (pipeline.candidates); `observations`: a pixel model's packed `images` and `proprio` (pipeline.pixel_model)."""
        hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                       **observations).last_hidden_state
        if isinstance(self.model, pointer_model.PointerLlamaForCausalLM):  # log p of the pointer's mixture
            return self.model.token_log_probs(hidden, input_ids, attention_mask, rows, positions)
        return self.model.get_output_embeddings()(hidden[rows, positions])


class ValueHeads(nn.Module):
    """ILQL's heads on an LM's final hidden states h(s): Q(s, .) = W_q h(s) + b_q over the vocabulary, and
    V(s) = w_v . h(s) + b_v."""

    def __init__(self, hidden_size: int, vocab_size: int):
        super().__init__()
        self.q = nn.Linear(hidden_size, vocab_size)
        self.v = nn.Linear(hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q(hidden), self.v(hidden).squeeze(-1)


def new_value_heads(model) -> ValueHeads:
    """Heads sized to `model`'s hidden states and output vocabulary."""
    head = model.get_output_embeddings()
    return ValueHeads(head.in_features, head.out_features)


def load_value_heads(path: str, device: str | torch.device = "cpu") -> ValueHeads:
    """A checkpoint's ILQL heads (tensors only: `weights_only=True`), in eval mode."""
    state = torch.load(os.path.join(path, HEADS_FILE), map_location=device, weights_only=True)
    heads = ValueHeads(state["q.weight"].shape[1], state["q.weight"].shape[0])
    heads.load_state_dict(state)
    return heads.to(device).eval()


class TokenValues(nn.Module):
    """ILQL's (Q(s, .), V(s)) at the requested (row, position) pairs: backbone once, heads on N rows."""

    def __init__(self, model, heads: ValueHeads):
        super().__init__()
        self.model, self.heads = model, heads

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor,
                positions: torch.Tensor, **observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask,
                                       **observations).last_hidden_state
        return self.heads(hidden[rows, positions])


def save_checkpoint(path: str, model, tokenizer, stage_info: dict[str, Any],
                    trainer_state: dict[str, Any] | None = None, heads: ValueHeads | None = None) -> None:
    """Write a complete checkpoint folder (callers write to a temporary folder and report it)."""
    os.makedirs(path, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    if heads is not None:
        torch.save(heads.state_dict(), os.path.join(path, HEADS_FILE))
    with open(os.path.join(path, STAGE_FILE), "w") as f:
        json.dump(stage_info, f, indent=2, sort_keys=True, default=str)
    if trainer_state is not None:
        torch.save(trainer_state, os.path.join(path, TRAINER_STATE_FILE))


def read_stage_info(path: str) -> dict[str, Any]:
    with open(os.path.join(path, STAGE_FILE)) as f:
        return json.load(f)
