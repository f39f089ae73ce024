"""One real end-to-end Wordle pipeline: collect -> BC job -> Q-SFT job -> evaluate -> report.

The run is the session fixture `submitted_wordle_run` (tests/conftest.py): `ray job submit` of
jobs/qsft_wordle.py to a `ray start --head` cluster (tests/test_cluster_submit.py checks the submission), so
the cluster test and these checks share one pipeline. Re-runs, sweeps and forced stages below run in this
process on the session's local Ray, in the same folder.

Small on purpose (200 episodes, a few optimizer steps, 16 evaluation episodes); the checks are about the
hand-offs, artefacts and bookkeeping, not about the score (see the slow tests and the issue notes).
"""

import json

import mlflow
import pyarrow.parquet as pq
import pytest
from conftest import WORDLE_OVERRIDES as OVERRIDES

import envs
from pipeline.config import EvalConfig
from pipeline.data import read_metadata, shard_files
from pipeline.evaluate import CRASH_ONCE_ENV, evaluate, summarize
from pipeline.models import read_stage_info
from pipeline.policy import PolicySpec
from pipeline.report import load_records
from pipeline.run import run_pipeline


def mlflow_runs(out):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out}/mlflow.db")
    return client.search_runs([client.get_experiment_by_name("qsft").experiment_id])


@pytest.fixture(scope="module")
def pipeline_run(submitted_wordle_run, ray_local):
    """The submitted run's folder, and {policy name: summary of its evaluation records} (what the job's
    `run_pipeline` returned)."""
    run = submitted_wordle_run
    assert run.submit.returncode == 0, (run.submit.stdout + run.submit.stderr)[-3000:]
    summaries = {}
    for name in ("bc", "qsft"):
        folder = run.out / "eval" / name
        policy = json.loads((folder / "summary.json").read_text())["policy"]
        summaries[policy] = summarize(load_records(str(folder)))
    return run.out, summaries


def test_dataset_counts_match_parquet(pipeline_run):
    out, _ = pipeline_run
    meta = read_metadata(str(out / "data"))
    rows = sum(pq.read_metadata(f).num_rows for f in shard_files(str(out / "data")))
    assert meta["num_episodes"] == 200
    assert meta["num_rows"] == rows == meta["num_steps"] + meta["num_episodes"]
    assert meta["task"] == "wordle" and meta["env_id"] == "qsft/Wordle-v0"
    assert meta["behaviour_policy"]["params"] == envs.get_task("wordle").default_behaviour_params
    assert meta["num_truncated"] == 0 and meta["num_terminated"] == 200   # Wordle ends by its rules


def test_stages_hand_off_hf_checkpoints(pipeline_run):
    out, _ = pipeline_run
    bc, qsft = out / "bc" / "checkpoint", out / "qsft" / "checkpoint"
    for ckpt in (bc, qsft):
        assert (ckpt / "config.json").exists() and (ckpt / "tokenizer.json").exists()
        assert not (ckpt / "trainer_state.pt").exists()
    assert read_stage_info(str(bc))["stage"] == "bc"
    info = read_stage_info(str(qsft))
    assert info["stage"] == "qsft" and info["bc_checkpoint"] == str(bc) and info["step"] == 6
    assert 0.0 <= info["metrics"]["target_mean"] <= 1.0
    assert info["metrics"]["support_size"] >= 1


def test_evaluation_records_summary_and_report(pipeline_run):
    out, summaries = pipeline_run
    assert set(summaries) == {"bc", "qsft(beta=4)"}
    for name in ("bc", "qsft"):
        records = json.loads((out / "eval" / name / "records.json").read_text())
        assert [r["episode"] for r in records] == list(range(16))
        for r in records:
            assert 1 <= r["steps"] <= 6 and -6 <= r["raw_return"] <= 0 and 0 <= r["unit_return"] <= 1
            assert len(json.loads(r["transcript"])) == r["steps"] + 1
    html = (out / "report" / "report.html").read_text()
    assert "<table>" in html and "returns.png" in html and (out / "report" / "returns.png").stat().st_size > 1000


def test_mlflow_has_one_run_per_stage(pipeline_run):
    out, _ = pipeline_run
    runs = mlflow_runs(out)
    names = sorted(r.info.run_name for r in runs)
    assert names == ["wordle-bc", "wordle-eval-bc", "wordle-eval-qsft(beta=4)", "wordle-qsft"]
    qsft = next(r for r in runs if r.info.run_name == "wordle-qsft")
    assert {"loss", "target_mean", "target_clipped_frac", "support_size", "tokens_per_s"} <= set(qsft.data.metrics)
    assert qsft.data.tags["checkpoint"].endswith("qsft/checkpoint")


