"""The `Task` record shared by the robot tasks (raw reward 1 on success is already a unit reward)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from envs.base import ScoreNormalizer, Task
from envs.robot.actions import ActionTokenizer
from envs.robot.env import NUM_EVAL_INSTANCES
from envs.robot.goals import Goal
from envs.robot.policy import ScriptedPolicy

VERSION = "1"
ACTION_BINS = 15   # per dimension, odd so that 0 is a bin centre: 2/15 of the range, 6.7 mm of gripper motion a step


def unit_rewards(raw_step_rewards: Sequence[float], terminated: bool) -> list[float]:
    """Identity: the only non-zero raw reward is 1 on the final (success) step."""
    return [float(r) for r in raw_step_rewards]


def success(raw_step_rewards: Sequence[float], terminated: bool) -> bool:
    return bool(terminated and sum(raw_step_rewards) > 0)


def make_solver(goal: Goal) -> ScriptedPolicy:
    """The noise-free script, the strong solver whose held-out success rate is the normalizer's `best`."""
    return ScriptedPolicy(place=goal.uses_marker)


def make_task(goal: Goal, env_id: str, behaviour_params: dict[str, Any], normalizer: ScoreNormalizer) -> Task:
    return Task(
        name=f"robot_{goal.name}",
        env_id=env_id,
        version=VERSION,
        max_steps=goal.max_steps,
        num_eval_instances=NUM_EVAL_INSTANCES,
        make_behaviour=functools.partial(ScriptedPolicy, goal.uses_marker),
        default_behaviour_params=behaviour_params,
        unit_rewards=unit_rewards,
        success=success,
        normalizer=normalizer,
        make_solver=functools.partial(make_solver, goal),
        action_tokenizer=ActionTokenizer(num_bins=ACTION_BINS, action_dim=4),
    )
