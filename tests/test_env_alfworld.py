"""ALFWorld: shipped games, the gymnasium env's rules, the planner expert, policies, generator, task record."""

from __future__ import annotations

import json
import random
import sys
from collections import Counter
from pathlib import Path

import gymnasium
import pytest
from alfworld.gen import constants
from gymnasium.utils.env_checker import check_env

import envs
from envs.alfworld import TASK, success, unit_rewards
from envs.alfworld.engine import Engine, read_game
from envs.alfworld.env import GAMES_DIR, INVALID_ACTION, ALFWorldEnv
from envs.alfworld.generate import (
    TASK_TYPES,
    GameSpec,
    Item,
    build_game,
    generate,
    problem_pddl,
    sample_spec,
    solve,
)
from envs.alfworld.policies import ExpertPolicy, NoisyExpertPolicy, make_behaviour
from envs.base import play


@pytest.fixture(scope="module")
def env() -> ALFWorldEnv:
    return ALFWorldEnv()


CAN_HOLD = constants.VAL_RECEPTACLE_OBJECTS
LAMPS = ("DeskLamp", "FloorLamp")

# A hand-made kitchen: an apple on the counter, a closed fridge, a microwave, a sink.
KITCHEN = (("CounterTop|01", "CounterTop"), ("Fridge|01", "Fridge"), ("Microwave|01", "Microwave"),
           ("Sink|01|SinkBasin", "SinkBasin"))


def eval_game(env: ALFWorldEnv, index: int) -> dict:
    return read_game(env.games["eval"][index] / "game.tw-pddl")


def kitchen(task_type: str, parent: str, apple_in: str = "CounterTop|01") -> GameSpec:
    return GameSpec(task_type, 1, "Apple", parent, "", KITCHEN, (Item("Apple|01", "Apple", apple_in),))


def test_shipped_games_cover_every_task_type_in_both_splits():
    for split, per_type in (("train", 8), ("eval", 5)):
        folders = sorted((GAMES_DIR / split).iterdir())
        types = Counter(json.loads((f / "traj_data.json").read_text())["task_type"] for f in folders)
        assert types == {t: per_type for t in TASK_TYPES}
        game = read_game(folders[0] / "game.tw-pddl")
        assert set(game) == {"pddl_domain", "grammar", "pddl_problem", "solvable", "walkthrough"}
        assert game["solvable"] and 3 <= len(game["walkthrough"]) <= 20
        assert "UNKNOWN GOAL" not in game["grammar"]
    assert TASK.num_eval_instances == len(list((GAMES_DIR / "eval").iterdir()))
    assert sum(p.stat().st_size for p in GAMES_DIR.rglob("*") if p.is_file()) < 2.2e6


def test_problem_declares_the_domain_constants_and_the_goal_library_goal():
    problem = problem_pddl(kitchen("pick_cool_then_place_in_recep", "CounterTop"), "p")
    for constant in ("SinkBasinType - rtype", "MicrowaveType - rtype", "FridgeType - rtype",
                     "KnifeType - otype", "ButterKnifeType - otype"):
        assert constant in problem
    assert "(openable Fridge_bar_01)" in problem and "(openable CounterTop_bar_01)" not in problem
    assert "(coolable Apple_bar_01)" in problem and "(canContain FridgeType AppleType)" in problem
    assert "(isCool ?o)" in problem and "(receptacleType ?r CounterTopType)" in problem


def test_sampled_games_respect_the_task_constraints():
    rng = random.Random(0)
    for task_type in TASK_TYPES:
        spec = None
        while spec is None:
            spec = sample_spec(rng, task_type)
        rtypes = {rtype for _, rtype in spec.receptacles}
        where = {rid: rtype for rid, rtype in spec.receptacles}
        targets = [item for item in spec.items if item.type == spec.object_target]
        assert 6 <= len(spec.receptacles) and len(targets) >= (2 if task_type == "pick_two_obj_and_place" else 1)
        assert all(where[item.receptacle] != spec.parent_target for item in targets)   # not solved at start
        assert all(item.type in CAN_HOLD[where[item.receptacle]] for item in spec.items if item.type not in LAMPS)
        if task_type == "look_at_obj_in_light":
            assert [item.type for item in spec.items if item.type in LAMPS] == [spec.toggle_target]
        else:
            assert spec.parent_target in rtypes and spec.object_target in CAN_HOLD[spec.parent_target]
        appliance = {"pick_clean_then_place_in_recep": "SinkBasin", "pick_heat_then_place_in_recep": "Microwave",
                     "pick_cool_then_place_in_recep": "Fridge"}.get(task_type)
        assert appliance is None or appliance in rtypes


