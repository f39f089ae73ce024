"""ALFWorld (text): household tasks of six types played through textworld's PDDL engine.

Games are generated offline from the `alfworld` wheel's domain, grammar, goal templates and scene
layouts (`generate.py`) and shipped in `data/games/{train,eval}`. Raw reward is 1 on success, else 0,
so unit rewards equal raw rewards. The behaviour policy is the planner expert degraded by early
wandering and random admissible actions; the strong solver is the undegraded expert.
"""

from __future__ import annotations

from collections.abc import Sequence

from envs.alfworld.policies import ExpertPolicy, NoisyExpertPolicy, make_behaviour
from envs.base import ScoreNormalizer, Task

MAX_STEPS = 30          # the paper's ALFWorld step limit
NUM_EVAL_GAMES = 30     # data/games/eval: 5 per task type


def unit_rewards(raw_step_rewards: Sequence[float], terminated: bool) -> list[float]:
    """Raw rewards are already 1 on the winning step and 0 elsewhere."""
    del terminated
    return [min(max(float(r), 0.0), 1.0) for r in raw_step_rewards]


def success(raw_step_rewards: Sequence[float], terminated: bool) -> bool:
    """Solved: the episode ended on the goal (reward 1)."""
    return terminated and sum(raw_step_rewards) >= 1.0


TASK = Task(
    name="alfworld",
    env_id="qsft/ALFWorld-v0",
    version="0",
    max_steps=MAX_STEPS,
    num_eval_instances=NUM_EVAL_GAMES,
    make_behaviour=make_behaviour,
    default_behaviour_params={"max_wander": 55, "max_epsilon": 1.0},
    unit_rewards=unit_rewards,
    success=success,
    # `python -m envs.measure alfworld --episodes 300`: the default behaviour succeeds in 29.0% of 300
    # training episodes (14% pick-two ... 38% look-at-in-light); the expert solves all 30 held-out games.
    normalizer=ScoreNormalizer(worst=0.0, average=0.290, best=1.0),
    make_solver=ExpertPolicy,
    has_admissible_actions=True,
)

__all__ = ["TASK", "ExpertPolicy", "NoisyExpertPolicy", "make_behaviour", "success", "unit_rewards"]
