"""Robot pick / place from pixels: gymnasium contract, physics success tests, scripted policies,
reproducibility, image codec and action tokens."""

from __future__ import annotations

import json
import math
import os
import re
import warnings

import gymnasium
import numpy as np
import pybullet as p
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.base import play
from envs.robot import scene
from envs.robot.actions import ActionTokenizer
from envs.robot.codec import decode_image, encode_image
from envs.robot.env import NUM_EVAL_INSTANCES, RobotEnv, RobotPickEnv, RobotPlaceEnv
from envs.robot.goals import LIFT_HEIGHT, PLACE_RADIUS
from envs.robot.light_panda import STOCK_URDF
from envs.robot.scene import FINGER_OPEN, HALF
from envs.robot.scene import PANDA_URDF as LIGHT_URDF

TASKS = ["robot_pick", "robot_place"]
ENV_CLASSES = {"robot_pick": RobotPickEnv, "robot_place": RobotPlaceEnv}
# Train instances (index = seed) on which the default behaviour policy, seeded with the same number,
# both fails and succeeds: found by running it; each list must show both outcomes.
MIXED_OUTCOME_SEEDS = {"robot_pick": [0, 1, 4], "robot_place": [3, 4, 1]}


@pytest.fixture(scope="module")
def robot_envs():
    made = {name: cls() for name, cls in ENV_CLASSES.items()}
    yield made
    for env in made.values():
        env.close()


@pytest.mark.parametrize("name", TASKS)
def test_env_checker_passes_without_warnings(name):
    env = gymnasium.make(envs.get_task(name).env_id, render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    env.close()


@pytest.mark.parametrize("name, max_steps", [("robot_pick", 30), ("robot_place", 40)])
def test_task_record(name, max_steps):
    task = envs.get_task(name)
    assert task.name == name and task.max_steps == max_steps and task.num_eval_instances == NUM_EVAL_INSTANCES == 300
    assert task.unit_rewards([0.0, 0.0, 1.0], True) == [0.0, 0.0, 1.0]
    assert task.success([0.0, 0.0, 1.0], True) and not task.success([0.0] * max_steps, False)
    assert task.normalizer.worst == 0.0 and 0.0 < task.normalizer.average < task.normalizer.best <= 1.0
    assert task.normalizer(task.normalizer.average) == 50.0 and task.normalizer(task.normalizer.best) == 100.0


@pytest.mark.parametrize("name", TASKS)
def test_first_observation_and_info(robot_envs, name):
    env = robot_envs[name]
    observation, info = env.reset(seed=0, options={"split": "eval", "index": 7})
    assert env.observation_space.contains(observation)
    assert observation["image"].shape == (64, 64, 3) and observation["image"].dtype == np.uint8
    assert observation["image"].std() > 0  # a real picture, not a blank
    assert observation["proprio"][3] == pytest.approx(2 * FINGER_OPEN, abs=1e-3)  # fingers start open
    assert json.loads(json.dumps(info)) == info
    assert info["split"] == "eval" and info["instance"] == "eval/7" and info["success"] is False
    assert info["target_pos"][2] == pytest.approx(HALF, abs=1e-3)  # resting on the table
    assert 1 <= len(info["distractor_pos"]) <= 2
    assert ("marker_pos" in info) == (name == "robot_place")


def test_same_seed_same_observations_whatever_came_before(robot_envs):
    env, twin = robot_envs["robot_pick"], RobotPickEnv()
    actions = [np.array([0.5, -0.3, -0.8, (-1) ** k], np.float32) for k in range(6)]

    def rollout(e: RobotEnv) -> list[dict]:
        observations = [e.reset(seed=11, options={"split": "train", "index": 3})[0]]
        observations += [e.step(a)[0] for a in actions]
        return observations

    first = rollout(env)
    env.reset(seed=99)
    twin.reset(seed=5)
    for _ in range(8):  # disturb: another episode in the same client, and one in another client
        env.step(env.action_space.sample())
        twin.step(twin.action_space.sample())
    for again in (rollout(env), rollout(twin)):
        for a, b in zip(first, again):
            assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["proprio"], b["proprio"])
    twin.close()


def test_train_draws_are_seeded_and_eval_is_held_out(robot_envs):
    env = robot_envs["robot_pick"]
    drawn = [env.reset(seed=s)[1]["instance"] for s in (1, 2, 1)]
    assert drawn[0] == drawn[2] != drawn[1] and drawn[0].startswith("train/")
    eval_info = env.reset(seed=0, options={"split": "eval", "index": 3})[1]
    train_info = env.reset(seed=0, options={"split": "train", "index": 3})[1]
    assert eval_info["target_pos"] != train_info["target_pos"]
    with pytest.raises(ValueError):
        env.reset(seed=0, options={"split": "eval", "index": NUM_EVAL_INSTANCES})


