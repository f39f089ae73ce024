"""Wordle environment: feedback rules, rewards, splits, robustness to any action, policies, task record."""

from __future__ import annotations

import json
import random

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import envs
from envs.base import play
from envs.measure import behaviour_episodes, solver_episodes, summarize
from envs.wordle import TASK, solved, unit_rewards, words
from envs.wordle.env import PROMPT, WordleEnv
from envs.wordle.feedback import SOLVED, encode, feedback, feedback_codes, pattern_code
from envs.wordle.policies import OPENER, ConsistentPolicy, GreedySolver, make_behaviour

# (answer, guess, pattern), computed by hand: greens first, then yellows left to right while unmatched.
HAND_CASES = [
    ("abbey", "babes", "YYGG_"),   # one b green, the other b yellow; a yellow
    ("crane", "eerie", "__Y_G"),   # the answer's only e is green, so the earlier e's are gray
    ("llama", "hello", "__YY_"),   # two l's in the answer: both l's of the guess are yellow
    ("hello", "llama", "YY___"),
    ("speed", "eerie", "YY___"),   # two e's in the answer: the first two e's claim them, the last is gray
    ("abide", "speed", "__Y_Y"),   # one e in the answer: only the first non-green e is yellow
    ("array", "radar", "YY_GY"),
    ("crane", "crane", "GGGGG"),
    ("crane", "nerds", "YYY__"),
]


@pytest.fixture
def env() -> WordleEnv:
    return WordleEnv()


@pytest.mark.parametrize(("answer", "guess", "pattern"), HAND_CASES)
def test_feedback_hand_cases(answer: str, guess: str, pattern: str) -> None:
    assert feedback(guess, answer) == pattern
    codes = feedback_codes(encode([guess]), encode([answer]))
    assert codes.shape == (1, 1) and codes[0, 0] == pattern_code(pattern)


def test_pattern_codes() -> None:
    assert pattern_code("_____") == 0
    assert pattern_code("GGGGG") == SOLVED == 242
    assert pattern_code("Y____") == 1 and pattern_code("____G") == 2 * 81


def test_vectorized_feedback_matches_scalar_rule() -> None:
    rng = random.Random(0)
    guesses = rng.sample(words.allowed_guesses(), 150) + [g for _, g, _ in HAND_CASES]
    answers = rng.sample(words.answers(), 150) + [a for a, _, _ in HAND_CASES]
    codes = feedback_codes(encode(guesses), encode(answers))
    expected = [[pattern_code(feedback(g, a)) for a in answers] for g in guesses]
    np.testing.assert_array_equal(codes, np.array(expected))


def test_word_lists() -> None:
    train, evaluation = words.split_answers("train"), words.split_answers("eval")
    assert len(evaluation) == TASK.num_eval_instances == 200
    assert 1500 <= len(train) + len(evaluation) <= 2500
    assert not set(train) & set(evaluation)
    assert set(words.answers()) <= words.allowed_set()
    assert len(words.allowed_guesses()) > 5 * len(words.answers())
    for word in words.allowed_guesses():
        assert len(word) == 5 and word.isascii() and word.isalpha() and word.islower(), word
    assert {"crane", "about", "house", "water"} <= set(words.answers())
    with pytest.raises(ValueError):
        words.split_answers("test")


def test_registered_env_passes_gymnasium_checker() -> None:
    made = gymnasium.make(TASK.env_id)
    assert isinstance(made.unwrapped, WordleEnv)
    check_env(made.unwrapped)
    assert envs.get_task("wordle") is TASK


def test_reset_plays_the_requested_instance(env: WordleEnv) -> None:
    observation, info = env.reset(seed=0, options={"split": "eval", "index": 7})
    assert observation == PROMPT
    assert info == {"split": "eval", "instance": 7, "turn": 0}
    answer = words.split_answers("eval")[7]
    observation, reward, terminated, truncated, info = env.step(answer)
    assert (observation, reward, terminated, truncated) == (f"{answer}: G G G G G\n", 0.0, True, False)
    assert info["feedback"] == "GGGGG" and info["split"] == "eval" and info["instance"] == 7
    with pytest.raises(ValueError):
        env.reset(options={"split": "eval", "index": 200})


def test_seeded_draws_come_from_the_training_split(env: WordleEnv) -> None:
    draws = [env.reset(seed=s)[1] for s in range(50)]
    assert all(d["split"] == "train" for d in draws)
    assert len({d["instance"] for d in draws}) > 40
    assert [env.reset(seed=s)[1]["instance"] for s in range(50)] == [d["instance"] for d in draws]


def test_wrong_guesses_cost_one_and_the_game_ends_after_six(env: WordleEnv) -> None:
    env.reset(options={"split": "train", "index": words.split_answers("train").index("abbey")})
    observation, reward, terminated, truncated, info = env.step("babes")
    assert (observation, reward, terminated, truncated) == ("babes: Y Y G G _\n", -1.0, False, False)
    assert info["guess"] == "babes" and info["feedback"] == "YYGG_" and info["valid"] and info["turn"] == 1
    for turn in range(2, 7):
        _, reward, terminated, truncated, info = env.step("crane")
        assert (reward, terminated, truncated, info["turn"]) == (-1.0, turn == 6, False, turn)


