"""The staged pipeline of one task: collect -> BC -> Q-SFT -> evaluate both -> report.

Stages hand off by path under one output folder and are skipped when their output exists (unless forced):

    <out>/data/dataset.json            collection (Ray tasks -> Parquet)
    <out>/bc/checkpoint/stage.json     BC stage (its own Ray Train run)
    <out>/qsft/checkpoint/stage.json   Q-SFT stage (its own Ray Train run, loads the BC checkpoint)
    <out>/eval/<policy>/summary.json   evaluation on held-out instances (Ray actors)
    <out>/report/report.html           table + plots (also logged to MLflow)
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from typing import Any

from pipeline import tracking
from pipeline.config import MODEL_PRESETS, EvalConfig, ModelConfig, TrainConfig, apply_overrides
from pipeline.presets import preset

STAGES = ("collect", "bc", "qsft", "eval", "report")


def stage_configs(task: str, preset_name: str, overrides: dict[str, dict[str, Any]] | None = None):
    """(collect settings, BC config, Q-SFT config, eval config) of a preset with `overrides` applied."""
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
    return plan.get("collect", {}), bc, qsft, evaluation


def run_pipeline(task: str, out: str, preset_name: str = "tiny", overrides: dict | None = None,
                 force: tuple[str, ...] = (), stages: tuple[str, ...] = STAGES, progress: bool = True) -> dict:
    """Run (or resume) the task's pipeline in `out`; returns {policy name: evaluation summary}."""
    from pipeline.collect import collect
    from pipeline.data import METADATA_FILE, read_metadata
    from pipeline.evaluate import evaluate, summarize
    from pipeline.models import STAGE_FILE
    from pipeline.policy import PolicySpec
    from pipeline.report import SUMMARY_FILE, load_records, results_table, save_records, write_report
    from pipeline.train import FINAL_CHECKPOINT, run_stage

    out = os.path.abspath(out)
    collect_cfg, bc_cfg, qsft_cfg, eval_cfg = stage_configs(task, preset_name, overrides)
    data = os.path.join(out, "data")
    bc_ckpt = os.path.join(out, "bc", FINAL_CHECKPOINT)
    qsft_ckpt = os.path.join(out, "qsft", FINAL_CHECKPOINT)

    def needed(stage: str, marker: str) -> bool:
        if stage not in stages:
            return False
        if stage in force or not os.path.exists(marker):
            return True
        print(f"[{stage}] skipped: {marker} exists (use --force {stage} to redo)")
        return False

    tracking_uri = tracking.tracking_uri_for(out)
    timings: dict[str, float] = {}
    if needed("collect", os.path.join(data, METADATA_FILE)):
        t = time.perf_counter()
        meta = collect(task, int(collect_cfg.get("episodes", 1000)), data, seed=int(collect_cfg.get("seed", 0)),
                       behaviour_params=collect_cfg.get("behaviour"), progress=progress)
        timings["collect"] = time.perf_counter() - t
        print(f"[collect] {meta['num_episodes']} episodes, {meta['num_steps']} steps, "
              f"mean return {meta['return']['mean']:.2f}, success {100 * meta['success_rate']:.1f}%")
    for stage, cfg, ckpt, bc in (("bc", bc_cfg, bc_ckpt, None), ("qsft", qsft_cfg, qsft_ckpt, bc_ckpt)):
        if needed(stage, os.path.join(ckpt, STAGE_FILE)):
            if stage in force:  # a redo starts over; a plain re-run resumes an interrupted stage
                shutil.rmtree(os.path.join(out, stage), ignore_errors=True)
            t = time.perf_counter()
            result = run_stage(cfg, data, os.path.join(out, stage), task, bc_checkpoint=bc,
                               tracking_uri=tracking_uri, progress=progress)
            timings[stage] = time.perf_counter() - t
            print(f"[{stage}] checkpoint {result.checkpoint} (loss {result.metrics.get('loss', float('nan')):.4f})")

    specs = {"bc": PolicySpec(behaviour=bc_ckpt, temperature=eval_cfg.temperature,
                              max_action_tokens=eval_cfg.max_action_tokens),
             "qsft": PolicySpec(behaviour=bc_ckpt, q=qsft_ckpt, beta=eval_cfg.beta, ratio_form=eval_cfg.ratio_form,
                                temperature=eval_cfg.temperature, max_action_tokens=eval_cfg.max_action_tokens)}
    runs = {}
    for name, spec in specs.items():
        folder = os.path.join(out, "eval", name)
        if needed("eval", os.path.join(folder, SUMMARY_FILE)):
            t = time.perf_counter()
            records = evaluate(task, spec, eval_cfg, progress=progress)
            timings[f"eval_{name}"] = time.perf_counter() - t
            save_records(folder, records, {"policy": spec.name, "eval_config": dataclasses.asdict(eval_cfg)})
        if os.path.exists(os.path.join(folder, SUMMARY_FILE)):
            runs[spec.name] = load_records(folder)

    if "report" in stages and runs:
        dataset = read_metadata(data)
        page = write_report(os.path.join(out, "report"), task, runs, dataset)
        _track_evaluation(out, tracking_uri, task, preset_name, runs, page, timings)
        print(f"\n{task} ({preset_name}) on held-out instances:\n")
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
