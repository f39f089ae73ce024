"""`ray job submit --working-dir . -- python jobs/qsft_wordle.py` against a real `ray start --head` cluster.

The submission is the session fixture `submitted_wordle_run` (tests/conftest.py): its run folder is also the
one real end-to-end pipeline that tests/test_pipeline_e2e.py checks stage by stage. The task-specific part of
the WebShop submission (ranking admissible actions) runs in the default suite as
tests/test_admissible_actions.py; the whole WebShop submission is slow.
"""

import json

import pytest


@pytest.mark.timeout(900)
def test_submit_wordle_job_to_a_local_cluster(submitted_wordle_run):
    run = submitted_wordle_run
    submit, out = run.submit, run.out
    assert submit.returncode == 0, (submit.stdout + submit.stderr)[-3000:]
    assert "SUCCEEDED" in run.job_list, run.job_list[-3000:]
    for path in ("data/dataset.json", "bc/checkpoint/stage.json", "qsft/checkpoint/stage.json",
                 "eval/qsft/summary.json", "report/report.html"):
        assert (out / path).exists(), path
    summary = json.loads((out / "eval" / "qsft" / "summary.json").read_text())
    assert summary["episodes"] == 16 and 0.0 <= summary["success_rate"] <= 1.0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_submit_webshop_job_to_a_local_cluster(tmp_path):
    """The same submission with WebShop's long pages (768-token context, a 1,024-token BPE)."""
    from conftest import submit_to_a_local_cluster

    out = tmp_path / "webshop"
    run = submit_to_a_local_cluster("jobs/qsft_webshop.py", out, [
        "--set", "collect.episodes=64", "--set", "train.batch_size=4", "--set", "train.max_steps=3",
        "--set", "train.log_every=3", "--set", "eval.num_episodes=4", "--set", "eval.envs_per_actor=2"])
    assert run.submit.returncode == 0, (run.submit.stdout + run.submit.stderr)[-3000:]
    assert "SUCCEEDED" in run.job_list, run.job_list[-3000:]
    for path in ("data/dataset.json", "bc/checkpoint/stage.json", "qsft/checkpoint/stage.json",
                 "eval/qsft/summary.json", "report/report.html"):
        assert (out / path).exists(), path
    summary = json.loads((out / "eval" / "qsft" / "summary.json").read_text())
    assert summary["episodes"] == 4 and 0.0 <= summary["success_rate"] <= 1.0
