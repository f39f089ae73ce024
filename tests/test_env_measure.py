"""envs.measure: every task has a solver, the command prints its figures, it reproduces the maze constants."""

import pathlib
import subprocess
import sys

import pytest

import envs
from envs.measure import behaviour_episodes, solver_episodes, summarize

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", envs.TASK_NAMES)
def test_every_task_has_a_solver(name):
    solver = envs.get_task(name).make_solver()
    assert callable(solver.reset) and callable(solver.act)


def test_measure_command_prints_behaviour_solver_and_normalizer():
    """With `--behaviour` making every move a shortest-path move, the behaviour is the solver."""
    behaviour = '{"optimal_prob": 1.0, "random_prob": 0.0}'
    lines = subprocess.run(
        [sys.executable, "-m", "envs.measure", "maze_small", "--episodes", "50", "--behaviour", behaviour],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    assert lines[0] == f"maze_small behaviour {behaviour} on 50 training episodes (seeds 0-49):"
    assert "normalizer average -12.36), success 1.0000" in lines[1] and "episodes/s" in lines[2]
    assert lines[3] == "maze_small solver on 40 held-out instances:"
    assert lines[4].startswith("  average raw return -5.4500 (") and "best -5.45), success 1.0000" in lines[4]
    assert lines[5] == "normalizer: worst -16, average -12.36, best -5.45"


@pytest.mark.parametrize("name", ["maze", "maze_small"])
def test_maze_normalizer_constants_are_reproduced(name):
    """`python -m envs.measure NAME --episodes 20000` gives the task's normalizer constants."""
    task = envs.get_task(name)
    assert round(summarize(task, behaviour_episodes(task, 20_000)).raw_return, 3) == task.normalizer.average
    assert round(summarize(task, solver_episodes(task)).raw_return, 2) == task.normalizer.best
