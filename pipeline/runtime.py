"""Start or join Ray: an embedded local Ray on a laptop, the existing cluster under `ray job submit`.

A run's console shows its own lines: a progress line per stage, progress bars of the driver's loops, the
results. Framework output is kept out of it, in one place here:

- Ray's worker processes (Ray Train's controller and workers, Ray Data's coordinators, evaluation actors)
  are not echoed to the driver: their INFO lines, core_worker.cc notes and the training progress bar stay in
  Ray's session logs, `/tmp/ray/session_latest/logs/` (`worker-*.out`, `worker-*.err`). A failing task or
  worker still raises in the driver, with its traceback. `QSFT_WORKER_LOGS=1` echoes them again.
- In the driver, the notices about settings made here (token authentication on, Ray Data's progress bars
  off) and MLflow's INFO lines are silenced; every other warning still shows.
"""

from __future__ import annotations

import logging
import os
import time
import warnings

import ray
import ray.data

# Quiet what users should not have to read (see RAY_NOTES.md, gotcha 12).
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray\..*")

# Driver-side notices about choices made in `init_ray`, not problems.
_NOTICES = ("ray._private.authentication.authentication_token_setup",  # token auth is on (Ray's default, kept)
            "ray.data._internal.progress")                               # Ray Data's progress bars are off
WORKER_LOGS_ENV = "QSFT_WORKER_LOGS"


def init_ray(num_cpus: int | None = None, **kwargs) -> None:
    """Connect to the cluster named by RAY_ADDRESS (set by `ray job submit`), else start a local one.

    A local Ray gets the package directories on the workers' path, so tasks and Train workers
    import `pipeline` and `envs` without an install.
    """
    if ray.is_initialized():
        return
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    for name in _NOTICES:
        logging.getLogger(name).setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.preserve_order = True  # blocks in input order, not completion order: same seeds, same run
    project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runtime_env = {"env_vars": {"PYTHONPATH": project + os.pathsep + os.environ.get("PYTHONPATH", ""),
                                "TOKENIZERS_PARALLELISM": "false", "MLFLOW_LOGGING_LEVEL": "WARNING",
                                "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}}
    quiet = {"logging_level": logging.WARNING, "log_to_driver": os.environ.get(WORKER_LOGS_ENV) == "1"}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], **quiet, **kwargs)
    else:
        ray.init(address="local", num_cpus=num_cpus, runtime_env=runtime_env, include_dashboard=True, **quiet,
                 **kwargs)


def wait_for_free_cpus(timeout_s: float = 60.0) -> None:
    """Wait until the cluster has a free CPU for a Ray Data job the driver is about to run.

    A finished Ray Train run or actor pool returns its CPUs asynchronously, a moment after `fit()` returns; a
    Dataset executed in that moment waits for them, and Ray warns that it "will hang". Past the timeout (a
    cluster genuinely busy elsewhere) the job runs and queues as Ray would.
    """
    if not ray.is_initialized():
        return
    deadline = time.monotonic() + timeout_s
    while not ray.available_resources().get("CPU") and time.monotonic() < deadline:
        time.sleep(0.1)
