"""Learning checks: the whole pipeline must turn imperfect data into a better policy.

Collect (Ray tasks) -> BC (Ray Train job) -> Q-SFT (Ray Train job, pi_beta's support precomputed by Ray Data)
-> extraction settings chosen on validation instances -> held-out evaluation on Ray actors.

- Default suite (`maze_small`, about two minutes): Q-SFT's extracted policy reaches the goal on more held-out
  pairs than BC, by a margin. The data's favourite move (the beeline) bumps into walls, so imitating the data
  cannot do this; learning the values can. The test fails when the Q-SFT stage is given BC's loss, or when
  the Bellman target is replaced by BC's label (y = 1): both were checked by hand, see benchmarks/LEARNING.md.
- Slow (`maze`, 6 minutes): BC imitates its data far above a random walk, and Q-SFT's Bellman targets stay
  informative: with the maze's support threshold (pi_beta > 0.1) almost none is clipped at 1 (with
  eps = 0.01 the data's rare random moves saturate 40-70% of them, benchmarks/LEARNING.md, maze7).
"""

import gymnasium
import numpy as np
import pytest

import envs
from envs.base import play
from pipeline.models import read_stage_info
from pipeline.run import run_pipeline


class RandomWalk:
    def reset(self, seed):
        self.rng = np.random.default_rng(seed)

    def act(self, observation, info):
        return ("up", "down", "left", "right")[self.rng.integers(4)]


def test_qsft_beats_bc_on_the_small_maze(tmp_path, ray_local):
    summaries = run_pipeline("maze_small", str(tmp_path), "tiny", {}, progress=False)
    bc, qsft = summaries["bc"], summaries["qsft"]
    assert bc["episodes"] == qsft["episodes"] == 40
    assert qsft["success_rate"] >= bc["success_rate"] + 0.2 and qsft["score"] > bc["score"], (bc, qsft)


MAZE_OVERRIDES = {
    "collect": {"episodes": 600},
    "train": {"log_every": 25},
    "bc": {"max_steps": 120},
    "qsft": {"max_steps": 100},
    "eval": {"num_episodes": 60, "temperatures": (), "betas": (), "ratio_forms": (), "temperature": 1.0, "beta": 4.0},
}


@pytest.fixture(scope="module")
def maze_run(tmp_path_factory, ray_local):
    out = tmp_path_factory.mktemp("maze-learning")
    return out, run_pipeline("maze", str(out), "tiny", MAZE_OVERRIDES, progress=False)


@pytest.mark.slow
def test_bc_imitates_its_data_far_above_a_random_walk(maze_run):
    _, summaries = maze_run
    env = gymnasium.make("qsft/Maze-v0")
    task = envs.get_task("maze")
    walks = [task.success(*play(env, RandomWalk(), i, {"split": "eval", "index": i})) for i in range(60)]
    bc = summaries["bc"]
    assert bc["episodes"] == 60 and bc["success_ci_low"] > np.mean(walks) + 0.1, (bc, np.mean(walks))


@pytest.mark.slow
def test_qsft_targets_are_not_saturated(maze_run):
    out, _ = maze_run
    metrics = read_stage_info(str(out / "qsft" / "checkpoint"))["metrics"]
    assert metrics["target_clipped_frac"] < 0.05 and 0.0 < metrics["target_mean"] < 0.9, metrics
