"""The small maze (task "maze_small"): the default suite's learning regression test (envs.maze.env.SMALL)."""

from envs.base import ScoreNormalizer
from envs.maze import maze_task
from envs.maze.env import SMALL

# By `python -m envs.measure maze_small --episodes 20000`.
TASK = maze_task("maze_small", "small", ScoreNormalizer(worst=-float(SMALL.max_steps), average=-12.360, best=-5.45))
