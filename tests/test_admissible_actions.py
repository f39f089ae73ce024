"""Evaluation on a task that lists admissible actions (WebShop): each turn the policy ranks the candidates
of every game in one call (`LMPolicy.rank_many`) and takes the best; a winning template ("search[...]")
is written by the policy itself. Played in this process on two tiny scratch checkpoints (BC and Q-SFT extraction), two
episodes side by side, so the branch of `pipeline.evaluate.choose_actions` that only such tasks reach runs
in the default suite without a whole WebShop pipeline (that one is the slow cluster submission)."""

import json

import gymnasium
import numpy as np
import pytest
from conftest import scratch_checkpoints

import envs
from envs.base import play
from pipeline.config import ModelConfig
from pipeline.evaluate import play_chunk
from pipeline.policy import LMPolicy, PolicySpec


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """BC- and Q-SFT-shaped scratch models whose tokenizer is trained on real WebShop episodes."""
    task = envs.get_task("webshop")
    env = gymnasium.make(task.env_id, **task.env_kwargs)
    texts = []

    class Recording:
        def __init__(self):
            self.policy = task.make_behaviour(**task.default_behaviour_params)

        def reset(self, seed):
            self.policy.reset(seed)

        def act(self, observation, info):
            action = self.policy.act(observation, info)
            texts.extend([observation, action])
            return action

    for seed in range(4):
        play(env, Recording(), seed, {"split": "train", "index": seed})
    cfg = ModelConfig(n_layer=1, n_embd=32, n_head=2, max_length=768, vocab_size=1024)
    return scratch_checkpoints(tmp_path_factory, cfg, texts, "webshop")


@pytest.mark.parametrize("extracted", [False, True], ids=["bc", "qsft"])
def test_admissible_candidates_are_ranked_and_templates_written(checkpoints, extracted):
    task = envs.get_task("webshop")
    spec = PolicySpec(checkpoint=checkpoints[0], q=checkpoints[1] if extracted else None, beta=4.0,
                      max_action_tokens=8)
    policy = LMPolicy(spec, task)
    ranked = []   # (candidates, scores) of every game ranked, in call order
    rank_many = policy.rank_many

    def spy(contexts, candidates, caches=None):
        scores = rank_many(contexts, candidates, caches)
        ranked.extend(zip(map(list, candidates), map(list, scores)))
        return scores

    policy.rank_many = spy
    records = play_chunk(task, policy, [0, 1], seed=0)

    assert [r["episode"] for r in records] == [0, 1]
    transcripts = [json.loads(r["transcript"]) for r in records]
    for record, transcript in zip(records, transcripts):
        assert 1 <= record["steps"] <= task.max_steps and len(transcript) == record["steps"] + 1
        assert 0.0 <= record["raw_return"] <= 1.0
    # The games play in lock-step: turn t ranks, in episode order, the candidates of every game still going.
    calls = iter(ranked)
    templates = 0
    for turn in range(max(r["steps"] for r in records)):
        for record, transcript in zip(records, transcripts):
            if turn >= record["steps"]:
                continue
            candidates, scores = next(calls)
            assert candidates and len(scores) == len(candidates) and all(np.isfinite(scores))
            best = candidates[int(np.argmax(scores))]
            action = transcript[turn]["action"]
            if best.endswith("[...]"):   # a template: the policy writes the text itself
                templates += 1
                assert action != best
            else:
                assert action == best
    assert next(calls, None) is None
    assert templates >= 2   # each episode starts on the search page, whose one candidate is "search[...]"
