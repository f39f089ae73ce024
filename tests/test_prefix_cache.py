"""Games played turn after turn with their KV caches carried (`PrefixCache`), several side by side in one
forward, score and decode exactly as full forward passes over each whole context do: candidate ranking
(BC, Q-SFT in both forms with support_eps, ILQL) and greedy generation, on tiny checkpoints trained from
scratch for a few steps (so their distributions are far from uniform), through context truncation."""

import math

import pytest
import torch
from conftest import scratch_checkpoints

from pipeline.config import ModelConfig
from pipeline.models import load_model, load_tokenizer, new_value_heads, save_checkpoint
from pipeline.policy import LMPolicy, PolicySpec, PrefixCache, Segment, common_prefix
from pipeline.tokenize import TurnCodec

WORDS = ["crane", "slate", "abbey", "ghost", "pious"]
SHARES = torch.tensor([0.5, 0.3, 0.12, 0.05, 0.03])   # how often the episodes trained on guess each word
TEXTS = ["Guess the word.\n", *WORDS, *[f"{w}: G _ Y _ G\n" for w in WORDS]] * 20


def train_briefly(path: str, seed: int, steps: int = 30) -> None:
    """A few next-token steps on random Wordle-shaped episodes, saved in place."""
    tokenizer, model = load_tokenizer(path), load_model(path)
    codec = TurnCodec(tokenizer)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        batch = []
        for _ in range(8):
            ids = codec.observation_ids("Guess the word.\n")
            while len(ids) < 48:
                word = WORDS[int(torch.multinomial(SHARES, 1, generator=generator))]
                ids += codec.action_ids(word) + codec.observation_ids(f"{word}: G _ Y _ G\n")
            batch.append(ids[:48])
        x = torch.tensor(batch)
        loss = model(input_ids=x, labels=x).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    save_checkpoint(path, model, tokenizer, {"stage": "test"})


@pytest.fixture(scope="module", params=["gpt2", "llama_pointer"])
def checkpoints(tmp_path_factory, request):
    """BC, Q-SFT-shaped and ILQL-shaped (the Q-SFT model with value heads) tiny checkpoints, GPT-2 and Llama with a
    pointer head (whose keys and token ids ride in the KV cache as one more layer)."""
    cfg = ModelConfig(architecture=request.param, n_layer=2, n_embd=32, n_head=2, max_length=64, vocab_size=300)
    paths = scratch_checkpoints(tmp_path_factory, cfg, TEXTS, f"cache-{request.param}")
    for seed, path in enumerate(paths):
        train_briefly(path, seed)
    ilql = str(tmp_path_factory.mktemp("cache-ilql"))
    model = load_model(paths[1])
    torch.manual_seed(0)
    save_checkpoint(ilql, model, load_tokenizer(paths[1]), {"stage": "ilql"}, heads=new_value_heads(model))
    return {"bc": paths[0], "q": paths[1], "ilql": ilql}


SPECS = {
    "bc": lambda c: PolicySpec(checkpoint=c["bc"]),
    "qsft": lambda c: PolicySpec(checkpoint=c["bc"], q=c["q"], beta=3.0, support_eps=0.05),
    "qsft-ratio": lambda c: PolicySpec(checkpoint=c["bc"], q=c["q"], beta=3.0, ratio_form=True),
    "ilql": lambda c: PolicySpec(checkpoint=c["bc"], q=c["ilql"], extraction="ilql", beta=2.0),
}


