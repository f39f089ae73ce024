"""Shared fixtures: one local Ray for the session (never a running cluster), small datasets, and one real
pipeline submitted with `ray job submit` to a `ray start --head` cluster of its own: the small maze's
pipeline (`jobs/qsft_maze_small.py --preset tiny`, unchanged). Its run folder is the default suite's end-to-end pipeline
and its learning check at once: the cluster test, the end-to-end tests (which re-run stages in it, on the
session's local Ray) and the learning test all read it.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAY = os.path.join(os.path.dirname(sys.executable), "ray")

@pytest.fixture(scope="session")
def ray_local():
    os.environ.pop("RAY_ADDRESS", None)
    import ray

    from pipeline.runtime import init_ray

    init_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True)
def own_mlflow_store(monkeypatch):
    """Each run folder keeps its own MLflow store: no MLFLOW_TRACKING_URI from the caller or an earlier test."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cli(*args, env, timeout=300):
    return subprocess.run([RAY, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


@dataclass
class SubmittedRun:
    out: Path                        # the job's run folder
    submit: subprocess.CompletedProcess
    job_list: str                    # `ray job list` after the job


def submit_to_a_local_cluster(job: str, out: Path, sets: list[str]) -> SubmittedRun:
    """`ray job submit --working-dir . -- python <job> --preset tiny --out <out> <sets>` against a real
    `ray start --head` cluster of its own, stopped before this returns."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]  # the job's `python` is the venv's
    temp = "/tmp/qsft-ray-test"  # short: Ray's socket paths must stay under the OS limit
    shutil.rmtree(temp, ignore_errors=True)
    # --block in a process group of its own: stopping it stops this cluster only (`ray stop` would kill
    # every Ray on the machine, the test session's own included).
    # Ports of its own, so another Ray on the machine (a laptop's, a test session's) cannot collide with it.
    gcs, dashboard, agent_http, agent_grpc = (free_port() for _ in range(4))
    address = f"http://127.0.0.1:{dashboard}"
    head = subprocess.Popen([RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
                             "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
                             f"--dashboard-agent-listen-port={agent_http}", f"--dashboard-agent-grpc-port={agent_grpc}",
                             "--num-cpus=2", f"--temp-dir={temp}", "--disable-usage-stats"], cwd=ROOT, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            if ray_cli("job", "list", "--address", address, env=env, timeout=60).returncode == 0:
                break
            time.sleep(1)
        for _ in range(60):  # the job agent starts a little after the dashboard answers
            submit = ray_cli("job", "submit", "--address", address, "--working-dir", ".", "--",
                             "python", job, "--preset", "tiny", "--out", str(out), *sets, env=env, timeout=1500)
            if "No available agent" not in submit.stderr:
                break
            time.sleep(2)
        job_list = ray_cli("job", "list", "--address", address, env=env, timeout=60).stdout
    finally:
        # Killed, not stopped: the cluster's state is thrown away, and `ray start --block` takes ~35 s to stop its
        # processes on SIGTERM. Nothing outlives it (Ray starts its processes to die with their parent).
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
    return SubmittedRun(out, submit, job_list)


@pytest.fixture(scope="session")
def submitted_run(tmp_path_factory):
    """jobs/qsft_maze_small.py at its own `tiny` preset, submitted to a cluster of its own."""
    return submit_to_a_local_cluster("jobs/qsft_maze_small.py", tmp_path_factory.mktemp("submitted") / "maze_small",
                                     [])


@pytest.fixture(scope="session")
def maze_run(submitted_run):
    """The submitted run's folder, and {policy name: summary of its evaluation records} (what the job's
    `run_pipeline` returned), bc first."""
    import json

    from pipeline.evaluate import summarize
    from pipeline.report import load_records

    run = submitted_run
    assert run.submit.returncode == 0, (run.submit.stdout + run.submit.stderr)[-3000:]
    summaries = {}
    for name in ("bc", "qsft"):
        folder = run.out / "eval" / name
        policy = json.loads((folder / "summary.json").read_text())["policy"]
        summaries[policy] = summarize(load_records(str(folder)))
    return run.out, summaries


def scratch_checkpoints(tmp_path_factory, cfg, texts: list[str], prefix: str) -> list[str]:
    """Two untrained checkpoints (seeds 1 and 2) sharing one tokenizer trained on `texts`: a BC- and a
    Q-SFT-shaped pair for policy tests."""
    from pipeline.models import build_tokenizer, load_initial_model, save_checkpoint

    tokenizer = build_tokenizer(cfg, texts)
    paths = []
    for seed in (1, 2):
        path = str(tmp_path_factory.mktemp(f"{prefix}{seed}"))
        save_checkpoint(path, load_initial_model(cfg, tokenizer, seed), tokenizer, {"stage": "test"})
        paths.append(path)
    return paths


def fit_behaviour(model, padded: dict, steps: int = 20):
    """A few BC steps of `model` on a padded batch: a pi_beta whose probabilities depend on the state and
    exceed the support thresholds (a random one puts ~1/V on every token). Returns the model, in eval mode."""
    import torch

    from pipeline.algorithm import step_loss
    from pipeline.config import TrainConfig
    from pipeline.models import TokenLogits

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss, _ = step_loss(TrainConfig(stage="bc"), padded, TokenLogits(model), None, None)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def assert_job_succeeded(run: SubmittedRun, out: Path, episodes: int) -> None:
    """A submitted pipeline job exited 0, Ray reports it SUCCEEDED, and every stage left its artefact."""
    import json

    assert run.submit.returncode == 0, (run.submit.stdout + run.submit.stderr)[-3000:]
    assert "SUCCEEDED" in run.job_list, run.job_list[-3000:]
    for path in ("data/dataset.json", "bc/checkpoint/stage.json", "qsft/checkpoint/stage.json",
                 "eval/qsft/summary.json", "report/report.html"):
        assert (out / path).exists(), path
    summary = json.loads((out / "eval" / "qsft" / "summary.json").read_text())
    assert summary["episodes"] == episodes and 0.0 <= summary["success_rate"] <= 1.0
