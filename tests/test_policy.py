"""The extracted policy's per-token distribution, decoded with KV caches and padding, equals the
formula pi ∝ pi_beta * exp(beta * p_theta) computed by hand from two tiny models' full forward passes."""

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import scratch_checkpoints

from pipeline.config import ModelConfig
from pipeline.policy import LMPolicy, PolicySpec, PrefixCache, Segment

TEXTS = ["Guess the word.\n", "crane", "crane: _ Y _ _ G\n", "slate", "slate: G G G G G\n", "abbey"] * 30


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    cfg = ModelConfig(n_layer=1, n_embd=32, n_head=2, max_length=64, vocab_size=300)
    return scratch_checkpoints(tmp_path_factory, cfg, TEXTS, "m")


def by_hand(policy: LMPolicy, context: list[int], beta: float, ratio: bool = False) -> torch.Tensor:
    ids = torch.tensor([context])
    pb = policy.lm(input_ids=ids).logits[0, -1].softmax(-1)
    pq = policy.q(input_ids=ids).logits[0, -1].softmax(-1)
    weights = pb * torch.exp(beta * (pq / pb if ratio else pq))
    return weights / weights.sum()


@pytest.mark.parametrize("ratio", [False, True])
def test_decoded_distribution_matches_the_formula_with_cache_and_padding(checkpoints, ratio):
    policy = LMPolicy(PolicySpec(checkpoint=checkpoints[0], q=checkpoints[1], beta=3.0, ratio_form=ratio))
    short = policy.codec.observation_ids("Guess the word.\n")
    long = short + policy.codec.action_ids("crane") + policy.codec.observation_ids("crane: _ Y _ _ G\n")
    with torch.no_grad():
        log_probs, batch = policy._prefill([Segment(short), Segment(long)], [PrefixCache(), PrefixCache()])
        for row, ctx in enumerate([short, long]):
            assert torch.allclose(log_probs[row].exp(), by_hand(policy, ctx, 3.0, ratio), atol=1e-5)
        log_probs = policy._step(batch, torch.tensor([5, 7]))  # one decoding step through the KV caches
    for row, ctx in enumerate([short + [5], long + [7]]):
        assert torch.allclose(log_probs[row].exp(), by_hand(policy, ctx, 3.0, ratio), atol=1e-5)


def test_greedy_turn_and_ranking_follow_the_policy(checkpoints):
    policy = LMPolicy(PolicySpec(checkpoint=checkpoints[0], q=checkpoints[1], beta=3.0, max_action_tokens=4))
    context = policy.codec.observation_ids("Guess the word.\n")
    [action] = policy.generate([Segment(context)])
    ids, chosen = list(context), []
    while len(chosen) < 4 and (not chosen or chosen[-1] != policy.codec.eot_id):
        chosen.append(by_hand(policy, ids, 3.0).argmax().item())
        ids.append(chosen[-1])
    assert action == policy.codec.decode_action(chosen)


def test_greedy_text_generates_greedily_at_any_temperature_and_still_samples_the_choice(checkpoints):
    greedy = LMPolicy(PolicySpec(checkpoint=checkpoints[0], max_action_tokens=4))
    sampled = LMPolicy(PolicySpec(checkpoint=checkpoints[0], max_action_tokens=4, temperature=1.0, greedy_text=True))
    context = Segment(greedy.codec.observation_ids("Guess the word.\n"))
    generators = [torch.Generator().manual_seed(s) for s in range(8)]
    assert sampled.generate([context] * 8, generators) == greedy.generate([context]) * 8
    scores = [0.0, 0.1, -0.2]
    assert len({sampled.choose(scores, g) for g in generators}) > 1   # admissible actions: still sampled


LEXICON = ("crane", "crate", "cramp", "slate", "abbey")


def lexicon_policy(spec: PolicySpec) -> LMPolicy:
    return LMPolicy(spec, SimpleNamespace(action_tokenizer=None, lexicon=lambda: LEXICON))


