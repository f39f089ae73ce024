"""`qsft/WebShop-v0`: the task record, the page flow, invalid actions, limits, reproducibility, shoppers."""

from __future__ import annotations

import json
import re
import warnings

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.base import play
from envs.measure import behaviour_episodes, solver_episodes, summarize
from envs.webshop import TASK, make_solver
from envs.webshop.env import WebShopEnv


@pytest.fixture()
def env():
    return WebShopEnv()


def _start(env, index=0, split="eval"):
    observation, info = env.reset(seed=0, options={"split": split, "index": index})
    return env.catalog.goals(split)[index], observation, info


def _search(env, query):
    observation, _, _, _, info = env.step(f"search[{query}]")
    return observation, info


def test_task_record_and_registration():
    assert envs.get_task("webshop") is TASK
    assert (TASK.name, TASK.env_id, TASK.max_steps) == ("webshop", "qsft/WebShop-v0", 15)
    assert TASK.num_eval_instances == 100
    assert TASK.has_admissible_actions
    assert TASK.normalizer.worst == 0.0 and 0 < TASK.normalizer.average < TASK.normalizer.best <= 1
    env = gymnasium.make(TASK.env_id, **TASK.env_kwargs)
    assert isinstance(env.unwrapped, WebShopEnv) and env.unwrapped.max_steps == 15


def test_env_checker_passes(env):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env)


def test_first_observation_is_the_search_page(env):
    goal, observation, info = _start(env, 3)
    assert observation == f"WebShop [SEP] Instruction: [SEP] {goal.instruction_text} [SEP] Search"
    assert info == {"split": "eval", "instance": 3, "page": "search", "admissible_actions": ["search[...]"],
                    "steps": 0}


def test_buying_the_target_with_its_options_scores_one(env):
    goal, _, _ = _start(env, 0)
    target = env.catalog.by_asin[goal.asin]
    observation, info = _search(env, target.title)
    assert f"click[{goal.asin}]" in info["admissible_actions"]
    observation, _, _, _, info = env.step(f"click[{goal.asin}]")
    assert observation.startswith("Back to Search [SEP] < Prev [SEP] ")
    assert f"{target.title} [SEP] Price: {target.price_tag}" in observation
    assert info["page"] == "item" and "click[Buy Now]" in info["admissible_actions"]
    for value in goal.goal_options:
        observation, reward, *_ = env.step(f"click[{value}]")
        assert observation == f"You have clicked {value}." and reward == 0.0
    observation, reward, terminated, truncated, info = env.step("click[Buy Now]")
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert observation == "Thank you for shopping with us! [SEP] Your score (min 0.0, max 1.0) [SEP] 1.0000"
    assert info["purchased"]["asin"] == goal.asin and info["reward_info"]["r_type"] == 1.0
    json.dumps(info)


def test_pagination(env):
    _start(env, 0)
    observation, info = _search(env, "hair extensions")
    seen = []
    for page in range(1, 6):
        assert f"Page {page} (Total results: 50)" in observation
        asins = [a[6:-1] for a in info["admissible_actions"] if re.fullmatch(r"click\[B0\w{8}\]", a)]
        assert len(asins) == 10
        seen += asins
        assert ("click[< Prev]" in info["admissible_actions"]) == (page > 1)
        assert ("click[Next >]" in info["admissible_actions"]) == (page < 5)
        if page < 5:
            observation, _, _, _, info = env.step("click[Next >]")
    assert len(set(seen)) == 50
    observation, _, _, _, info = env.step("click[< Prev]")
    assert "Page 4 (Total results: 50)" in observation
    # an item opened from page 4 goes back to page 4; a sub page goes back to its item page
    env.step(f"click[{seen[30]}]")
    observation, _, _, _, info = env.step("click[Features]")
    assert info["page"] == "features"
    assert info["admissible_actions"] == ["click[Back to Search]", "click[< Prev]"]
    observation, _, _, _, info = env.step("click[< Prev]")
    assert info["page"] == "item"
    observation, _, _, _, info = env.step("click[< Prev]")
    assert "Page 4 (Total results: 50)" in observation
    observation, _, _, _, info = env.step("click[Back to Search]")
    assert info["page"] == "search" and observation.startswith("WebShop [SEP] Instruction:")


def test_results_show_truncated_titles_and_prices(env):
    _start(env, 0)
    observation, _ = _search(env, "office chair lumbar support")
    segments = observation.split(" [SEP] ")
    first = env.engine.search("office chair lumbar support")[0]
    i = segments.index(first.asin)
    assert segments[i + 2] == first.price_tag and len(segments[i + 1]) <= env.title_chars
    assert first.title.startswith(segments[i + 1].removesuffix("..."))


