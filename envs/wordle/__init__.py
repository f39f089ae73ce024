"""Wordle (LMRL-Gym's text game): guess a hidden 5-letter word in 6 tries from letter feedback.

Raw reward -1 per guess that is not the answer, 0 for the answer (raw return in [-6, 0]); Q-SFT's unit
reward is `1 - incorrect_guesses / 6` on the final step of a solved episode and 0 elsewhere.
Normalizer constants are measured by `python -m envs.measure wordle` (see envs.measure).
"""

from __future__ import annotations

from collections.abc import Sequence

from envs.base import ScoreNormalizer, Task
from envs.wordle.env import MAX_GUESSES
from envs.wordle.policies import GreedySolver, make_behaviour
from envs.wordle.words import allowed_guesses, split_answers


def solved(rewards: Sequence[float], terminated: bool) -> bool:
    """Solved iff the episode terminated on a correct guess (reward 0)."""
    return bool(terminated) and len(rewards) > 0 and rewards[-1] == 0.0


def unit_rewards(rewards: Sequence[float], terminated: bool) -> list[float]:
    """0 on every step, except `1 - incorrect_guesses / 6` on the final step of a solved episode."""
    unit = [0.0] * len(rewards)
    if solved(rewards, terminated):
        unit[-1] = 1.0 - sum(1 for r in rewards if r < 0) / MAX_GUESSES
    return unit


TASK = Task(
    name="wordle",
    env_id="qsft/Wordle-v0",
    version="1",
    max_steps=MAX_GUESSES,
    num_eval_instances=len(split_answers("eval")),
    make_behaviour=make_behaviour,
    default_behaviour_params={"random_prob": 0.47},
    unit_rewards=unit_rewards,
    success=solved,
    make_solver=GreedySolver,
    # worst: 6 wrong guesses; average: behaviour policy, 20,000 training episodes; best: greedy solver on
    # the 200 held-out words (both measured by `python -m envs.measure wordle --episodes 20000`).
    normalizer=ScoreNormalizer(worst=-6.0, average=-4.066, best=-2.35),
    lexicon=allowed_guesses,
)
