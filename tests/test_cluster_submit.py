"""`ray job submit --working-dir . -- python jobs/qsft_maze_small.py` against a real `ray start --head` cluster.

The submission is the session fixture `submitted_run` (tests/conftest.py): its run folder is also the one real
end-to-end pipeline that tests/test_pipeline_e2e.py checks stage by stage, and the learning check's
(tests/test_learning.py). The task-specific part of
the WebShop submission (ranking admissible actions) runs in the default suite as
tests/test_admissible_actions.py; the whole WebShop submission is slow.
"""

import pytest
from conftest import assert_job_succeeded, submit_to_a_local_cluster


@pytest.mark.timeout(1500)  # the submitted small-maze pipeline runs here, in this test's setup
def test_submit_maze_job_to_a_local_cluster(submitted_run):
    assert_job_succeeded(submitted_run, submitted_run.out, episodes=200)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_submit_webshop_job_to_a_local_cluster(tmp_path):
    """The same submission with WebShop's long pages (768-token context, a 1,024-token BPE)."""

    out = tmp_path / "webshop"
    run = submit_to_a_local_cluster("jobs/qsft_webshop.py", out, [
        "--set", "collect.episodes=64", "--set", "train.batch_size=4", "--set", "train.max_steps=3",
        "--set", "train.log_every=3", "--set", "eval.num_episodes=4", "--set", "eval.envs_per_actor=2"])
    assert_job_succeeded(run, out, episodes=4)
