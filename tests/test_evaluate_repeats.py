"""Repeated plays of a split's instances (`EvalConfig.repeats`): episode i is instance i mod n, with its own seed."""

import numpy as np
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


def test_validation_can_play_its_instances_more_often_than_the_held_out_split():
    task = envs.get_task("maze")
    cfg = EvalConfig(num_episodes=100, num_validation_episodes=20, repeats=2, validation_repeats=6)
    assert split_size(task, cfg, "eval") == (100, 200) and split_size(task, cfg, "validation") == (20, 120)


def test_seeded_draws_skip_the_instances_held_back_for_validation():
    from envs.base import reset_instance

    rng = np.random.default_rng(0)
    assert {reset_instance({"skip": 3}, {"train": 5}, rng)[1] for _ in range(200)} == {3, 4}
    assert reset_instance({"index": 1, "skip": 3}, {"train": 5}, rng) == ("train", 1)   # an explicit index is played
    with pytest.raises(ValueError, match="skip"):
        reset_instance({"skip": 5}, {"train": 5}, rng)


def test_validation_instances_in_the_data_are_a_config_error_that_names_the_fields():
    from pipeline.config import ConfigError
    from pipeline.run import stage_configs

    collect, *_, evaluation = stage_configs("maze", "tiny", {"collect": {"validation_instances": 20},
                                                            "eval": {"num_validation_episodes": 20}})
    assert collect.validation_instances == evaluation.num_validation_episodes == 20
    with pytest.raises(ConfigError, match="eval.num_validation_episodes.*collect.validation_instances"):
        stage_configs("maze", "tiny", {"collect": {"validation_instances": 20}, "eval": {"num_validation_episodes": 21}})
