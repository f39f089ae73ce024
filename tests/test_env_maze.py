"""Maze: gymnasium contract, rules, the split, the behaviour policy's calibrated mistakes."""

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.base import play
from envs.maze.env import SMALL, STANDARD, MazeEnv
from envs.maze.policies import (
    MixtureBehaviour,
    MostLikelyMove,
    ShortestPathSolver,
    beeline_move,
    shortest_path_move,
)
from envs.measure import behaviour_episodes

MAX_STEPS, distances_to, move, splits = STANDARD.max_steps, STANDARD.distances_to, STANDARD.move, STANDARD.splits


@pytest.mark.parametrize("layout", ["standard", "small"])
def test_env_checker_passes(layout):
    check_env(gymnasium.make("qsft/Maze-v0", layout=layout).unwrapped, skip_render_check=True)


def test_moves_walls_and_rewards():
    env = MazeEnv()
    observation, info = env.reset(options={"split": "eval", "index": 0})
    start, goal = info["position"], info["goal"]
    assert observation == f"goal {goal[0]} {goal[1]} start {start[0]} {start[1]}\n"
    assert move((1, 1), "up") == (1, 1) and move((1, 1), "down") == (2, 1)   # (0, 1) is a wall
    env._position = (1, 1)
    assert env.step("up")[0] == "wall 1 1\n"
    assert env.step(" Down ")[0] == "2 1\n"
    observation, reward, terminated, truncated, _ = env.step("fly")
    assert (observation, reward, terminated, truncated) == ("no such move 2 1\n", -1.0, False, False)


def test_solver_reaches_goal_in_shortest_distance_with_return_minus_moves_plus_one():
    env = MazeEnv()
    for index in range(20):
        _, info = env.reset(options={"split": "eval", "index": index})
        distance = distances_to(info["goal"])[info["position"]]
        played = play(env, ShortestPathSolver(), 0, {"split": "eval", "index": index})
        assert played.terminated and len(played.rewards) == distance and played.raw_return == -(distance - 1)


def test_time_limit_truncates():
    env = MazeEnv()
    env.reset(options={"split": "train", "index": 0})
    for step in range(MAX_STEPS):   # down, up, down, ... never reaches this instance's goal
        _, _, terminated, truncated, _ = env.step("up" if step % 2 else "down")
        assert not terminated and truncated == (step == MAX_STEPS - 1)


def test_split_is_disjoint_fixed_and_far_enough():
    held_out, train = splits["eval"], splits["train"]
    assert len(held_out) == envs.get_task("maze").num_eval_instances == 100
    assert not set(held_out) & set(train)
    assert all(distances_to(g)[s] >= 4 for s, g in held_out + train)
    assert all(STANDARD.is_open(cell) for s, g in held_out for cell in (s, g))
    assert len(STANDARD.open_cells()) == 40 and len(train) == 67


def test_beeline_is_the_behaviours_mode_and_a_poor_policy():
    """Imitating the data's most likely move scores far below the data, so BC has to be sampled."""
    env, task = MazeEnv(), envs.get_task("maze")
    mode = [play(env, MostLikelyMove(0.3, 0.2), 0, {"split": "eval", "index": i}).raw_return
            for i in range(50)]
    data = [p.raw_return for p in behaviour_episodes(task, 500)]
    assert np.mean(mode) < -22 < np.mean(data) - 4
    assert beeline_move((1, 1), (9, 1)) == "down" and beeline_move((1, 1), (1, 7)) == "right"
    for start, goal in splits["eval"][:50]:
        dist = distances_to(goal)
        assert dist[move(start, shortest_path_move(start, goal))] == dist[start] - 1


def test_behaviour_is_seeded_and_validates_its_probabilities():
    env = MazeEnv()
    first = play(env, MixtureBehaviour(0.3, 0.2), 7)
    assert play(env, MixtureBehaviour(0.3, 0.2), 7) == first
    with pytest.raises(ValueError, match="optimal_prob"):
        MixtureBehaviour(0.8, 0.3)


def test_unit_rewards_and_normalizer():
    task = envs.get_task("maze")
    assert task.unit_rewards([-1.0, -1.0, 0.0], True) == [0.0, 0.0, 1.0]
    assert task.unit_rewards([-1.0] * MAX_STEPS, False) == [0.0] * MAX_STEPS
    assert task.normalizer(-MAX_STEPS) == 0 and task.normalizer(task.normalizer.average) == 50


def test_small_layout_task_has_its_own_split_time_limit_and_trap():
    task = envs.get_task("maze_small")
    env = gymnasium.make(task.env_id, **task.env_kwargs).unwrapped
    held_out, train = SMALL.splits["eval"], SMALL.splits["train"]
    assert len(held_out) == task.num_eval_instances == 40 and len(train) == 40 and not set(held_out) & set(train)
    assert task.max_steps == SMALL.max_steps == 16 and len(SMALL.open_cells()) == 24
    _, info = env.reset(options={"split": "eval", "index": 0})
    assert info["goal"] in SMALL.goals and (info["position"], info["goal"]) == held_out[0]
    # From the top of the middle corridor the goal below is straight down, through a wall: the beeline bumps.
    assert beeline_move((1, 4), (5, 4)) == "down" and SMALL.move((1, 4), "down") == (1, 4)
    assert play(env, task.make_solver(), 0, {"split": "eval", "index": 0}).terminated
    with pytest.raises(ValueError, match="layout"):
        MazeEnv(layout="huge")
