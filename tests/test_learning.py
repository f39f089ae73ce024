"""The learning regression test: on the maze, the full pipeline must turn imperfect data into a better policy.

Collect (Ray tasks) -> BC (Ray Train job) -> Q-SFT (Ray Train job, pi_beta's support precomputed by Ray Data)
-> extraction pi ∝ pi_beta * exp(beta * p_theta / pi_beta) -> held-out evaluation on Ray actors, at a small
budget. The extraction settings are fixed here (a test is not a reported result; the benchmark chooses them
on validation instances). Swapping the Q-SFT stage for BC, or the Bellman target for the BC label (y = 1),
makes the extracted policy a sharpened BC, which this data punishes: the test fails on both (checked by hand,
see benchmarks/LEARNING.md).
"""

import pytest

from pipeline.run import run_pipeline

OVERRIDES = {
    "collect": {"episodes": 1500},
    "train": {"num_workers": 1, "cpus_per_worker": 2.0, "log_every": 50},
    "bc": {"max_steps": 250},
    "qsft": {"max_steps": 250},
    "eval": {"num_episodes": 100, "temperatures": (), "betas": (), "ratio_forms": (), "temperature": 1.0,
             "beta": 16.0, "ratio_form": True},
}


@pytest.fixture(scope="module")
def maze_run(tmp_path_factory, ray_local):
    out = tmp_path_factory.mktemp("maze-learning")
    return run_pipeline("maze", str(out), "tiny", OVERRIDES, progress=False)


def test_qsft_beats_bc_on_held_out_mazes(maze_run):
    bc, qsft = maze_run["bc"], maze_run[next(name for name in maze_run if name != "bc")]
    assert bc["episodes"] == qsft["episodes"] == 100
    assert qsft["score"] - qsft["score_ci"] > bc["score"] + bc["score_ci"], (bc, qsft)
