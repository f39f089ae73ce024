"""A training stage killed mid-run resumes from its last checkpoint when re-run with the same folder; Q-SFT's
resume restores the target network and the optimizer; checkpoints follow `checkpoint_every`."""

import dataclasses
import os
import signal
import subprocess
import sys
import time

import mlflow
import pytest
import torch

import envs
from pipeline.collect import collect
from pipeline.models import load_model, read_stage_info
from pipeline.run import stage_configs
from pipeline.train import load_trainer_state, prepare_data, run_stage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.timeout(600)
def test_killed_bc_stage_resumes_from_its_last_checkpoint(tmp_path, ray_local):
    data, out = str(tmp_path / "data"), str(tmp_path / "bc")
    collect("wordle", 120, data, progress=False)
    flags = ["--max_steps", "12", "--batch_size", "4", "--checkpoint_every", "3", "--log_every", "3",
             "--warmup_steps", "1"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    job = subprocess.Popen([sys.executable, "jobs/train.py", "--stage", "bc", "--data", data, "--out", out, *flags],
                           cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    runs = os.path.join(out, "ray", "train")
    deadline = time.time() + 400
    while time.time() < deadline and job.poll() is None:
        done = [d for d in os.listdir(runs) if d.startswith("step_")] if os.path.isdir(runs) else []
        if done:
            break
        time.sleep(0.5)
    assert job.poll() is None, "the job ended before it could be killed"
    os.killpg(job.pid, signal.SIGKILL)  # the whole job: driver, its local Ray and the Train workers
    job.wait()
    assert not os.path.exists(os.path.join(out, "checkpoint"))

    _, bc, _, _ = stage_configs("wordle", "tiny", {"bc": {"max_steps": 12, "batch_size": 4, "checkpoint_every": 3,
                                                          "log_every": 3, "warmup_steps": 1}})
    result = run_stage(bc, data, out, "wordle", progress=False)
    assert result.resumed_from_step >= 3
    assert read_stage_info(result.checkpoint)["step"] == 12
    with open(os.path.join(out, "mlflow_run_id")) as f:
        run_id = f.read().strip()
    history = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_metric_history(run_id, "loss")
    steps = sorted(m.step for m in history)
    assert steps[0] == 3 and steps[-1] == 12   # one MLflow run across both attempts


# One batch of 8 episodes per epoch: every step trains on the same rows, wherever a run (re)starts. Warm-up
# longer than the run keeps the learning rate of a step independent of the run's total steps.
ONE_BATCH = {"batch_size": 8, "num_workers": 1, "cpus_per_worker": 1.0, "warmup_steps": 10}


@pytest.fixture(scope="module")
def one_batch_data(tmp_path_factory, ray_local):
    data = str(tmp_path_factory.mktemp("one_batch") / "data")
    collect("wordle", 8, data, progress=False)
    return data


@pytest.fixture(scope="module")
def bc_run(one_batch_data):
    """A BC stage whose checkpoint_every (3) is not a multiple of its log_every (2)."""
    _, bc, _, _ = stage_configs("wordle", "tiny", {"bc": {**ONE_BATCH, "max_steps": 4, "checkpoint_every": 3,
                                                          "log_every": 2}})
    out = os.path.join(os.path.dirname(one_batch_data), "bc")
    return run_stage(bc, one_batch_data, out, "wordle", progress=False), out


def test_checkpoints_follow_checkpoint_every_and_metrics_log_every(bc_run):
    _, out = bc_run
    steps = sorted(name for name in os.listdir(os.path.join(out, "ray", "train")) if name.startswith("step_"))
    assert steps == ["step_0000003", "step_0000004"]
    with open(os.path.join(out, "mlflow_run_id")) as f:
        run_id = f.read().strip()
    store = f"sqlite:///{os.path.dirname(out)}/mlflow.db"
    assert [m.step for m in mlflow.MlflowClient(tracking_uri=store).get_metric_history(run_id, "loss")] == [2, 4]


@pytest.mark.timeout(900)
def test_resumed_qsft_run_matches_an_uninterrupted_one(bc_run, one_batch_data, tmp_path):
    """Stopped after 3 of 6 steps and re-run in its folder, Q-SFT ends where a straight 6-step run ends:
    the same policy, target network and optimizer state."""
    bc_checkpoint = bc_run[0].checkpoint
    _, _, qsft, _ = stage_configs("wordle", "tiny", {"qsft": {**ONE_BATCH, "max_steps": 6, "tau": 0.1}})
    data = prepare_data(qsft, one_batch_data, str(tmp_path), envs.get_task("wordle"), bc_checkpoint)
    runs = {}
    for name, steps in (("straight", [6]), ("resumed", [3, 6])):
        for max_steps in steps:
            runs[name] = run_stage(dataclasses.replace(qsft, max_steps=max_steps), one_batch_data,
                                   str(tmp_path / name), "wordle", bc_checkpoint=bc_checkpoint, progress=False,
                                   data=data)
    assert runs["straight"].resumed_from_step == 0 and runs["resumed"].resumed_from_step == 3
    states = {name: load_trainer_state(str(tmp_path / name / "ray" / "train" / "step_0000006")) for name in runs}
    models = {name: load_model(run.checkpoint).state_dict() for name, run in runs.items()}
    assert states["straight"]["step"] == states["resumed"]["step"] == 6

    def assert_close(a, b):
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5, msg=key)

    assert_close(models["straight"], models["resumed"])
    assert_close(states["straight"]["target"], states["resumed"]["target"])
    optimizers = [states[name]["optimizer"]["state"] for name in runs]
    assert optimizers[0].keys() == optimizers[1].keys()
    for index in optimizers[0]:
        assert_close(optimizers[0][index], optimizers[1][index])