def test_rerun_skips_finished_stages(pipeline_run, capsys):
    out, summaries = pipeline_run
    again = run_pipeline("wordle", str(out), "tiny", OVERRIDES, progress=False)
    assert again == summaries
    assert capsys.readouterr().out.count("skipped") == 6   # collect, bc, qsft, select, eval x 2


def test_evaluation_is_reproducible_and_survives_a_crashed_actor(pipeline_run, tmp_path, monkeypatch):
    out, _ = pipeline_run
    spec = PolicySpec(behaviour=str(out / "bc" / "checkpoint"), q=str(out / "qsft" / "checkpoint"),
                      temperature=1.0)
    cfg = EvalConfig(num_episodes=8, envs_per_actor=2, num_actors=2)
    first = evaluate("wordle", spec, cfg, progress=False)
    marker = tmp_path / "crashed"
    monkeypatch.setenv(CRASH_ONCE_ENV, str(marker))
    second = evaluate("wordle", spec, cfg, progress=False)
    assert marker.exists()                      # an actor really died ...
    assert [r["episode"] for r in second] == list(range(8))   # ... and every episode counted exactly once
    assert first == second                      # sampled with per-episode seeds: identical records


def test_two_trial_sweep_trains_real_checkpoints_under_one_mlflow_parent(pipeline_run):
    from pipeline.sweep import parse_search, run_sweep

    out, _ = pipeline_run
    search = dict([parse_search("lr=[1e-3,3e-4]")])
    overrides = {**OVERRIDES, "train": {**OVERRIDES["train"], "max_steps": 4, "log_every": 4},
                 "eval": {"num_episodes": 4, "num_validation_episodes": 4}}
    results = run_sweep("wordle", str(out), "qsft", search, preset_name="tiny", overrides=overrides,
                        scheduler="fifo", progress=False)
    assert len(results) == 2 and not results.errors
    trials = out / "sweeps" / "lr-qsft" / "trials"
    checkpoints = sorted(trials.glob("*/checkpoint/stage.json"))
    assert len(checkpoints) == 2
    assert {json.loads(c.read_text())["config"]["lr"] for c in checkpoints} == {1e-3, 3e-4}
    runs = mlflow_runs(out)
    parent = next(r for r in runs if r.info.run_name == "wordle-sweep-lr-qsft")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and all("loss" in c.data.metrics for c in children)
    assert (out / "sweeps" / "lr-qsft" / "sweep.png").exists()
    assert json.loads((out / "sweeps" / "lr-qsft" / "sweep.json").read_text())["best_config"]["lr"] in (1e-3, 3e-4)


def test_beta_sweep_reuses_the_trained_checkpoints(pipeline_run):
    from pipeline.sweep import parse_search, run_sweep

    out, _ = pipeline_run
    before = sorted(p.name for p in (out / "qsft").iterdir())
    results = run_sweep("wordle", str(out), "qsft", dict([parse_search("beta=[1.0,16.0]")]), preset_name="tiny",
                        overrides={"eval": {"num_episodes": 4, "num_validation_episodes": 4, "envs_per_actor": 2,
                                            "num_actors": 1,
                                            "cpus_per_actor": 0.25}}, progress=False)
    assert sorted(r.config["beta"] for r in results) == [1.0, 16.0]
    assert all(r.metrics["score"] is not None for r in results)
    assert sorted(p.name for p in (out / "qsft").iterdir()) == before   # nothing retrained


def test_forced_stage_trains_again_from_scratch(pipeline_run):
    """`--force qsft` redoes the stage (a new Ray Train run and MLflow run from step 0), where a plain
    re-run would resume the finished run and train nothing."""
    out, _ = pipeline_run
    before = (out / "qsft" / "mlflow_run_id").read_text()
    evaluated = (out / "eval" / "qsft" / "summary.json").stat().st_mtime_ns
    run_pipeline("wordle", str(out), "tiny", OVERRIDES, force=("qsft",), stages=("qsft", "eval"), progress=False)
    after = (out / "qsft" / "mlflow_run_id").read_text()
    assert (out / "eval" / "qsft" / "summary.json").stat().st_mtime_ns != evaluated   # downstream redone too
    assert after != before and read_stage_info(str(out / "qsft" / "checkpoint"))["step"] == 6
    history = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out}/mlflow.db").get_metric_history(after, "loss")
    assert sorted(m.step for m in history) == [3, 6]
