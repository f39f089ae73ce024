"""The pointer-head LM (pipeline.pointer_model): its mixture by hand, the training path (`TokenLogits`, one
backbone forward read at chosen positions) equal to the full forward, and a checkpoint that round-trips."""

import math

import pytest
import torch

from pipeline.models import TokenLogits, load_model, save_checkpoint
from pipeline.pointer_model import PointerLlamaConfig, PointerLlamaForCausalLM

VOCAB = 11


def pointer_model(seed: int = 0) -> PointerLlamaForCausalLM:
    torch.manual_seed(seed)
    return PointerLlamaForCausalLM(PointerLlamaConfig(
        vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=32, tie_word_embeddings=True, pointer_dim=8)).eval()


@torch.no_grad()
def test_a_closed_gate_with_flat_attention_gives_the_context_token_frequencies():
    """Gate g = 0 and a zero query make alpha uniform over x_<=t, so p_t(v) = #{j <= t: x_j = v} / (t + 1)."""
    model = pointer_model()
    model.pointer.query.weight.zero_(), model.pointer.query.bias.zero_()
    model.pointer.gate.weight.zero_(), model.pointer.gate.bias.fill_(-40.0)
    x = torch.tensor([[3, 5, 3, 7, 3]])
    p = model(input_ids=x).logits[0].exp()
    for t in range(5):
        expected = torch.bincount(x[0, : t + 1], minlength=VOCAB).float() / (t + 1)
        assert torch.allclose(p[t], expected, atol=1e-6)


@torch.no_grad()
def test_an_open_gate_is_the_plain_vocabulary_softmax():
    model = pointer_model()
    model.pointer.gate.weight.zero_(), model.pointer.gate.bias.fill_(40.0)
    x = torch.tensor([[1, 4, 2, 9]])
    hidden = model.model(input_ids=x).last_hidden_state
    assert torch.allclose(model(input_ids=x).logits, model.lm_head(hidden).log_softmax(-1), atol=1e-5)


@torch.no_grad()
def test_the_mixture_by_hand():
    """g softmax(W h)_v + (1 - g) sum_{j<=t, x_j = v} alpha_tj, alpha from the query and key projections."""
    model = pointer_model(1)
    x = torch.tensor([[2, 6, 2, 8]])
    hidden = model.model(input_ids=x).last_hidden_state[0]
    q, k = model.pointer.query(hidden), model.pointer.key(hidden)
    t = 3
    alpha = (q[t] @ k[: t + 1].T / math.sqrt(8)).softmax(-1)
    g = torch.sigmoid(model.pointer.gate(hidden[t]))
    expected = g * model.lm_head(hidden[t]).softmax(-1)
    for j in range(t + 1):
        expected[x[0, j]] += (1 - g[0]) * alpha[j]
    assert torch.allclose(model(input_ids=x).logits[0, t].exp(), expected, atol=1e-6)
    assert model(input_ids=x).logits[0].exp().sum(-1) == pytest.approx([1.0] * 4, abs=1e-5)


def test_token_logits_reads_the_same_mixture_as_the_full_forward_and_trains():
    """Right-padded rows: the training path's log p at (row, position) equals the full forward's, and its
    gradient reaches the pointer."""
    model = pointer_model(2).train()
    x = torch.tensor([[1, 2, 3, 2, 5, 0], [4, 4, 6, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]])
    rows, positions = torch.tensor([0, 0, 1, 1]), torch.tensor([1, 4, 0, 2])
    read = TokenLogits(model)(x, mask, rows, positions)
    full = model(input_ids=x, attention_mask=mask).logits[rows, positions]
    assert torch.allclose(read, full, atol=1e-5)
    read.log_softmax(-1)[torch.arange(4), x[rows, positions]].sum().backward()
    assert model.pointer.key.weight.grad.abs().sum() > 0 and model.pointer.gate.weight.grad.abs().sum() > 0


def test_a_checkpoint_round_trips_with_its_pointer(tmp_path):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    model = pointer_model(3)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0}, unk_token="a")))
    save_checkpoint(str(tmp_path), model, tokenizer, {"stage": "test"})
    loaded = load_model(str(tmp_path))
    assert isinstance(loaded, PointerLlamaForCausalLM)
    x = torch.tensor([[1, 5, 1, 7]])
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=x).logits, model(input_ids=x).logits, atol=1e-6)