@torch.no_grad()
def scores_by_hand(policy: LMPolicy, context: list[int], candidates: list[str]) -> list[float]:
    """log pi_beta(a|s) + beta Q(s,a) from one full forward pass over context + candidate per candidate."""
    scores, values = [], []
    for candidate in candidates:
        action = policy.codec.action_ids(candidate)
        x = torch.tensor([context + action])
        reads = torch.arange(len(context) - 1, len(context) + len(action) - 1)
        log_beta = policy.lm(input_ids=x).logits[0, reads].log_softmax(-1)[torch.arange(len(action)), action]
        scores.append(log_beta.sum())
        if policy.heads is not None:
            hidden = policy.q(input_ids=x, output_hidden_states=True).hidden_states[-1][0]
            q, _ = policy.heads(hidden[reads[-1]])
            _, v = policy.heads(hidden[reads[0]])
            values.append(q[action[-1]] - v)
        elif policy.q is not None:
            p = policy.q(input_ids=x).logits[0, reads[-1]].softmax(-1)[action[-1]]
            values.append(p / log_beta[-1].exp() if policy.spec.ratio_form else p)
    scores = torch.stack(scores)
    if policy.q is None:
        return scores.tolist()
    if policy.spec.support_eps > 0:
        share = scores - scores.logsumexp(0)
        scores = scores.masked_fill((share <= math.log(policy.spec.support_eps)) & (share < share.max()), -math.inf)
    return (scores + policy.spec.beta * torch.stack(values)).tolist()


def play(policy: LMPolicy, turn) -> None:
    """Three games of different lengths for 6 turns, their caches carried; `turn(contexts, caches)` checks a
    turn. The contexts outgrow the window (64 positions less 24 for the action), so truncation (a cache cut
    back to the prompt) happens."""
    segments = [[policy.segment("Guess the word.\n")] for _ in range(3)]
    for g in range(3):
        for word in WORDS[:g]:
            segments[g].append(policy.segment(f"{word}: G _ Y _ G\n", word))
    caches = [PrefixCache() for _ in segments]
    reused = truncated = 0
    for t in range(6):
        contexts = [policy.context(s) for s in segments]
        for cache, context in zip(caches, contexts):
            kept = common_prefix(cache.ids, context.ids)
            reused += 0 < kept == len(cache.ids)
            truncated += 0 < kept < len(cache.ids)
        turn(contexts, caches)
        for g, s in enumerate(segments):
            word = WORDS[(t + g) % len(WORDS)]
            s.append(policy.segment(f"{word}: G _ Y _ G\n", word))
    assert reused >= 3 and truncated >= 3


@pytest.mark.parametrize("kind", list(SPECS))
def test_cached_batched_ranking_equals_full_forward_passes(checkpoints, kind):
    policy = LMPolicy(SPECS[kind](checkpoints))
    candidates = [WORDS, WORDS[1:4], ["crane", "ghost"]]
    dropped = []

    def turn(contexts: list[Segment], caches: list[PrefixCache]):
        cached = policy.rank_many(contexts, candidates, caches)
        for context, cands, scores in zip(contexts, candidates, cached):
            expected = scores_by_hand(policy, context.ids, cands)
            assert scores == pytest.approx(expected, abs=1e-4)
            assert policy.rank(context, cands) == pytest.approx(expected, abs=1e-4)   # no cache, alone
            dropped.extend(s for s in scores if s == -math.inf)
        assert len({round(s, 2) for s in cached[0]}) > 1   # the trained models tell the candidates apart

    play(policy, turn)
    assert bool(dropped) == (policy.spec.support_eps > 0)


@pytest.mark.parametrize("kind", ["bc", "qsft", "ilql"])
def test_generation_with_carried_caches_equals_prefilling_the_whole_episode(checkpoints, kind):
    policy = LMPolicy(SPECS[kind](checkpoints))

    @torch.no_grad()
    def turn(contexts: list[Segment], caches: list[PrefixCache]):
        fresh, _ = policy._prefill(contexts, [PrefixCache() for _ in contexts])
        carried, _ = policy._prefill(contexts, [PrefixCache(c.ids, c.layers) for c in caches])
        assert torch.allclose(carried.exp(), fresh.exp(), atol=1e-5)
        assert policy.generate(contexts, caches=caches) == policy.generate(contexts)

    play(policy, turn)
