"""Maze (LMRL-Gym's fully observed maze, task "maze"): walk from a start cell to a goal cell in text.

A fixed grid maze; instances are (start, goal) pairs, 200 of them held out. Four moves, -1 per move until
the goal (raw return -(moves - 1) when it is reached, -MAX_STEPS when the time limit cuts the episode).

Unit reward: 1 on the move that reaches the goal, 0 elsewhere, so the discounted unit return is
gamma^(moves - 1): the discount alone makes shorter paths worth more, and the Q-values depend on the
position and the goal only (the stage presets use gamma = 0.9, which separates a shortest-path move from a
two-move detour by a factor 1 / 0.81). This is the fastest-learning task, the demo and the learning test.
"""

from __future__ import annotations

from collections.abc import Sequence

from envs.base import ScoreNormalizer, Task
from envs.maze.env import MAX_STEPS, NUM_EVAL
from envs.maze.policies import MixtureBehaviour, ShortestPathSolver


def reached(rewards: Sequence[float], terminated: bool) -> bool:
    """Solved iff the episode terminated on the goal (reward 0)."""
    return bool(terminated) and len(rewards) > 0 and rewards[-1] == 0.0


def unit_rewards(rewards: Sequence[float], terminated: bool) -> list[float]:
    """1 on the move that reaches the goal, 0 on every other move."""
    unit = [0.0] * len(rewards)
    if reached(rewards, terminated):
        unit[-1] = 1.0
    return unit


def make_behaviour(optimal_prob: float, random_prob: float) -> MixtureBehaviour:
    return MixtureBehaviour(optimal_prob=optimal_prob, random_prob=random_prob)


TASK = Task(
    name="maze",
    env_id="qsft/Maze-v0",
    version="1",
    max_steps=MAX_STEPS,
    num_eval_instances=NUM_EVAL,
    make_behaviour=make_behaviour,
    default_behaviour_params={"optimal_prob": 0.3, "random_prob": 0.2},
    unit_rewards=unit_rewards,
    success=reached,
    # worst: the time limit; average: the behaviour policy over 20,000 training episodes; best: the
    # shortest-path solver on the 100 held-out pairs (both by `python -m envs.maze.measure --episodes 20000`).
    normalizer=ScoreNormalizer(worst=-float(MAX_STEPS), average=-17.849, best=-8.62),
    make_solver=ShortestPathSolver,
)