def test_planner_solves_a_hand_made_game_and_solved_draws_are_dropped():
    engine = Engine()
    game = build_game(kitchen("pick_cool_then_place_in_recep", "CounterTop"), "cool an apple", "p")
    assert solve(engine, game) == ["go to countertop 1", "take apple 1 from countertop 1", "go to fridge 1",
                                   "cool apple 1 with fridge 1", "go to countertop 1",
                                   "move apple 1 to countertop 1"]
    already_there = build_game(kitchen("pick_and_place_simple", "CounterTop"), "put an apple", "p")
    assert solve(engine, already_there) is None


def test_memoized_text_generation_matches_textworld(env):
    game = eval_game(env, 5)
    transcripts = []
    for engine in (Engine(memoize=False), Engine()):
        engine.load(game)
        states, rng = [engine.reset()], random.Random(0)
        for _ in range(6):
            states.append(engine.step(rng.choice(states[-1].admissible)))
        transcripts.append(states)
    assert transcripts[0] == transcripts[1]


def test_env_checker_passes():
    check_env(gymnasium.make(TASK.env_id).unwrapped)


def test_registered_id_and_task_record():
    assert envs.get_task("alfworld") is TASK
    assert TASK.env_id == "qsft/ALFWorld-v0" and TASK.max_steps == 30 and TASK.has_admissible_actions
    assert isinstance(gymnasium.make(TASK.env_id).unwrapped, ALFWorldEnv)
    assert TASK.normalizer(TASK.normalizer.average) == pytest.approx(50.0)
    assert TASK.normalizer(1.0) == pytest.approx(100.0)


def test_first_observation_is_the_room_and_the_task(env):
    argv = list(sys.argv)
    observation, info = env.reset(seed=0, options={"split": "eval", "index": 3})
    assert sys.argv == argv   # Fast Downward's translator overwrites sys.argv; the engine restores it
    folder = env.games["eval"][3]
    traj = json.loads((folder / "traj_data.json").read_text())
    assert observation.startswith("You are in the middle of a room. Looking quickly around you, you see a ")
    assert observation.endswith(f"Your task is to: {traj['task_desc']}.")
    assert info["split"] == "eval" and info["instance"] == f"eval/{folder.name}"
    assert info["task_type"] == traj["task_type"] == "pick_heat_then_place_in_recep"
    assert {"look", "inventory", "help"} <= set(info["admissible_actions"])
    assert info["expert_action"] == eval_game(env, 3)["walkthrough"][0]
    assert json.loads(json.dumps(info)) == info


def test_invalid_actions_cost_a_turn_and_change_nothing(env):
    _, info = env.reset(seed=0, options={"split": "eval", "index": 0})
    for action in ["", "   ", "fly to the moon", "é" * 5000, "go to\nnowhere", "take apple"]:
        observation, reward, terminated, truncated, after = env.step(action)
        assert (observation, reward, terminated, truncated) == (INVALID_ACTION, 0.0, False, False)
        assert after["admissible_actions"] == info["admissible_actions"]
    goto = next(a for a in info["admissible_actions"] if a.startswith("go to"))
    observation, *_ = env.step("  " + goto.upper().replace(" ", " \n "))
    assert observation.startswith(f"You arrive at {goto[6:]}.")


def test_expert_walkthrough_wins_with_reward_on_the_last_step_only(env):
    for index in (1, 5):
        walkthrough = eval_game(env, index)["walkthrough"]
        episode = play(env, ExpertPolicy(), 0, {"split": "eval", "index": index})
        assert episode.actions == walkthrough
        assert episode.rewards == [0.0] * (len(walkthrough) - 1) + [1.0] and episode.terminated
        assert success(episode.rewards, episode.terminated)


