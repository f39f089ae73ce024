"""One real end-to-end pipeline: collect -> BC job -> Q-SFT job -> select -> evaluate -> report.

The run is the session fixture `maze_run` (tests/conftest.py): `ray job submit` of jobs/qsft_maze_small.py at
its tiny preset to a `ray start --head` cluster (tests/test_cluster_submit.py checks the submission,
tests/test_learning.py what it learned), so the cluster test, these checks and the learning check share one
pipeline. Re-runs, sweeps and forced stages below run in this process on the session's local Ray, at a few
optimizer steps and episodes each; the forced stage runs in a copy of the folder, so the others read the
submitted run's own results.
"""

import json
import shutil

import mlflow
import pyarrow.parquet as pq
import pytest

import envs
from pipeline.config import EvalConfig
from pipeline.data import read_metadata, shard_files
from pipeline.evaluate import CRASH_ONCE_ENV, evaluate
from pipeline.models import read_stage_info
from pipeline.policy import PolicySpec
from pipeline.run import run_pipeline

TASK = "maze_small"
FEW_EPISODES = {"num_episodes": 4, "num_validation_episodes": 4, "repeats": 1, "envs_per_actor": 2}


def mlflow_runs(out):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out}/mlflow.db")
    return client.search_runs([client.get_experiment_by_name("qsft").experiment_id])


def test_dataset_counts_match_parquet(maze_run):
    out, _ = maze_run
    meta = read_metadata(str(out / "data"))
    rows = sum(pq.read_metadata(f).num_rows for f in shard_files(str(out / "data")))
    task = envs.get_task(TASK)
    assert meta["num_episodes"] == 1000
    assert meta["num_rows"] == rows == meta["num_steps"] + meta["num_episodes"]
    assert meta["task"] == TASK and meta["env_id"] == task.env_id
    assert meta["behaviour_policy"]["params"] == task.default_behaviour_params
    assert meta["num_truncated"] + meta["num_terminated"] == 1000 and meta["num_truncated"] > 0  # time limit
    assert meta["success_rate"] == meta["num_terminated"] / 1000                                  # goal reached


def test_stages_hand_off_hf_checkpoints(maze_run):
    out, _ = maze_run
    bc, qsft = out / "bc" / "checkpoint", out / "qsft" / "checkpoint"
    for ckpt in (bc, qsft):
        assert (ckpt / "config.json").exists() and (ckpt / "tokenizer.json").exists()
        assert not (ckpt / "trainer_state.pt").exists()
    assert read_stage_info(str(bc))["stage"] == "bc"
    info = read_stage_info(str(qsft))
    assert info["stage"] == "qsft" and info["bc_checkpoint"] == str(bc) and info["step"] == 300
    assert info["config"]["backup"] == "action" and 0.0 <= info["metrics"]["target_mean"] <= 1.0
    assert info["metrics"]["support_size"] >= 1


def test_evaluation_records_summary_and_report(maze_run):
    out, summaries = maze_run
    bc_name, qsft_name = summaries
    assert bc_name == "bc" and qsft_name.startswith("qsft(beta=")
    limit = envs.get_task(TASK).max_steps
    for name in ("bc", "qsft"):
        records = json.loads((out / "eval" / name / "records.json").read_text())
        assert [r["episode"] for r in records] == list(range(200))
        assert len({r["instance"] for r in records}) == 40        # the 40 held-out pairs, 5 plays each
        for r in records:
            assert 1 <= r["steps"] <= limit and -limit <= r["raw_return"] <= 0 and 0 <= r["unit_return"] <= 1
            assert len(json.loads(r["transcript"])) == r["steps"] + 1
    html = (out / "report" / "report.html").read_text()
    assert "<table>" in html and "returns.png" in html and (out / "report" / "returns.png").stat().st_size > 1000


def test_mlflow_has_one_run_per_stage(maze_run):
    out, summaries = maze_run
    runs = mlflow_runs(out)
    names = sorted(r.info.run_name for r in runs)
    assert names == sorted([f"{TASK}-bc", f"{TASK}-qsft", *(f"{TASK}-eval-{name}" for name in summaries)])
    qsft = next(r for r in runs if r.info.run_name == f"{TASK}-qsft")
    assert {"loss", "target_mean", "target_clipped_frac", "support_size", "tokens_per_s"} <= set(qsft.data.metrics)
    assert qsft.data.tags["checkpoint"].endswith("qsft/checkpoint")


def test_rerun_skips_finished_stages(maze_run, capsys):
    out, summaries = maze_run
    again = run_pipeline(TASK, str(out), "tiny", {}, progress=False)
    assert again == summaries
    assert capsys.readouterr().out.count("skipped") == 6   # collect, bc, qsft, select, eval x 2


def test_evaluation_is_reproducible_and_survives_a_crashed_actor(maze_run, tmp_path, monkeypatch):
    out, _ = maze_run
    spec = PolicySpec(checkpoint=str(out / "bc" / "checkpoint"), q=str(out / "qsft" / "checkpoint"),
                      temperature=1.0)
    cfg = EvalConfig(num_episodes=8, envs_per_actor=2, num_actors=2)
    first = evaluate(TASK, spec, cfg, progress=False)
    marker = tmp_path / "crashed"
    monkeypatch.setenv(CRASH_ONCE_ENV, str(marker))
    second = evaluate(TASK, spec, cfg, progress=False)
    assert marker.exists()                      # an actor really died ...
    assert [r["episode"] for r in second] == list(range(8))   # ... and every episode counted exactly once
    assert first == second                      # sampled with per-episode seeds: identical records


