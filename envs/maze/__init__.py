"""Maze (LMRL-Gym's fully observed maze): walk from a start cell to a goal cell in text.

Two tasks on one environment (envs.maze.env): "maze" on the standard layout (100 held-out (start, goal)
pairs; the demo, `make demo`) and "maze_small" on the small one (40 held-out pairs; the
default suite's learning regression test, envs.maze.small). Four moves, -1 per move until the goal (raw
return -(moves - 1) when it is reached, -max_steps when the time limit cuts the episode).

Unit reward: 1 on the move that reaches the goal, 0 elsewhere, so the discounted unit return is
gamma^(moves - 1): the discount alone makes shorter paths worth more, and the Q-values depend on the
position and the goal only (the stage presets use gamma = 0.9, which separates a shortest-path move from a
two-move detour by a factor 1 / 0.81).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from envs.base import ScoreNormalizer, Task
from envs.maze.env import LAYOUTS, STANDARD
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


def maze_task(name: str, layout: str, normalizer: ScoreNormalizer) -> Task:
    """The task record of the maze on `LAYOUTS[layout]`."""
    grid = LAYOUTS[layout]
    return Task(
        name=name,
        env_id="qsft/Maze-v0",
        version="1",
        max_steps=grid.max_steps,
        num_eval_instances=grid.num_eval,
        make_behaviour=functools.partial(MixtureBehaviour, layout=grid),
        default_behaviour_params={"optimal_prob": 0.3, "random_prob": 0.2},
        unit_rewards=unit_rewards,
        success=reached,
        normalizer=normalizer,
        env_kwargs={"layout": layout},
        make_solver=functools.partial(ShortestPathSolver, grid),
        has_admissible_actions=True,
    )


# worst: the time limit; average: the behaviour policy over 20,000 training episodes; best: the shortest-path
# solver on the held-out pairs (both by `python -m envs.measure TASK --episodes 20000`).
TASK = maze_task("maze", "standard", ScoreNormalizer(worst=-float(STANDARD.max_steps), average=-17.849, best=-8.62))
