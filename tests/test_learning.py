"""The learning check of the default suite: the whole pipeline on the small maze (`maze_small`, tiny preset).

Collect (Ray tasks) -> BC (Ray Train job) -> Q-SFT (Ray Train job, pi_beta's support precomputed by Ray Data)
-> extraction settings chosen on validation instances -> held-out evaluation on Ray actors. What it asserts:
- BC imitates its data: sampled BC reaches the goal on far more held-out pairs than a uniformly random walker;
- Q-SFT's Bellman targets stay informative: almost none is clipped at 1, and their mean is far from both 0 (values
  that never propagated) and 1 (targets saturated by the max over noisy ratios, benchmarks/LEARNING.md).
What it does NOT assert: Q-SFT's held-out score above BC's. On this budget the extracted policy does beat BC, but a
Q-SFT stage sabotaged to train BC's loss beats it just as much (the ratio form's noise breaks the behaviour's
beeline loops; benchmarks/LEARNING.md, small maze), so such an assertion would not test Q-learning.
"""

import gymnasium
import numpy as np

import envs
from envs.base import play
from pipeline.models import read_stage_info
from pipeline.run import run_pipeline


class RandomWalk:
    def reset(self, seed):
        self.rng = np.random.default_rng(seed)

    def act(self, observation, info):
        return ("up", "down", "left", "right")[self.rng.integers(4)]


def test_bc_imitates_and_qsft_targets_stay_informative_on_the_small_maze(tmp_path, ray_local):
    summaries = run_pipeline("maze_small", str(tmp_path), "tiny", {}, progress=False)
    task = envs.get_task("maze_small")
    env = gymnasium.make(task.env_id, **task.env_kwargs)
    walks = np.mean([task.success(*play(env, RandomWalk(), i, {"split": "eval", "index": i}))
                     for i in range(task.num_eval_instances)])
    bc = summaries["bc"]
    assert bc["episodes"] == 40 and bc["success_ci_low"] > walks + 0.1, (bc, walks)
    metrics = read_stage_info(str(tmp_path / "qsft" / "checkpoint"))["metrics"]
    assert metrics["target_clipped_frac"] < 0.05 and 0.05 < metrics["target_mean"] < 0.8, metrics
