"""The learning check of the default suite: the whole pipeline on the small maze (`maze_small`, tiny preset).

Collect (Ray tasks) -> BC (Ray Train job) -> Q-SFT (Ray Train job, action-level backup, pi_beta precomputed by
Ray Data) -> extraction settings chosen on validation instances -> held-out evaluation on Ray actors, as
`make demo` runs it on the standard maze; the run is the session's submitted job (`maze_run`, tests/conftest.py). It asserts:
- BC imitates its data: sampled BC reaches the goal on far more held-out pairs than a uniformly random walker;
- Q-SFT beats BC on the held-out split by a margin (5 normalized points) that a Q-SFT stage replaced by a second
  BC does not reach: with BC decoded over the extraction's support, as Q-SFT is, the real stage is +10.3 at this
  preset and the second BC -0.4 (benchmarks/LEARNING.md, session 28);
- Q-SFT's Bellman targets stay informative: almost none is clipped at 1, and their mean is far from both 0 (values
  that never propagated) and 1 (targets saturated by the max over noisy ratios);
- Q-SFT has learned values: at the training-split states where the data's favourite move (the beeline) is not a
  shortest-path move, its Q read at each move's <|eot|> (the extraction's reading, `LMPolicy.rank`) ranks the
  shortest-path move first far more often than a coin flip, where BC's pi_beta ranks it first rarely
  (benchmarks/maze_q_probe.py).
The Q-SFT stage trained with BC's loss (the BC label as its target), a second BC, fails it (checked by hand, LEARNING.md).
"""

import importlib.util
import pathlib

import gymnasium
import numpy as np

import envs
from envs.base import play
from pipeline.models import read_stage_info


class RandomWalk:
    def reset(self, seed):
        self.rng = np.random.default_rng(seed)

    def act(self, observation, info):
        return ("up", "down", "left", "right")[self.rng.integers(4)]


def test_qsft_learns_values_and_beats_bc_on_the_small_maze(maze_run, ray_local):
    run, summaries = maze_run
    task = envs.get_task("maze_small")
    env = gymnasium.make(task.env_id, **task.env_kwargs)
    played = [play(env, RandomWalk(), i, {"split": "eval", "index": i}) for i in range(task.num_eval_instances)]
    walks = np.mean([task.success(p.rewards, p.terminated) for p in played])
    bc, qsft = summaries.values()  # keyed by policy name: "bc", then "qsft(beta=..., ...)"
    assert bc["episodes"] == qsft["episodes"] == 200 and bc["success_ci_low"] > walks + 0.1, (bc, walks)
    assert qsft["score"] > bc["score"] + 5, (bc, qsft)
    stage = read_stage_info(str(run / "qsft" / "checkpoint"))
    metrics = stage["metrics"]
    assert metrics["target_clipped_frac"] < 0.05 and 0.05 < metrics["target_mean"] < 0.8, metrics
    path = pathlib.Path(__file__).parents[1] / "benchmarks" / "maze_q_probe.py"
    spec = importlib.util.spec_from_file_location("maze_q_probe", path)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    values = probe.probe("maze_small", str(run / "bc" / "checkpoint"), str(run / "qsft" / "checkpoint"),
                         episodes=20, gamma=stage["config"]["gamma"], eps=0.1, beta=16.0, seed=7)
    assert values["bc_prefers_shortest"] < 0.35 and values["candidate_prefers_shortest"] > 0.65, values
