"""MLflow tracking: one run per stage, resumed (not duplicated) when the stage is re-run.

The tracking URI comes from `MLFLOW_TRACKING_URI`, else a SQLite store `mlflow.db` in the run folder
(mlflow 3 refuses plain `file://` stores).
"""

from __future__ import annotations

import math
import os
import subprocess
from dataclasses import dataclass
from typing import Any

RUN_ID_FILE = "mlflow_run_id"
PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class TrackedRun:
    tracking_uri: str
    run_id: str


def tracking_uri_for(root: str, tracking_uri: str | None = None, create: bool = True) -> str | None:
    """Where a run folder's MLflow records live, for writing them and for reading them back (the dashboard):
    `tracking_uri`, else MLFLOW_TRACKING_URI, else a SQLite store `<root>/mlflow.db` (None when reading,
    `create=False`, and the folder has none)."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    db = os.path.join(os.path.abspath(root), "mlflow.db")
    if not create and not os.path.exists(db):
        return None
    os.makedirs(root, exist_ok=True)
    return f"sqlite:///{db}"


def code_version() -> str:
    """The project's git commit (short), with "-dirty" if tracked files differ from it; "unknown" where the
    code is not a git checkout (a copied working directory) or git is missing."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=PROJECT, capture_output=True, text=True, timeout=10,
                                  check=False).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def start_stage_run(folder: str, run_name: str, tracking_uri: str,
                    params: dict[str, Any] | None = None, experiment: str = "qsft",
                    parent_run_id: str | None = None) -> TrackedRun:
    """Create the stage's MLflow run, or reuse the one a previous attempt of this stage created."""
    import mlflow

    uri = tracking_uri
    client = mlflow.MlflowClient(tracking_uri=uri)  # never set_tracking_uri: it leaks into the process env
    id_file = os.path.join(folder, RUN_ID_FILE)
    if os.path.exists(id_file):
        with open(id_file) as f:
            run_id = f.read().strip()
        client.update_run(run_id, status="RUNNING")
        return TrackedRun(uri, run_id)
    exp = client.get_experiment_by_name(experiment)
    experiment_id = exp.experiment_id if exp else client.create_experiment(experiment)
    tags = {"mlflow.runName": run_name}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    run_id = client.create_run(experiment_id, tags=tags, run_name=run_name).info.run_id
    for key, value in (params or {}).items():
        client.log_param(run_id, key, str(value)[:500])
    os.makedirs(folder, exist_ok=True)
    with open(id_file, "w") as f:
        f.write(run_id)
    return TrackedRun(uri, run_id)


def finish_stage_run(run: TrackedRun, metrics: dict[str, Any], checkpoint: str | None = None,
                     artifacts: list[str] = ()) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=run.tracking_uri)
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and math.isfinite(value):
            client.log_metric(run.run_id, f"final_{key}", float(value))
    if checkpoint:
        client.set_tag(run.run_id, "checkpoint", checkpoint)
    for path in artifacts:
        client.log_artifact(run.run_id, path)
    client.set_terminated(run.run_id)