def test_lexicon_decoding_writes_only_its_words_greedily_by_the_masked_formula(checkpoints):
    """With a lexicon each token is chosen among its trie children, pi_beta renormalised over them and the
    extraction applied on top: pi(v) ∝ pi_beta_c(v) * exp(beta * p_theta(v)), pi_beta_c = pi_beta / its allowed sum."""
    policy = lexicon_policy(PolicySpec(checkpoint=checkpoints[0], q=checkpoints[1], beta=3.0))
    context = policy.codec.observation_ids("Guess the word.\n")
    words = [policy.codec.action_ids(w) for w in LEXICON]
    ids, chosen = list(context), []
    with torch.no_grad():
        while not chosen or chosen[-1] != policy.codec.eot_id:
            allowed = sorted({w[len(chosen)] for w in words if w[: len(chosen)] == chosen})
            x = torch.tensor([ids])
            pb = policy.lm(input_ids=x).logits[0, -1].softmax(-1)[allowed]
            pq = policy.q(input_ids=x).logits[0, -1].softmax(-1)[allowed]
            chosen.append(allowed[int((pb / pb.sum() * torch.exp(3.0 * pq)).argmax())])
            ids.append(chosen[-1])
    [action] = policy.generate([Segment(context)])
    assert action == policy.codec.decode_action(chosen) and action in LEXICON


def test_sampling_a_lexicon_follows_constrained_decoding_of_its_words(checkpoints):
    """At temperature 1, BC restricted to a lexicon writes each word with the probability the "token" ranking
    gives it over the lexicon as candidates (the same constrained decoding, enumerated)."""
    spec = PolicySpec(checkpoint=checkpoints[0], temperature=1.0)
    policy = lexicon_policy(spec)
    context = Segment(policy.codec.observation_ids("Guess the word.\n"))
    generators = [torch.Generator().manual_seed(s) for s in range(3000)]
    written = policy.generate([context] * 3000, generators)
    assert set(written) <= set(LEXICON)
    share = [written.count(w) / 3000 for w in LEXICON]
    ranked = LMPolicy(dataclasses.replace(spec, ranking="token")).rank(context, list(LEXICON))
    assert share == pytest.approx([math.exp(r) for r in ranked], abs=0.03)
    free = LMPolicy(spec).generate([context] * 200, generators[:200])
    assert not set(free) <= set(LEXICON)   # the scratch model alone writes other strings


def candidate_by_hand(policy: LMPolicy, context: list[int], candidate: str) -> tuple[float, float, float]:
    """log pi_beta of the whole candidate, and p_theta and pi_beta of its last token, from full forward passes."""
    ids, log_beta = list(context), 0.0
    for token in policy.codec.action_ids(candidate):
        x = torch.tensor([ids])
        pb = policy.lm(input_ids=x).logits[0, -1].softmax(-1)[token].item()
        pq = policy.q(input_ids=x).logits[0, -1].softmax(-1)[token].item()
        log_beta += math.log(pb)
        ids.append(token)
    return log_beta, pq, pb


@pytest.mark.parametrize("ratio", [False, True])
def test_candidates_score_pi_beta_of_the_whole_action_plus_beta_q_at_its_last_token(checkpoints, ratio):
    """rank: log pi_beta(a|s) + beta * Q(s,a), Q = p_theta / pi_beta (ratio form) or p_theta of the last token."""
    candidates = ["crane", "slate", "abbey"]
    bc = LMPolicy(PolicySpec(checkpoint=checkpoints[0]))
    qsft = LMPolicy(PolicySpec(checkpoint=checkpoints[0], q=checkpoints[1], beta=3.0, ratio_form=ratio))
    context = qsft.codec.observation_ids("Guess the word.\n")
    with torch.no_grad():
        by_hand = [candidate_by_hand(qsft, context, c) for c in candidates]
    assert bc.rank(Segment(context), candidates) == pytest.approx([h[0] for h in by_hand], abs=1e-4)
    expected = [log_beta + 3.0 * (pq / pb if ratio else pq) for log_beta, pq, pb in by_hand]
    assert qsft.rank(Segment(context), candidates) == pytest.approx(expected, abs=1e-4)