@pytest.mark.parametrize("action, reason", [
    ("", "use search[query]"),
    ("   \n ", "use search[query]"),
    ("buy the thing", "use search[query]"),
    ("click[Buy Now]", "not clickable"),
    ("search[]", "search query is empty"),
    ("click[✓ " + "x" * 100_000 + "]", "not clickable"),
])
def test_invalid_actions_cost_a_step_and_change_nothing(env, action, reason):
    _start(env, 0)
    observation, reward, terminated, truncated, info = env.step(action)
    assert observation.startswith("Invalid action: ") and reason in observation and len(observation) < 300
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["steps"] == 1 and info["page"] == "search" and info["valid_action"] is False


def test_search_only_on_the_search_page_and_case_insensitive_clicks(env):
    _start(env, 0)
    _, info = _search(env, "  Wireless\nEarbuds  ")
    assert info["page"] == "results" and info["valid_action"]
    observation, _, _, _, info = env.step("search[headphones]")
    assert "click[Back to Search] first" in observation and info["page"] == "results"
    asin = info["admissible_actions"][2][6:-1]
    _, _, _, _, info = env.step(f"  CLICK[{asin.lower()}] ")
    assert info["page"] == "item" and info["valid_action"]
    _, _, _, _, info = env.step("click[back to search]")
    assert info["page"] == "search"


def test_full_layout_repeats_the_instruction_and_rerenders_the_item_page():
    env = WebShopEnv(compact=False)
    goal, _, _ = _start(env, 0)
    observation, _ = _search(env, env.catalog.by_asin[goal.asin].title)
    prefix = f"Instruction: [SEP] {goal.instruction_text} [SEP] Back to Search [SEP] "
    assert observation.startswith(prefix + "Page 1")
    env.step(f"click[{goal.asin}]")
    observation, *_ = env.step(f"click[{goal.goal_options[0]}]")
    assert observation.startswith(prefix + "< Prev")
    assert observation.endswith("Buy Now")


def test_step_limit_truncates():
    env = WebShopEnv(max_steps=3)
    _start(env, 0)
    results = [env.step("click[nothing]") for _ in range(3)]
    assert [r[3] for r in results] == [False, False, True] and not any(r[2] for r in results)
    observation, reward, *_ = env.step("search[late]")
    assert "episode is over" in observation and reward == 0.0


def test_instances_and_reproducibility(env):
    first = env.reset(seed=7)
    assert env.reset(seed=7) == first and first[1]["split"] == "train"
    assert {env.reset(seed=s)[1]["instance"] for s in range(10)} != {first[1]["instance"]}
    with pytest.raises(ValueError):
        env.reset(options={"split": "eval", "index": 100})
    policy = TASK.make_behaviour(**TASK.default_behaviour_params)
    runs = [play(env, policy, seed=11) for _ in range(2)]
    assert runs[0] == runs[1]
    assert play(env, policy, seed=12).actions != runs[0].actions


def test_behaviour_is_valid_and_solver_is_much_better():
    solver = solver_episodes(TASK)
    b, s = summarize(TASK, behaviour_episodes(TASK, 150)), summarize(TASK, solver)
    assert s.raw_return > b.raw_return + 0.2 and s.success_rate > b.success_rate + 0.4
    assert abs(b.raw_return - TASK.normalizer.average) < 0.06
    assert abs(s.raw_return - TASK.normalizer.best) < 1e-3
    assert all(len(e.rewards) <= TASK.max_steps and e.terminated for e in solver)


@pytest.mark.slow
def test_measured_normalizer_constants():
    """`python -m envs.measure webshop --episodes 3000` gives the constants."""
    assert round(summarize(TASK, behaviour_episodes(TASK, 3000)).raw_return, 4) == TASK.normalizer.average
    assert round(summarize(TASK, solver_episodes(TASK)).raw_return, 4) == TASK.normalizer.best


def test_behaviour_actions_are_admissible(env):
    policy = TASK.make_behaviour(**TASK.default_behaviour_params)
    for seed in range(30):
        played = play(env, policy, seed)
        for action, info in zip(played.actions, played.infos):
            assert action in info["admissible_actions"] or (action.startswith("search[") and
                                                            info["admissible_actions"] == ["search[...]"])
        json.dumps(played.infos)


def test_unit_rewards_and_success():
    assert TASK.unit_rewards([0.0, 0.0, 0.75], True) == [0.0, 0.0, 0.75]
    assert TASK.success([0.0, 1.0], True) and not TASK.success([0.0, 0.75], True)
    assert not TASK.success([0.0, 0.0], False)


def test_solver_reads_the_full_layout_too():
    compact, full = WebShopEnv(), WebShopEnv(compact=False)
    for i in range(10):
        a = play(compact, make_solver(), i, {"split": "eval", "index": i})
        b = play(full, make_solver(), i, {"split": "eval", "index": i})
        assert a.actions == b.actions and a.rewards == b.rewards
