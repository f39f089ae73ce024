"""Ray Tune sweeps over any config field of a stage.

    training fields (lr, gamma, tau, ...): each trial is a real training run of the stage (its own Ray Train
        run, reported to Tune through TuneReportCallback, ASHA on the training loss), then an evaluation of
        the trained policy on validation instances of the training split (the trial's `score`; never the
        held-out split, which only the pipeline's final evaluation reads);
    extraction fields (beta, ratio_form, temperature, ranking, greedy_text, sample_support): trials re-use the run's
        trained checkpoints and only re-run evaluation.

Every trial is an MLflow child run of one parent run; the best config (by validation score) is printed and
a comparison plot is written next to the results.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import json
import os
import re
from typing import Any

import envs
from pipeline import tracking
from pipeline.config import ConfigError, EvalConfig, TrainConfig
from pipeline.plotting import pyplot

EXTRACTION_FIELDS = {"beta", "ratio_form", "temperature", "ranking", "greedy_text", "sample_support"}


def parse_search(spec: str):
    """'beta=[1,4,16]' -> grid; 'lr=loguniform(1e-5,1e-3)', 'tau=uniform(0.001,0.01)', 'x=choice([..])'."""
    from ray import tune

    name, sep, expr = spec.partition("=")
    name, expr = name.strip(), expr.strip()
    if not sep or not name:
        raise ConfigError(f"--search expects field=values, got {spec!r}")
    match = re.fullmatch(r"(loguniform|uniform|randint|choice)\((.*)\)", expr)
    try:
        if match:
            kind, args = match.group(1), ast.literal_eval(f"({match.group(2)},)")
            return name, getattr(tune, kind)(*args)
        values = ast.literal_eval(expr)
    except (ValueError, SyntaxError):
        raise ConfigError(f"--search {name}: cannot parse {expr!r}") from None
    if not isinstance(values, list) or not values:
        raise ConfigError(f"--search {name}: expected a list like [1, 4, 16] or a distribution, got {expr!r}")
    return name, tune.grid_search(values)


def _check_fields(names: set[str], stage: str) -> None:
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for name in names:
        top = name.split(".")[0]
        if name in EXTRACTION_FIELDS or top in train_fields:
            continue
        raise ConfigError(f"unknown config field {name!r}: not a TrainConfig field of stage {stage!r} "
                          f"nor an extraction field ({', '.join(sorted(EXTRACTION_FIELDS))})")
    if names & EXTRACTION_FIELDS and names - EXTRACTION_FIELDS:
        raise ConfigError("sweep extraction fields (beta, ...) and training fields in separate sweeps")


def run_sweep(task: str, run_dir: str, stage: str, search: dict[str, Any], num_samples: int = 1,
              preset_name: str = "tiny", overrides: dict | None = None, max_concurrent: int = 1,
              scheduler: str = "asha", progress: bool = True):
    """Sweep `search` ({field: tune domain}) for a task whose pipeline output lives in `run_dir`.

    The run's data (and, for qsft or extraction sweeps, its BC/Q-SFT checkpoints) must exist; run the
    task's job first. Results go to `<run_dir>/sweeps/<name>/`. Returns the Tune ResultGrid.
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from pipeline.run import stage_configs
    from pipeline.train import FINAL_CHECKPOINT, FROM_BC, method_config

    _check_fields(set(search), stage)
    run_dir = os.path.abspath(run_dir)
    extraction = set(search) <= EXTRACTION_FIELDS
    _, bc_cfg, qsft_cfg, eval_cfg = stage_configs(task, preset_name, overrides)
    base = method_config(stage, bc_cfg, qsft_cfg)
    name = "-".join(sorted(search)) + ("-eval" if extraction else f"-{stage}")
    sweep_dir = os.path.join(run_dir, "sweeps", name)
    os.makedirs(sweep_dir, exist_ok=True)
    uri = tracking.tracking_uri_for(run_dir)
    parent = tracking.start_stage_run(sweep_dir, f"{task}-sweep-{name}", uri,
                                      params={"task": task, "stage": stage, "search": json.dumps(
                                          {k: str(v) for k, v in search.items()})})
    bc_ckpt = os.path.join(run_dir, "bc", FINAL_CHECKPOINT)
    data = {} if extraction else _training_data(base, search, run_dir, sweep_dir, envs.get_task(task),
                                                bc_ckpt if stage in FROM_BC else None)
    context = {"task": task, "run_dir": run_dir, "data": data, "sweep_dir": sweep_dir, "stage": stage, "base": base,
               "eval": eval_cfg, "tracking_uri": uri, "parent": parent.run_id,
               "bc": bc_ckpt,
               "qsft": os.path.join(run_dir, "qsft", FINAL_CHECKPOINT), "extraction": extraction}
    if not extraction:  # one small evaluation actor per trial, so training and evaluation both fit on 2 CPUs
        eval_cfg = dataclasses.replace(eval_cfg, num_actors=1, cpus_per_actor=0.25)
        context["eval"] = eval_cfg
    # The trial's own slot plus one per evaluation actor (Tune places a trial's child actors in its group);
    # Train workers are scheduled by Ray Train outside it.
    bundles = [{"CPU": 0.5}] + [{"CPU": eval_cfg.cpus_per_actor}] * eval_cfg.num_actors
    if not extraction:
        context["base"] = base = _fit_workers(base, sum(b["CPU"] for b in bundles) * max_concurrent,
                                              max_concurrent)
    trainable = tune.with_resources(tune.with_parameters(_trial, context=context), tune.PlacementGroupFactory(bundles))
    if scheduler not in ("asha", "fifo"):
        raise ConfigError(f"scheduler must be 'asha' or 'fifo', got {scheduler!r}")
    scheduler = None if extraction or scheduler == "fifo" else ASHAScheduler(
        time_attr="step", grace_period=max(1, base.log_every), reduction_factor=2)
    tuner = tune.Tuner(
        trainable, param_space=search,
        # ASHA decides on the training loss, which every report carries; the best trial is then picked by
        # the validation score, which only the final report has (so no metric is set without a scheduler).
        tune_config=tune.TuneConfig(num_samples=num_samples, scheduler=scheduler,
                                    metric="loss" if scheduler else None, mode="min" if scheduler else None,
                                    max_concurrent_trials=max_concurrent),
        run_config=tune.RunConfig(name="tune", storage_path=sweep_dir, verbose=1 if progress else 0),
    )
    results = tuner.fit()
    best = results.get_best_result(metric="score", mode="max")
    summary = {"best_config": best.config, "best_score": best.metrics.get("score"),
               "trials": [{"config": r.config, "score": (r.metrics or {}).get("score"),
                           "loss": (r.metrics or {}).get("loss")} for r in results]}
    with open(os.path.join(sweep_dir, "sweep.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)
    plot = _plot(summary["trials"], search, os.path.join(sweep_dir, "sweep.png"))
    tracking.finish_stage_run(parent, {"best_score": summary["best_score"] or float("nan")},
                              artifacts=[os.path.join(sweep_dir, "sweep.json"), plot])
    print(f"best config: {best.config}  (validation score {summary['best_score']:.2f})")
    print(f"results: {sweep_dir}/sweep.json, plot: {plot}")
    return results


def _fit_workers(cfg: TrainConfig, held: float, concurrent: int) -> TrainConfig:
    """`cfg` with its Train workers' CPUs cut to what the cluster has left beside the trials' own slots
    (`held` CPUs), so that `concurrent` trials' workers can start. A preset's `cpus_per_worker` is sized for a
    stage alone on the machine; a trial asking for more than is left would wait for it forever."""
    import ray

    if cfg.use_gpu:
        return cfg
    cpus = ray.cluster_resources().get("CPU", 0)
    free = (cpus - held) / (concurrent * cfg.num_workers)
    if cfg.cpus_per_worker <= free:
        return cfg
    if free < 0.25:
        raise ConfigError(f"the cluster's {cpus:g} CPUs leave {free:.2f} per Train "
                          f"worker beside the trials: lower max_concurrent, num_workers or eval.num_actors")
    print(f"sweep: each trial's {cfg.num_workers} Train worker(s) get {free:g} CPUs (cpus_per_worker was "
          f"{cfg.cpus_per_worker:g}), so that {concurrent} trial(s) fit on this cluster")
    return dataclasses.replace(cfg, cpus_per_worker=free)


def _data_key(config: dict[str, Any]) -> str:
    """Which prepared rows a trial trains on: its values of the row-shaping fields (train.DATA_FIELDS)."""
    from pipeline.train import DATA_FIELDS

    return json.dumps({k: v for k, v in sorted(config.items()) if k in DATA_FIELDS})


def _training_data(base: TrainConfig, search: dict[str, Any], run_dir: str, sweep_dir: str, task: envs.Task,
                   bc_checkpoint: str | None) -> dict[str, Any]:
    """{_data_key: TrainingData}: the rows tokenized once per grid point of the swept fields that shape them
    (filtered BC's fraction, SPO's Q0_hat settings, ...), here in the driver, because Ray Data cannot schedule
    its tasks inside a trial's placement group."""
    from pipeline.config import apply_overrides
    from pipeline.train import DATA_FIELDS, prepare_data

    shaping = sorted(set(search) & set(DATA_FIELDS))
    for name in shaping:
        if not (isinstance(search[name], dict) and "grid_search" in search[name]):
            raise ConfigError(f"--search {name}: the field shapes the training rows, which are prepared before "
                              f"the trials, so it takes a list of values like [0.1, 0.3], not a distribution")
    data = {}
    for values in itertools.product(*(search[name]["grid_search"] for name in shaping)):
        settings = dict(zip(shaping, values))
        data[_data_key(settings)] = prepare_data(apply_overrides(base, settings), os.path.join(run_dir, "data"),
                                                 sweep_dir, task, bc_checkpoint)
    return data


def _trial(config: dict[str, Any], context: dict[str, Any]) -> None:
    """One Tune trial: train (a real stage run) and/or evaluate, reporting the validation score."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from pipeline.config import apply_overrides
    from pipeline.evaluate import evaluate, summarize
    from pipeline.policy import PolicySpec
    from pipeline.train import FROM_BC, run_stage

    task, trial_id = context["task"], ray.tune.get_context().get_trial_id()
    trial_dir = os.path.join(context["sweep_dir"], "trials", trial_id)
    eval_cfg: EvalConfig = context["eval"]
    bc, stage, checkpoint = context["bc"], context["stage"], context["qsft"]
    loss, step = float("nan"), 0
    if context["extraction"]:
        eval_cfg, stage = apply_overrides(eval_cfg, config), "qsft"
    else:
        cfg = apply_overrides(context["base"], config)
        result = run_stage(cfg, os.path.join(context["run_dir"], "data"), trial_dir, task,
                           bc_checkpoint=bc if stage in FROM_BC else None, tracking_uri=context["tracking_uri"],
                           progress=False, callbacks=[TuneReportCallback()], parent_run_id=context["parent"],
                           run_name=f"{task}-{stage}-{trial_id}", data=context["data"][_data_key(config)])
        loss, step = float(result.metrics.get("loss", float("nan"))), int(result.metrics.get("step", 0))
        checkpoint = result.checkpoint
    spec = PolicySpec.of_stage(eval_cfg, stage, checkpoint, bc)
    summary = summarize(evaluate(task, spec, eval_cfg, progress=False, split="validation"))
    if context["extraction"]:
        run = tracking.start_stage_run(trial_dir, f"{task}-eval-{trial_id}", context["tracking_uri"],
                                       params=config, parent_run_id=context["parent"])
        tracking.finish_stage_run(run, summary)
    ray.tune.report({"score": summary["score"], "raw_return": summary["raw_return"],
                     "success_rate": summary["success_rate"], "loss": loss, "step": step})


def _plot(trials: list[dict[str, Any]], search: dict[str, Any], path: str) -> str:
    plt = pyplot()

    labels = [", ".join(f"{k}={_fmt(t['config'].get(k))}" for k in search) for t in trials]
    scores = [t["score"] if t["score"] is not None else float("nan") for t in trials]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(trials)), 3.5))
    ax.bar(range(len(trials)), scores, color="C0")
    ax.set_xticks(range(len(trials)), labels, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="validation normalized score", title="sweep: score per trial")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