def test_token_ranking_is_constrained_decoding_of_the_candidates(checkpoints):
    """ranking="token": log pi_c(a|s) = sum_t [log pi_beta(a_t | s, a_<t) - log sum_{v in C_t} pi_beta(v | s, a_<t)],
    C_t the tokens that continue some candidate sharing a_<t: the probability that decoding token by token,
    masked to the candidates, writes a. Over one state's candidates these sum to 1."""
    candidates = ["crane", "crane: _", "crate", "cr", "slate"]
    bc = LMPolicy(PolicySpec(checkpoint=checkpoints[0], ranking="token"))
    context = bc.codec.observation_ids("Guess the word.\n")
    actions = [bc.codec.action_ids(c) for c in candidates]
    # shared first tokens, so the trie branches later, once where a candidate ends (<|eot|>) and another goes on
    assert actions[0][0] == actions[1][0] and actions[2][0] == actions[3][0]
    expected = []
    with torch.no_grad():
        for action in actions:
            ids, total = list(context), 0.0
            for t, token in enumerate(action):
                log_p = bc.lm(input_ids=torch.tensor([ids])).logits[0, -1].log_softmax(-1)
                allowed = sorted({a[t] for a in actions if a[:t] == action[:t]})
                total += (log_p[token] - log_p[allowed].logsumexp(0)).item()
                ids.append(token)
            expected.append(total)
    scores = bc.rank(Segment(context), candidates)
    assert scores == pytest.approx(expected, abs=1e-4)
    assert math.fsum(math.exp(s) for s in scores) == pytest.approx(1.0, abs=1e-5)
    sequence = LMPolicy(PolicySpec(checkpoint=checkpoints[0])).rank(Segment(context), candidates)
    assert scores != pytest.approx(sequence, abs=1e-3)


def test_candidates_outside_the_support_are_never_chosen_and_sampling_follows_the_scores(checkpoints):
    candidates = ["crane", "slate", "abbey"]
    spec = PolicySpec(checkpoint=checkpoints[0], q=checkpoints[1], beta=3.0)
    context = Segment(LMPolicy(spec).codec.observation_ids("Guess the word.\n"))
    scores = LMPolicy(spec).rank(context, candidates)
    log_beta = torch.tensor(LMPolicy(PolicySpec(checkpoint=checkpoints[0])).rank(context, candidates))
    share = (log_beta - log_beta.logsumexp(0)).exp()
    eps = float(share.sort().values[:2].mean())   # between the two least likely: only the least likely drops
    dropped = int(share.argmin())
    restricted = LMPolicy(dataclasses.replace(spec, support_eps=eps)).rank(context, candidates)
    assert restricted[dropped] == -math.inf
    assert [r for i, r in enumerate(restricted) if i != dropped] == pytest.approx(
        [r for i, r in enumerate(scores) if i != dropped], abs=1e-6)

    sampled = LMPolicy(dataclasses.replace(spec, temperature=2.0))
    generator = torch.Generator().manual_seed(0)
    counts = np.bincount([sampled.choose(scores, generator) for _ in range(4000)], minlength=3) / 4000
    assert counts == pytest.approx(torch.tensor(scores).div(2.0).softmax(0).numpy(), abs=0.03)
    assert LMPolicy(spec).choose(scores) == int(np.argmax(scores))


