"""Twenty Questions: guess a hidden everyday object by asking yes/no questions (task "twenty_questions").

A gymnasium environment (`qsft/TwentyQuestions-v0`, `env.py`) whose oracle answers from a shipped
knowledge base (`knowledge.py`, `oracle.py`, `data/`), the behaviour and solver policies
(`policies.py`), the train/eval instances (`instances.py`), and the `TASK` record.

Unit reward: `1 - (k - 1) / 20` on the final step of an episode won at question k, 0 otherwise
(so a unit return lies in [0.05, 1] when solved and is 0 when not). Normalization follows LMRL-Gym:
worst = -20 (never solved), average = the behaviour dataset's average raw return, best = the
splitting solver's average raw return on the held-out instances (both measured by
`python -m envs.measure twenty_questions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from envs.base import ScoreNormalizer, Task
from envs.twenty_questions.env import MAX_QUESTIONS
from envs.twenty_questions.instances import NUM_EVAL
from envs.twenty_questions.policies import MixtureBehaviour, SplittingSolver

DEFAULT_BEHAVIOUR: dict[str, Any] = {
    "skill_low": 0.0, "skill_high": 0.47,
    "redundant_weight": 0.75, "random_weight": 0.1, "premature_weight": 0.15,
}
# Measured by `python -m envs.measure twenty_questions --episodes 20000` (behaviour seeds 0..19999; the
# solver is deterministic). Re-measure whenever the data, the oracle or the policies change.
DATASET_AVERAGE = -17.266   # default behaviour, 20,000 train episodes (42% solved)
SOLVER_AVERAGE = -6.86      # SplittingSolver on the 100 held-out instances


def make_behaviour(**params: Any) -> MixtureBehaviour:
    """The data-collection policy; parameters as in `DEFAULT_BEHAVIOUR`."""
    return MixtureBehaviour(**params)


def success(raw_step_rewards: Sequence[float], terminated: bool) -> bool:
    """Won: the episode ended on a correct guess (reward 0)."""
    return bool(terminated and raw_step_rewards and raw_step_rewards[-1] == 0.0)


def unit_rewards(raw_step_rewards: Sequence[float], terminated: bool) -> list[float]:
    """Per-step unit rewards: `1 - questions_before_the_win / 20` on the winning step, 0 elsewhere."""
    rewards = [0.0] * len(raw_step_rewards)
    if success(raw_step_rewards, terminated):
        rewards[-1] = 1.0 - (len(raw_step_rewards) - 1) / MAX_QUESTIONS
    return rewards


TASK = Task(
    name="twenty_questions",
    env_id="qsft/TwentyQuestions-v0",
    version="1",
    max_steps=MAX_QUESTIONS,
    num_eval_instances=NUM_EVAL,
    make_behaviour=make_behaviour,
    default_behaviour_params=DEFAULT_BEHAVIOUR,
    unit_rewards=unit_rewards,
    success=success,
    normalizer=ScoreNormalizer(worst=-float(MAX_QUESTIONS), average=DATASET_AVERAGE, best=SOLVER_AVERAGE),
    make_solver=SplittingSolver,
)