@pytest.mark.slow   # 72-120 s: the default suite keeps the beta sweep (extraction fields) and stays near 15 minutes
def test_two_trial_sweep_of_a_baseline_trains_real_checkpoints_under_one_mlflow_parent(maze_run):
    """A training sweep over a baseline stage's own field (filtered BC's top fraction), its two trials at once."""
    from pipeline.sweep import parse_search, run_sweep

    out, _ = maze_run
    search = dict([parse_search("filter_top_fraction=[0.3,0.5]")])
    overrides = {"bc": {"max_steps": 4, "log_every": 2}, "eval": FEW_EPISODES}
    results = run_sweep(TASK, str(out), "filtered_bc", search, preset_name="tiny", overrides=overrides,
                        scheduler="fifo", max_concurrent=2, progress=False)
    assert len(results) == 2 and not results.errors
    sweep = out / "sweeps" / "filter_top_fraction-filtered_bc"
    stages = [json.loads(c.read_text()) for c in sorted((sweep / "trials").glob("*/checkpoint/stage.json"))]
    assert sorted(s["config"]["filter_top_fraction"] for s in stages) == [0.3, 0.5]
    for stage in stages:   # each trial kept its own share of the 1,000 episodes
        fraction = stage["config"]["filter_top_fraction"]
        assert stage["stage"] == "filtered_bc" and stage["step"] == 4
        assert 1000 * fraction <= stage["selection"]["episodes_selected"] < 1000
    runs = mlflow_runs(out)
    parent = next(r for r in runs if r.info.run_name == f"{TASK}-sweep-filter_top_fraction-filtered_bc")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and all("loss" in c.data.metrics for c in children)
    assert (sweep / "sweep.png").exists()
    assert json.loads((sweep / "sweep.json").read_text())["best_config"]["filter_top_fraction"] in (0.3, 0.5)


def test_a_baseline_joins_the_report_and_the_dashboard(maze_run, tmp_path):
    """`benchmarks/learning.py --methods bc,spo,qsft` on a copy of the run: SPO is trained (a few steps) on the
    same rows, tracked in the run's MLflow store, evaluated on the held-out split, and its records sit beside BC's
    and Q-SFT's, in the report and in the dashboard."""
    import importlib.util
    import pathlib

    from pipeline.dashboard import load_run

    out = tmp_path / "copy"
    shutil.copytree(maze_run[0], out, ignore=shutil.ignore_patterns("sweeps"))
    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "learning.py"
    spec = importlib.util.spec_from_file_location("learning_benchmark", path)
    learning = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(learning)
    sets = [f"eval.{k}={v}" for k, v in FEW_EPISODES.items()] + ["spo.max_steps=2", "spo.log_every=1", "spo.spo_beta=0.1"]
    result = learning.main(["--task", TASK, "--preset", "tiny", "--out", str(out), "--methods", "bc,spo,qsft",
                            "--no-record", *[a for s in sets for a in ("--set", s)]])
    assert result["spo"]["episodes"] == 4
    assert read_stage_info(str(out / "spo" / "default" / "checkpoint"))["step"] == 2   # spo_beta set: one setting
    assert json.loads((out / "eval" / "spo" / "summary.json").read_text())["policy"] == "spo"
    report = (out / "report" / "report.md").read_text()
    assert all(f"| {name} |" in report for name in ("bc", "spo")) and "| qsft(" in report
    run = load_run(str(out))
    assert list(run.evals)[:1] == ["bc"] and "spo" in run.evals
    spo = next(r for r in mlflow_runs(out) if r.info.run_name == f"{TASK}-spo")   # in the run's own MLflow store
    assert "loss" in spo.data.metrics


def test_beta_sweep_reuses_the_trained_checkpoints(maze_run):
    from pipeline.sweep import parse_search, run_sweep

    out, _ = maze_run
    before = sorted(p.name for p in (out / "qsft").iterdir())
    results = run_sweep(TASK, str(out), "qsft", dict([parse_search("beta=[1.0,16.0]")]), preset_name="tiny",
                        overrides={"eval": {**FEW_EPISODES, "num_actors": 1, "cpus_per_actor": 0.25}},
                        progress=False)
    assert sorted(r.config["beta"] for r in results) == [1.0, 16.0]
    assert all(r.metrics["score"] is not None for r in results)
    assert sorted(p.name for p in (out / "qsft").iterdir()) == before   # nothing retrained


def test_forced_stage_trains_again_from_scratch(maze_run, tmp_path):
    """`--force qsft` redoes the stage (a new Ray Train run and MLflow run from step 0), where a plain
    re-run would resume the finished run and train nothing; the evaluation after it is redone too."""
    out = tmp_path / "copy"
    shutil.copytree(maze_run[0], out, ignore=shutil.ignore_patterns("sweeps"))
    before = (out / "qsft" / "mlflow_run_id").read_text()
    evaluated = (out / "eval" / "qsft" / "summary.json").stat().st_mtime_ns
    run_pipeline(TASK, str(out), "tiny", {"qsft": {"max_steps": 6, "log_every": 3}, "eval": FEW_EPISODES},
                 force=("qsft",), stages=("qsft", "eval"), progress=False)
    after = (out / "qsft" / "mlflow_run_id").read_text()
    assert (out / "eval" / "qsft" / "summary.json").stat().st_mtime_ns != evaluated   # downstream redone too
    assert after != before and read_stage_info(str(out / "qsft" / "checkpoint"))["step"] == 6
    history = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out}/mlflow.db").get_metric_history(after, "loss")
    assert sorted(m.step for m in history) == [3, 6]