def test_solver_pick_lifts_the_grasped_cube(robot_envs):
    played = play(robot_envs["robot_pick"], envs.get_task("robot_pick").make_solver(), 0,
                  {"split": "eval", "index": 0})
    info = played.infos[-1]
    assert (played.rewards[-1], played.terminated, played.truncated) == (1.0, True, False) and info["success"]
    assert len(played.actions) <= 15
    assert info["target_pos"][2] >= HALF + LIFT_HEIGHT
    # fingers closed on the 5 cm cube: between its width and its diagonal, whatever its yaw
    assert 2 * HALF - 0.003 < played.observations[-1]["proprio"][3] < 2 * HALF * math.sqrt(2) + 0.003


def test_solver_place_leaves_the_cube_on_the_marker(robot_envs):
    played = play(robot_envs["robot_place"], envs.get_task("robot_place").make_solver(), 0,
                  {"split": "eval", "index": 0})
    info = played.infos[-1]
    assert (played.rewards[-1], played.terminated, played.truncated) == (1.0, True, False) and info["success"]
    assert len(played.actions) <= 25
    target, marker = info["target_pos"], info["marker_pos"]
    assert math.dist(target[:2], marker[:2]) <= PLACE_RADIUS
    assert target[2] == pytest.approx(HALF, abs=0.005)


def test_doing_nothing_truncates_at_the_step_limit(robot_envs):
    env = robot_envs["robot_pick"]
    env.reset(seed=0, options={"split": "eval", "index": 1})
    results = [env.step(np.zeros(4, np.float32))[1:4] for _ in range(env.goal.max_steps)]
    assert all(r == (0.0, False, False) for r in results[:-1])
    assert results[-1] == (0.0, False, True)


@pytest.mark.parametrize("name", TASKS)
def test_behaviour_policy_sometimes_succeeds_sometimes_fails(robot_envs, name):
    task = envs.get_task(name)
    policy = task.make_behaviour(**task.default_behaviour_params)
    outcomes = {play(robot_envs[name], policy, s, {"split": "train", "index": s}).raw_return
                for s in MIXED_OUTCOME_SEEDS[name]}
    assert outcomes == {0.0, 1.0}


def test_behaviour_policy_is_seeded(robot_envs):
    task = envs.get_task("robot_place")
    observation, info = robot_envs["robot_place"].reset(seed=0, options={"split": "eval", "index": 2})
    runs = []
    for _ in range(2):
        policy = task.make_behaviour(**task.default_behaviour_params)
        policy.reset(42)
        runs.append([policy.act(observation, info) for _ in range(5)])
    for a, b in zip(*runs):
        assert a.dtype == np.float32 and a.shape == (4,) and np.abs(a).max() <= 1.0
        assert np.array_equal(a, b)


def test_close_disconnects_only_its_own_client():
    first, second = RobotPlaceEnv(), RobotPlaceEnv()
    client = first._scene.client
    first.close()
    assert not p.isConnected(physicsClientId=client)
    second.reset(seed=0)
    assert second.step(second.action_space.sample())[0]["image"].shape == (64, 64, 3)
    second.close()


def test_light_panda_moves_like_the_stock_one_and_looks_like_it(monkeypatch):
    """The scene's Panda (envs/robot/light_panda.py) has the stock URDF's joints, masses and collision meshes,
    an eighth of its visual triangles, and, after the same actions from the same layout, the same state and a
    camera view within a shade of the stock Panda's."""
    monkeypatch.setattr(scene, "PANDA_URDF", STOCK_URDF)
    stock = RobotPickEnv()
    monkeypatch.setattr(scene, "PANDA_URDF", LIGHT_URDF)
    light = RobotPickEnv()
    body = {name: (env._scene.client, env._scene.robot) for name, env in (("stock", stock), ("light", light))}
    joints = {name: [p.getJointInfo(robot, j, physicsClientId=c)[:14]
                     for j in range(p.getNumJoints(robot, physicsClientId=c))] for name, (c, robot) in body.items()}
    dynamics = {name: [p.getDynamicsInfo(robot, j, physicsClientId=c)[:3] for j in range(-1, 12)]
                for name, (c, robot) in body.items()}
    assert joints["stock"] == joints["light"] and dynamics["stock"] == dynamics["light"]

    def visual_triangles(urdf):
        with open(urdf) as f:
            meshes = re.findall(r'<visual>.*?filename="(?:package://)?([^"]+)"', f.read(), re.DOTALL)
        return sum(open(os.path.join(os.path.dirname(urdf), mesh)).read().count("\nf ") for mesh in meshes)

    assert visual_triangles(LIGHT_URDF) < visual_triangles(STOCK_URDF) / 7

    task = envs.get_task("robot_pick")
    policy = task.make_behaviour(**task.default_behaviour_params)
    policy.reset(0)
    observations = [env.reset(seed=1, options={"split": "train", "index": 1}) for env in (stock, light)]
    differences = []
    for _ in range(20):
        (seen_stock, info), (seen_light, _) = observations
        np.testing.assert_allclose(seen_stock["proprio"], seen_light["proprio"], atol=1e-6)
        differences.append(np.abs(seen_stock["image"].astype(int) - seen_light["image"]).mean())
        action = policy.act(seen_stock, info)
        observations = [env.step(action)[::4] for env in (stock, light)]
    assert max(differences) < 3.0, differences   # of 255, averaged over the frame
    stock.close()
    light.close()