def test_invalid_words_cost_a_turn(env: WordleEnv) -> None:
    env.reset(options={"split": "eval", "index": 0})
    observation, reward, terminated, truncated, info = env.step("xqzvk")
    assert (observation, reward, terminated, truncated) == ("xqzvk: not a valid word\n", -1.0, False, False)
    assert info["feedback"] is None and not info["valid"] and info["turn"] == 1
    assert env.step("")[0] == "(empty): not a valid word\n"
    assert env.step("a" * 10_000)[0] == "a" * 24 + "...: not a valid word\n"
    assert env.step("héllo\nwörld")[0] == "h?llo w?rld: not a valid word\n"
    _, _, _, truncated, info = env.step("cran")
    assert info["turn"] == 5 and not truncated


def test_actions_are_normalized(env: WordleEnv) -> None:
    env.reset(options={"split": "train", "index": words.split_answers("train").index("crane")})
    observation, reward, terminated, _, info = env.step("  \tCRANE \n")
    assert (observation, reward, terminated, info["guess"]) == ("crane: G G G G G\n", 0.0, True, "crane")


@settings(max_examples=300, deadline=None)
@given(action=st.text(max_size=40) | st.sampled_from(["", " ", "\n", "CRANE", "crane crane", "\x00" * 5,
                                                      "ÀÉÎÕÜ", "🙂" * 5, "x" * 100_000]))
def test_any_action_is_handled(action: str) -> None:
    env = WordleEnv()
    env.reset(options={"split": "eval", "index": 3})
    observation, reward, terminated, truncated, info = env.step(action)
    assert env.observation_space.contains(observation)
    assert reward in (-1.0, 0.0) and not truncated
    assert terminated == (reward == 0.0)
    assert json.loads(json.dumps(info)) == info


def test_unit_rewards_and_success() -> None:
    assert unit_rewards([-1.0, -1.0, 0.0], True) == [0.0, 0.0, pytest.approx(1 - 2 / 6)]
    assert unit_rewards([0.0], True) == [1.0]
    assert unit_rewards([-1.0] * 5 + [0.0], True)[-1] == pytest.approx(1 / 6)
    assert unit_rewards([-1.0] * 6, False) == [0.0] * 6
    assert solved([-1.0, 0.0], True) and not solved([-1.0] * 6, False)
    assert TASK.success is solved and TASK.unit_rewards is unit_rewards


def test_normalizer_and_task_record() -> None:
    assert TASK.max_steps == 6 and TASK.env_id == "qsft/Wordle-v0" and TASK.name == "wordle"
    normalizer = TASK.normalizer
    assert normalizer.worst == -6.0 and -4.6 <= normalizer.average <= -3.6 < normalizer.best
    assert normalizer(-6.0) == 0.0 and normalizer(normalizer.average) == 50.0
    assert normalizer(normalizer.best) == pytest.approx(100.0)
    # policies decode restricted to the lexicon: every word the env accepts, every hidden word among them
    assert set(TASK.lexicon()) == words.allowed_set() >= set(words.answers())


def _episode_actions(policy: ConsistentPolicy, seed: int, index: int) -> list[str]:
    return play(WordleEnv(), policy, seed, {"split": "train", "index": index}).actions


def test_behaviour_policy_is_seeded() -> None:
    policy = make_behaviour(**TASK.default_behaviour_params)
    runs = [_episode_actions(policy, seed, 11) for seed in (3, 4, 3)]
    assert runs[0] == runs[2] and runs[0] != runs[1]


def test_consistent_policy_only_plays_consistent_answers() -> None:
    policy = ConsistentPolicy(random_prob=0.0)
    for seed in range(30):
        actions = _episode_actions(policy, seed, seed)
        answer = words.split_answers("train")[seed]
        assert actions[-1] == answer
        for i, guess in enumerate(actions):
            assert guess in words.answers()
            assert all(feedback(earlier, guess) == feedback(earlier, answer) for earlier in actions[:i])


def test_random_moves_are_allowed_words() -> None:
    policy = ConsistentPolicy(random_prob=1.0)
    actions = _episode_actions(policy, 0, 5)
    assert len(actions) == 6 and all(a in words.allowed_set() for a in actions)
    assert len(set(actions)) == 6 and not set(actions) <= set(words.answers())


def test_greedy_solver_solves_held_out_words() -> None:
    env, solver = WordleEnv(), GreedySolver()
    for index in range(0, 200, 20):
        played = play(env, solver, 0, {"split": "eval", "index": index})
        assert played.terminated and solved(played.rewards, played.terminated) and len(played.rewards) <= 6
    solver.reset(0)
    assert solver.act(PROMPT, {"turn": 0}) == OPENER


@pytest.mark.slow
def test_measured_normalizer_constants() -> None:
    """`python -m envs.measure wordle --episodes 20000` gives the constants."""
    assert round(summarize(TASK, behaviour_episodes(TASK, 20_000)).raw_return, 3) == TASK.normalizer.average
    assert round(summarize(TASK, solver_episodes(TASK)).raw_return, 2) == TASK.normalizer.best


@pytest.mark.slow
def test_opener_minimizes_expected_remaining_candidates() -> None:
    assert GreedySolver.best_guess(np.arange(len(words.answers()))) == OPENER
