"""The staged pipeline of one task: collect -> BC -> Q-SFT -> select settings -> evaluate both -> report.

Stages hand off by path under one output folder and are skipped when their output exists, unless forced
(forcing a stage redoes every stage after it too), made with another config (`config_digest`: every field but
the runtime ones such as the number of actors), or made from upstream outputs that have changed since (a new
dataset or checkpoint, e.g. from jobs/collect.py or jobs/train.py; `STAGE_INPUTS`). Each output's config
digest and the `fingerprint` of each of its inputs are recorded in stage_inputs.json:

    <out>/data/dataset.json            collection (Ray tasks -> Parquet)
    <out>/bc/checkpoint/stage.json     BC stage (its own Ray Train run)
    <out>/qsft/checkpoint/stage.json   Q-SFT stage (its own Ray Train run, loads the BC checkpoint)
    <out>/select/selection.json        decoding and extraction settings chosen on validation instances
    <out>/eval/<policy>/summary.json   evaluation on held-out instances (Ray actors)
    <out>/report/report.html           table + plots (also logged to MLflow)
    <out>/stage_seconds.json           wall time of each stage that ran
    <out>/stage_inputs.json            fingerprints of the upstream outputs each stage's output was made from

A training stage holds the lock `<out>/<stage>.lock` while it trains (`pipeline.data.folder_lock`), so a
second run training into the same folder is refused (FolderBusy) instead of interleaving checkpoints.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import time
from typing import Any

import envs
from envs import Task
from pipeline import tracking
from pipeline.config import (
    MODEL_PRESETS,
    CollectConfig,
    ConfigError,
    EvalConfig,
    ModelConfig,
    TrainConfig,
    apply_overrides,
    config_digest,
)
from pipeline.presets import preset

STAGES = ("collect", "bc", "qsft", "select", "eval", "report")
STAGE_SECONDS_FILE = "stage_seconds.json"
STAGE_INPUTS_FILE = "stage_inputs.json"
# The upstream outputs each stage's output is made from (evaluation per policy: eval_bc, eval_qsft).
STAGE_INPUTS = {"bc": ("collect",), "qsft": ("collect", "bc"), "select": ("bc", "qsft"),
                "eval_bc": ("bc", "select"), "eval_qsft": ("bc", "qsft", "select")}


def stage_configs(task: str, preset_name: str, overrides: dict[str, dict[str, Any]] | None = None):
    """(collect, BC, Q-SFT, eval) configs of a preset with `overrides` applied; a bad field raises ConfigError."""
    plan = preset(task, preset_name)
    for section, values in (overrides or {}).items():
        if section not in ("collect", "train", "bc", "qsft", "eval"):
            raise ValueError(f"unknown override section {section!r} (collect, train, bc, qsft, eval)")
        plan.setdefault(section, {}).update(values)
    shared = dict(plan.get("train", {}))
    model_name = shared.pop("model", "tiny")
    if model_name not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {model_name!r}; choose one of {', '.join(MODEL_PRESETS)}")
    base = TrainConfig(model=apply_overrides(ModelConfig(), MODEL_PRESETS[model_name]))
    base = apply_overrides(base, shared)
    bc = apply_overrides(base, {"stage": "bc", **plan.get("bc", {})})
    qsft = apply_overrides(base, {"stage": "qsft", **plan.get("qsft", {})})
    evaluation = apply_overrides(EvalConfig(), plan.get("eval", {}))
    collect = apply_overrides(CollectConfig(), plan.get("collect", {}))
    if 0 < collect.validation_instances < evaluation.num_validation_episodes:
        raise ConfigError(f"config field 'eval.num_validation_episodes' ({evaluation.num_validation_episodes}) exceeds "
                          f"'collect.validation_instances' ({collect.validation_instances}): validation would play "
                          "instances that are in the data")
    return collect, bc, qsft, evaluation


def fingerprint(marker: str) -> str | None:
    """A stage output's identity: the digest of its marker file (dataset.json, stage.json, ...); None if absent.

    The marker is written last and changes with every new output (a new collection's timing, a new
    checkpoint's metrics), so an unchanged digest means an unchanged output.
    """
    try:
        with open(marker, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()[:16]
    except FileNotFoundError:
        return None


def training_markers(out: str) -> dict[str, str]:
    """The marker files of run folder `out`'s data and trained BC and Q-SFT stages."""
    from pipeline.data import METADATA_FILE
    from pipeline.models import STAGE_FILE
    from pipeline.train import FINAL_CHECKPOINT

    return {"collect": os.path.join(out, "data", METADATA_FILE),
            **{stage: os.path.join(out, stage, FINAL_CHECKPOINT, STAGE_FILE) for stage in ("bc", "qsft")}}


def made_from(cfg: Any, markers: dict[str, str], upstream: tuple[str, ...]) -> dict[str, str | None]:
    """What a stage's output is made from: its config's `config_digest` and each upstream output's `fingerprint`."""
    return {"config": config_digest(cfg), **{name: fingerprint(markers[name]) for name in upstream}}


def changed_inputs(out: str, key: str, inputs: dict[str, str | None]) -> list[str]:
    """The names in `inputs` (a config digest, upstream fingerprints) whose digest differs from the one output `key`
    of run folder `out` was made from (none if unrecorded)."""
    recorded = _read_json(os.path.join(out, STAGE_INPUTS_FILE)).get(key, {})
    return [name for name, digest in inputs.items() if recorded.get(name, digest) != digest]


def record_inputs(out: str, key: str, inputs: dict[str, str | None]) -> None:
    """Record in `out`/stage_inputs.json that output `key` was made from `inputs`."""
    path = os.path.join(out, STAGE_INPUTS_FILE)
    _write_json(path, {**_read_json(path), key: inputs})


def _write_json(path: str, record: dict) -> None:
    with open(path, "w") as f:
        json.dump(record, f, indent=1)


def _read_json(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def run_pipeline(task: Task | str, out: str, preset_name: str = "tiny", overrides: dict | None = None,
                 force: tuple[str, ...] = (), stages: tuple[str, ...] = STAGES, progress: bool = True) -> dict:
    """Run (or resume) the task's pipeline in `out` (`task`: a Task or its name); returns {policy name: evaluation
    summary}."""
    from pipeline.collect import collect
    from pipeline.data import folder_lock, read_metadata
    from pipeline.evaluate import EvalPool, summarize
    from pipeline.policy import PolicySpec
    from pipeline.report import SUMMARY_FILE, load_runs, results_table, save_records, write_report
    from pipeline.select import SELECTION_FILE, apply_selection, describe, select_settings
    from pipeline.tokenize import action_budget_warning
    from pipeline.train import FINAL_CHECKPOINT, run_stage

    unknown = [s for s in (*stages, *force) if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; the stages are {', '.join(STAGES)}")
    if force:  # a redone stage invalidates everything after it
        force = STAGES[min(STAGES.index(s) for s in force):]
    out = os.path.abspath(out)
    task = envs.as_task(task)
    collect_cfg, bc_cfg, qsft_cfg, eval_cfg = stage_configs(task.name, preset_name, overrides)
    data = os.path.join(out, "data")
    bc_ckpt = os.path.join(out, "bc", FINAL_CHECKPOINT)
    qsft_ckpt = os.path.join(out, "qsft", FINAL_CHECKPOINT)

    selection_path = os.path.join(out, "select", SELECTION_FILE)
    folders = {name: os.path.join(out, "eval", name) for name in ("bc", "qsft")}
    markers = {**training_markers(out), "select": selection_path,
               **{f"eval_{name}": os.path.join(folder, SUMMARY_FILE) for name, folder in folders.items()}}
    tracking_uri = tracking.tracking_uri_for(out)
    timings_path = os.path.join(out, STAGE_SECONDS_FILE)
    timings: dict[str, float] = _read_json(timings_path)

    # The selection is made on validation instances, so the held-out episode count is not part of what it is made with.
    validation_cfg = dataclasses.replace(eval_cfg, num_episodes=EvalConfig.num_episodes)
    configs = {"collect": collect_cfg, "bc": bc_cfg, "qsft": qsft_cfg, "select": validation_cfg, "eval_bc": eval_cfg,
               "eval_qsft": eval_cfg}

    def inputs(key: str) -> dict[str, str | None]:
        return made_from(configs[key], markers, STAGE_INPUTS.get(key, ()))

    def changed(key: str) -> list[str]:
        return changed_inputs(out, key, inputs(key))

    def needed(stage: str, key: str | None = None) -> bool:
        """Whether to run `stage` (into output `key`, default the stage's name)."""
        key = key or stage
        if stage not in stages:
            return False
        if changed(key):
            print(f"[{stage}] redone: {' and '.join(changed(key))} changed since {markers[key]} was made")
            return True
        if stage in force or not os.path.exists(markers[key]):
            return True
        print(f"[{stage}] skipped: {markers[key]} exists (use --force {stage} to redo)")
        return False

    def finished(key: str, started: float) -> None:
        """Record the stage's wall time and what its output was made from."""
        timings[key] = round(time.perf_counter() - started, 1)
        _write_json(timings_path, timings)
        record_inputs(out, key, inputs(key))

    if needed("collect"):
        t = time.perf_counter()
        meta = collect(task, collect_cfg.episodes, data, seed=collect_cfg.seed,
                       behaviour_params=collect_cfg.behaviour or None,
                       validation_instances=collect_cfg.validation_instances, progress=progress)
        finished("collect", t)
        print(f"[collect] {meta['num_episodes']} episodes, {meta['num_steps']} steps, "
              f"mean return {meta['return']['mean']:.2f}, success {100 * meta['success_rate']:.1f}%")
    for stage, cfg, bc in (("bc", bc_cfg, None), ("qsft", qsft_cfg, bc_ckpt)):
        if needed(stage):
            folder = os.path.join(out, stage)
            t = time.perf_counter()
            with folder_lock(folder):  # FolderBusy if another run trains into this folder
                if stage in force or changed(stage):  # a redo starts over; a re-run resumes an interrupted stage
                    shutil.rmtree(folder, ignore_errors=True)
                record_inputs(out, stage, inputs(stage))  # so that only the same config and inputs resume it
                result = run_stage(cfg, data, folder, task, bc_checkpoint=bc, tracking_uri=tracking_uri,
                                   progress=progress)
            finished(stage, t)
            print(f"[{stage}] checkpoint {result.checkpoint} (loss {result.metrics.get('loss', float('nan')):.4f})")

    @functools.cache
    def check_action_budget() -> None:
        """Once, before the first stage that decodes (a skipped re-run reads no data)."""
        warning = task.action_tokenizer is None and action_budget_warning(data, bc_ckpt, eval_cfg.max_action_tokens)
        if warning:
            print(f"[eval] warning: {warning}")

    with EvalPool(task, eval_cfg) as pool:  # one set of actors for the selection and the held-out evaluation
        if needed("select"):
            check_action_budget()
            t = time.perf_counter()
            selection = select_settings(pool, bc_ckpt, qsft_ckpt, eval_cfg, progress=progress)
            os.makedirs(os.path.dirname(selection_path), exist_ok=True)
            _write_json(selection_path, selection)
            finished("select", t)
        chosen_cfg = eval_cfg
        if os.path.exists(selection_path):
            selection = _read_json(selection_path)
            chosen_cfg = apply_selection(eval_cfg, selection)
            print(f"[select] {describe(selection)}")
        specs = {"bc": PolicySpec.from_config(chosen_cfg, bc_ckpt),
                 "qsft": PolicySpec.from_config(chosen_cfg, bc_ckpt, qsft_ckpt)}
        for name, spec in specs.items():
            if needed("eval", f"eval_{name}"):
                check_action_budget()
                t = time.perf_counter()
                records = pool.evaluate(spec, chosen_cfg.seed, "eval", progress)
                finished(f"eval_{name}", t)
                save_records(folders[name], records, {"policy": spec.name,
                                                      "eval_config": dataclasses.asdict(chosen_cfg)})
    runs = load_runs(folders.values())

    if "report" in stages and runs:
        dataset = read_metadata(data)
        page = write_report(os.path.join(out, "report"), task, runs, dataset)
        _track_evaluation(out, tracking_uri, task.name, preset_name, runs, page, timings)
        print(f"\n{task.name} ({preset_name}) on held-out instances:\n")
        print(results_table({name: summarize(r) for name, r in runs.items()}))
        print(f"\nreport: {page}")
    return {name: summarize(records) for name, records in runs.items()}


def _track_evaluation(out: str, tracking_uri: str, task: str, preset_name: str, runs: dict, page: str,
                      timings: dict) -> None:
    from pipeline.evaluate import summarize

    folder = os.path.join(out, "report")
    for name, records in runs.items():
        run = tracking.start_stage_run(os.path.join(folder, name.split("(")[0]), f"{task}-eval-{name}",
                                       tracking_uri, params={"task": task, "preset": preset_name, "policy": name})
        metrics = {**summarize(records), **{f"seconds_{k}": v for k, v in timings.items()}}
        tracking.finish_stage_run(run, metrics, artifacts=[page, os.path.join(folder, "returns.png"),
                                                           os.path.join(folder, "report.md")])