def test_expert_plan_is_kept_repaired_or_replanned_after_deviations(env):
    # eval 5: two cellphones (on bed 1, in drawer 1) to go on sidetable 1; a laptop 2 lies on bed 1.
    _, info = env.reset(seed=0, options={"split": "eval", "index": 5})
    expected = [("go to bed 1", "take cellphone 1 from bed 1"),      # followed: the walkthrough advances
                ("look", "take cellphone 1 from bed 1"),              # observation only: plan kept
                ("go to desk 1", "go to bed 1"),                      # stray go-to: go back first
                ("go to bed 1", "take cellphone 1 from bed 1"),
                ("take laptop 2 from bed 1", "move laptop 2 to bed 1")]   # other deviation: replanned
    for action, expert_action in expected:
        _, _, _, _, info = env.step(action)
        assert info["expert_action"] == expert_action
    steps, terminated = len(expected), False
    while not terminated and steps < 30:
        _, _, terminated, _, info = env.step(info["expert_action"])
        steps += 1
    assert terminated and steps == len(expected) + 1 + 8   # put the laptop back, then the walkthrough's last 8


def test_truncation_at_the_step_limit(env):
    env.reset(seed=0, options={"split": "eval", "index": 2})
    for step in range(1, 31):
        _, reward, terminated, truncated, _ = env.step("look")
        assert reward == 0.0 and not terminated and truncated == (step == 30)


def test_train_draws_are_seeded_and_splits_are_disjoint(env):
    drawn = {env.reset(seed=s)[1]["instance"] for s in range(4)}
    assert all(i.startswith("train/") for i in drawn) and len(drawn) > 1
    assert env.reset(seed=3)[1]["instance"] == env.reset(seed=3)[1]["instance"]
    problems = {split: {read_game(p / "game.tw-pddl")["pddl_problem"].split("(:objects")[1]
                        for p in (GAMES_DIR / split).iterdir()} for split in ("train", "eval")}
    assert not problems["train"] & problems["eval"]


def test_behaviour_is_reproducible_and_degrades_the_expert(env):
    eval_0 = {"split": "eval", "index": 0}
    default = make_behaviour(**TASK.default_behaviour_params)
    assert play(env, default, 7, eval_0) == play(env, default, 7, eval_0)
    assert play(env, default, 7, eval_0).actions != play(env, default, 8, eval_0).actions
    expert_like = NoisyExpertPolicy(max_wander=0, max_epsilon=0.0)
    assert play(env, expert_like, 7, eval_0).actions == eval_game(env, 0)["walkthrough"]
    with pytest.raises(ValueError):
        NoisyExpertPolicy(max_epsilon=1.5)


def test_unit_rewards_and_success_by_hand():
    assert unit_rewards([0.0, 0.0, 1.0], True) == [0.0, 0.0, 1.0]
    assert unit_rewards([0.0] * 30, False) == [0.0] * 30
    assert success([0.0, 1.0], True) and not success([0.0, 0.0], False)


@pytest.mark.slow
def test_generate_one_game_per_type_and_the_expert_solves_each(tmp_path: Path):
    generate(tmp_path, n_train=6, n_eval=1, seed=123)
    generated = ALFWorldEnv(games_dir=tmp_path)
    assert len(generated.games["train"]) == 6 and len(generated.games["eval"]) == 1
    seen_types = set()
    for index in range(6):
        episode = play(generated, ExpertPolicy(), 0, {"split": "train", "index": index})
        assert episode.terminated and episode.rewards[-1] == 1.0
        seen_types.add(episode.infos[0]["task_type"])
    assert seen_types == set(TASK_TYPES)


def test_collection_records_success_per_task_type(tmp_path, ray_local):
    from pipeline.collect import _by_task_type, collect
    from pipeline.data import load_episodes, read_metadata

    out = str(tmp_path / "data")
    collect("alfworld", 12, out, workers=2, progress=False)
    meta, episodes = read_metadata(out), load_episodes(out)
    by_type: dict[str, list[bool]] = {}
    for ep in episodes:
        by_type.setdefault(ep.infos[0]["task_type"], []).append(success(ep.rewards, ep.terminated))
    assert meta["episodes_by_task_type"] == {t: len(v) for t, v in sorted(by_type.items())}
    assert meta["success_rate_by_task_type"] == {t: pytest.approx(sum(v) / len(v)) for t, v in sorted(by_type.items())}
    assert set(meta["success_rate_by_task_type"]) <= set(TASK_TYPES) and len(by_type) > 1
    assert sum(meta["episodes_by_task_type"].values()) == meta["num_episodes"] == 12
    assert 0 < meta["success_rate"] < 1   # a mix, so the per-type rates are not trivially all 0 or all 1
    assert _by_task_type(["", ""], [True, False]) == {}   # tasks without task types get no such keys