def test_image_codec_round_trip_is_bit_exact(robot_envs):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    rendered = robot_envs["robot_pick"].reset(seed=3)[0]["image"]
    for image in (noise, rendered):
        data = encode_image(image)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        decoded = decode_image(data)
        assert decoded.dtype == np.uint8 and np.array_equal(decoded, image)
    with pytest.raises(ValueError):
        encode_image(noise.astype(np.float32))


def test_action_tokens_hand_computed():
    tokenizer = ActionTokenizer(num_bins=256)  # bin width 2/256 on [-1, 1]
    assert tokenizer.encode([-1.0, 1.0, 0.0, -0.999]) == [0, 255, 128, 0]
    assert tokenizer.encode([-2.0, 7.0, 0.00390625, 0.0078125]) == [0, 255, 128, 129]  # clip; edges
    np.testing.assert_allclose(tokenizer.decode([0, 255, 128, 127]),
                               [-1 + 1 / 256, 1 - 1 / 256, 1 / 256, -1 / 256])
    assert tokenizer.to_text([17, 3, 255, 1]) == "<bin_17> <bin_3> <bin_255> <bin_1>"
    assert tokenizer.from_text(" <bin_17>  <bin_3> <bin_255> <bin_1>\n") == [17, 3, 255, 1]
    vocabulary = tokenizer.vocabulary()
    assert len(vocabulary) == len(set(vocabulary)) == 256 and vocabulary[17] == "<bin_17>"


@pytest.mark.parametrize("bad", ["", "<bin_1> <bin_2> <bin_3>", "<bin_1> <bin_2> <bin_3> <bin_256>",
                                 "<bin_1> <bin_2> <bin_3> bin_4", "<bin_1> <bin_2> <bin_3> <bin_-1>",
                                 "<bin_1> <bin_2> <bin_3> <bin_4> <bin_5>"])
def test_action_text_rejects_malformed(bad):
    with pytest.raises(ValueError):
        ActionTokenizer(num_bins=256).from_text(bad)


@pytest.mark.parametrize("num_bins", [2, 11, 256])
def test_action_tokens_round_trip(num_bins):
    tokenizer = ActionTokenizer(num_bins=num_bins)
    actions = np.random.default_rng(num_bins).uniform(-1, 1, (500, 4))
    for action in actions:
        tokens = tokenizer.encode(action)
        assert all(0 <= t < num_bins for t in tokens)
        assert np.abs(tokenizer.decode(tokens) - action).max() <= 1.0 / num_bins + 1e-6
        assert tokenizer.from_text(tokenizer.to_text(tokens)) == tokens
        assert tokenizer.encode(tokenizer.decode(tokens)) == tokens


@pytest.mark.parametrize("name", TASKS)
def test_state_diagnostic_is_the_same_task_with_the_object_positions_in_proprio(name):
    """`<name>_state` (envs.robot.diagnostic): the same record but for its name and `observe_objects`; its proprio
    is the pixel task's, then the target's, each distractor slot's (zeros when empty) and the marker's position,
    as `info` gives them; the env checker passes."""
    import dataclasses

    task, state = envs.get_task(name), envs.get_task(f"{name}_state")
    assert dataclasses.replace(state, name=name, env_kwargs={}) == task and state.env_kwargs == {"observe_objects": True}
    plain, seen = gymnasium.make(task.env_id), gymnasium.make(state.env_id, **state.env_kwargs)
    options = {"split": "eval", "index": 4}
    (obs, _), (obs_state, info) = plain.reset(seed=1, options=options), seen.reset(seed=1, options=options)
    assert np.array_equal(obs["image"], obs_state["image"])
    slots = info["distractor_pos"] + [[0.0, 0.0, 0.0]] * (2 - len(info["distractor_pos"]))
    expected = [*obs["proprio"], *info["target_pos"], *(v for xyz in slots for v in xyz), *info.get("marker_pos", [])]
    np.testing.assert_allclose(obs_state["proprio"], expected, atol=1e-4)
    assert seen.observation_space["proprio"].shape == (len(expected),)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(seen.unwrapped, skip_render_check=True)
    plain.close()
    seen.close()