def test_ilql_extraction_matches_its_formula_on_two_tiny_models(checkpoints, tmp_path):
    """pi ∝ pi_beta * exp(beta * (Q - V)) with Q, V from the heads saved beside the ILQL checkpoint's LM,
    through the KV caches and left padding as for Q-SFT."""
    from pipeline.models import TokenValues, load_model, load_tokenizer, new_value_heads, save_checkpoint

    model = load_model(checkpoints[1])
    torch.manual_seed(0)
    heads = new_value_heads(model)
    save_checkpoint(str(tmp_path), model, load_tokenizer(checkpoints[1]), {"stage": "ilql"}, heads=heads)
    policy = LMPolicy(PolicySpec(checkpoint=checkpoints[0], q=str(tmp_path), extraction="ilql", beta=2.0))
    values = TokenValues(model, heads.eval())
    assert policy.spec.name == "ilql(beta=2)"

    def ilql_by_hand(context):
        ids = torch.tensor([context])
        pb = policy.lm(input_ids=ids).logits[0, -1].softmax(-1)
        q, v = values(ids, torch.ones_like(ids), torch.tensor([0]), torch.tensor([len(context) - 1]))
        weights = pb * torch.exp(2.0 * (q[0] - v[0]))
        return weights / weights.sum()

    short = policy.codec.observation_ids("Guess the word.\n")
    long = short + policy.codec.action_ids("crane") + policy.codec.observation_ids("crane: _ Y _ _ G\n")
    with torch.no_grad():
        log_probs, batch = policy._prefill([Segment(short), Segment(long)], [PrefixCache(), PrefixCache()])
        for row, ctx in enumerate([short, long]):
            assert torch.allclose(log_probs[row].exp(), ilql_by_hand(ctx), atol=1e-5)
        log_probs = policy._step(batch, torch.tensor([5, 7]))
        for row, ctx in enumerate([short + [5], long + [7]]):
            assert torch.allclose(log_probs[row].exp(), ilql_by_hand(ctx), atol=1e-5)
        [score] = policy.rank(Segment(short), ["crane"])
        log_beta, _, _ = candidate_by_hand(policy, short, "crane")
        action = policy.codec.action_ids("crane")
        x = torch.tensor([short + action])
        q, _ = values(x, torch.ones_like(x), torch.tensor([0]), torch.tensor([len(x[0]) - 2]))
        _, v = values(x, torch.ones_like(x), torch.tensor([0]), torch.tensor([len(short) - 1]))
    assert score == pytest.approx(log_beta + 2.0 * (q[0, action[-1]] - v[0]).item(), abs=1e-4)


def test_bc_over_the_support_is_the_extraction_at_beta_zero(checkpoints):
    """BC with `support_eps` samples where Q-SFT's extraction samples: pi_beta renormalised over {pi_beta > eps}
    (the most likely always in), token by token and over candidates, equal to the extraction at beta = 0."""
    plain = LMPolicy(PolicySpec(checkpoint=checkpoints[0]))
    ids = plain.codec.observation_ids("Guess the word.\n")
    with torch.no_grad():
        pi_beta = plain.lm(input_ids=torch.tensor([ids])).logits[0, -1].softmax(-1)
    eps = float(pi_beta.sort(descending=True).values[2:4].mean())   # between the 3rd and 4th most likely tokens
    bc = LMPolicy(PolicySpec(checkpoint=checkpoints[0], support_eps=eps))
    extraction = LMPolicy(PolicySpec(checkpoint=checkpoints[0], q=checkpoints[1], beta=0.0, support_eps=eps))
    with torch.no_grad():
        log_probs = {name: p._prefill([Segment(ids)], [PrefixCache()])[0][0] for name, p in
                     (("bc", bc), ("extraction", extraction))}
    kept = pi_beta > eps
    assert int(kept.sum()) == 3
    assert torch.allclose(log_probs["bc"].exp(), torch.where(kept, pi_beta, 0.0) / pi_beta[kept].sum(), atol=1e-5)
    assert torch.allclose(log_probs["bc"].exp(), log_probs["extraction"].exp(), atol=1e-6)

    candidates = ["crane", "slate", "abbey"]
    context = Segment(ids)
    share = torch.tensor(plain.rank(context, candidates)).softmax(0)
    eps = float(share.sort().values[:2].mean())   # only the least likely candidate drops
    ranked = LMPolicy(PolicySpec(checkpoint=checkpoints[0], support_eps=eps)).rank(context, candidates)
    at_zero = LMPolicy(PolicySpec(checkpoint=checkpoints[0], q=checkpoints[1], beta=0.0, support_eps=eps)).rank(
        context, candidates)
    assert ranked[int(share.argmin())] == -math.inf and ranked == pytest.approx(at_zero, abs=1e-6)


def test_specs_from_a_config_read_the_support_always_for_an_extraction_and_for_bc_where_chosen():
    from pipeline.config import EvalConfig

    cfg = EvalConfig(support_eps=0.1, sample_support=False)
    assert PolicySpec.from_config(cfg, "bc").support_eps == 0.0
    assert PolicySpec.from_config(cfg, "bc", "q").support_eps == 0.1
    assert PolicySpec.from_config(dataclasses.replace(cfg, sample_support=True), "bc", label="spo").support_eps == 0.1
