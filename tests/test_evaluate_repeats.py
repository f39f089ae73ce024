"""Repeated plays of a split's instances (`EvalConfig.repeats`): episode i is instance i mod n, with its own seed."""

import pytest

import envs
from pipeline.config import EvalConfig
from pipeline.evaluate import behaviour_records, reset_options, split_size


def test_repeats_play_each_instance_again_with_new_seeds():
    task = envs.get_task("maze_small")
    cfg = EvalConfig(num_episodes=1000, num_validation_episodes=5, repeats=3)
    assert split_size(task, cfg, "eval") == (task.num_eval_instances, 3 * task.num_eval_instances)
    assert split_size(task, cfg, "validation") == (5, 15)
    assert [reset_options("validation", i, 5)["index"] for i in range(7)] == [0, 1, 2, 3, 4, 0, 1]
    assert reset_options("eval", 7, None) == {"split": "eval", "index": 7}
    with pytest.raises(ValueError, match="split must be one of"):
        split_size(task, cfg, "test")

    once = behaviour_records("maze_small", EvalConfig(num_episodes=4, repeats=1))
    thrice = behaviour_records("maze_small", EvalConfig(num_episodes=4, repeats=3))
    assert [r["episode"] for r in thrice] == list(range(12))
    assert thrice[:4] == once  # the first play of each instance is the unrepeated evaluation
    assert len({r["raw_return"] for r in thrice}) > 1
