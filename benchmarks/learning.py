"""The learning benchmark: does a task's pipeline turn its imperfect data into a better policy?

    python benchmarks/learning.py --task maze --preset tiny [--out DIR] [--set section.field=value ...]
                                  [--methods bc,filtered_bc,ilql,spo,qsft]

Runs the task's whole pipeline at the preset's budget (collect, BC, Q-SFT, the decoding and extraction
settings chosen on validation instances of the training split, evaluation on the held-out split) and plays
the data's behaviour policy on the same held-out instances and seeds. Prints, for the behaviour policy
("dataset"), BC and Q-SFT: the raw return, normalized score and success rate, each with its 95% CI and
episode count, then each stage's wall time. Appends a row to benchmarks/LEARNING.md and writes the same
figures to benchmarks/learning/<task>-<preset>.json (keys "dataset", "bc", "qsft": score, score_ci,
success_rate, success_ci, raw_return, raw_return_ci, episodes; plus stage_seconds, commit, selection).

With baselines in `--methods` (filtered_bc, ilql, spo), each is trained on the same data into
`<out>/<method>/<setting>/`, decodes as chosen for BC (temperature, ranking rule, greedy text), and has its settings chosen on the same
validation instances (`pipeline.select.select_policy`) among `BASELINE_GRIDS` (training fields) and, for ILQL,
the eval betas (extraction). Each gets a key in the JSON (its figures, plus "selection") and a row in the
"Baselines" table of LEARNING.md. `--set METHOD.field=value` overrides a baseline's TrainConfig field (a grid
field then takes that single value).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import json
import os
import shlex
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HERE = os.path.dirname(os.path.abspath(__file__))
TABLE = os.path.join(HERE, "LEARNING.md")
HEADER = """# Learning results

Written by `benchmarks/learning.py` (one row per run, newest last; the JSON of the latest run of each task and
preset is in `benchmarks/learning/`). Every figure is on the task's **held-out split**: normalized score
(0 = worst, 50 = the dataset's average, 100 = the scripted solver) ± its 95% CI, raw return, success rate with
its 95% Wilson interval, and the episode count. "dataset" is the data's behaviour policy played on the same
held-out instances and seeds. The decoding (temperature and, for tasks with admissible actions, the ranking
rule and whether free text is generated greedily, by BC's score) and Q-SFT's beta and extraction form were chosen on validation instances of the training
split, never on the held-out split; BC and Q-SFT train on the same rows with the same model and budget, and
decode the same way.

| task | preset | dataset | BC | Q-SFT | chosen on validation | stage seconds | commit, date | command | notes |
|---|---|---|---|---|---|---|---|---|---|
"""


BASELINES = ("filtered_bc", "ilql", "spo")
# LMRL-Gym's filtered-BC fractions; SPO's temperature a factor of 3 either side of its default.
BASELINE_GRIDS = {"filtered_bc": {"filter_top_fraction": (0.1, 0.3, 0.5)}, "spo": {"spo_beta": (0.03, 0.1, 0.3)}}
BASELINE_HEADER = """
## Baselines

Written by `benchmarks/learning.py --methods ...` (one row per method and run, newest last): each baseline trained
on the same rows as BC and Q-SFT, decoded as chosen for BC, its settings chosen on the same
validation instances, then evaluated on the held-out split (figures as above).

| task | preset | method | held-out | chosen on validation | commit, date | command |
|---|---|---|---|---|---|---|
"""


def add_row(row: str, baseline: bool = False) -> None:
    """Add `row` to LEARNING.md's runs table, or to its Baselines table (the file's last section, started on
    first use)."""
    with open(TABLE) as f:
        text = f.read()
    head, mark, tail = text.partition(BASELINE_HEADER)
    if baseline:
        text = text + row if mark else text + BASELINE_HEADER + row
    else:
        text = head + row + mark + tail
    with open(TABLE, "w") as f:
        f.write(text)


def figures(summary: dict) -> dict:
    keys = ("episodes", "score", "score_ci", "raw_return", "raw_return_ci", "success_rate")
    return {**{k: summary[k] for k in keys}, "success_ci": [summary["success_ci_low"], summary["success_ci_high"]]}


def cell(f: dict) -> str:
    lo, hi = f["success_ci"]
    return (f"**{f['score']:.1f} ± {f['score_ci']:.1f}**; raw {f['raw_return']:.2f} ± {f['raw_return_ci']:.2f}; "
            f"{100 * f['success_rate']:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]; n={f['episodes']}")


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True, check=False).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def settings_grid(method: str, own: dict) -> list[dict]:
    """The training settings to try for `method`: BASELINE_GRIDS, a field set in `own` taking its one value."""
    grid = {k: v for k, v in BASELINE_GRIDS.get(method, {}).items() if k not in own}
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def baseline_candidates(method: str, checkpoint: str, bc_checkpoint: str, eval_cfg, prefix: str) -> dict:
    """The policies one trained baseline offers: its own checkpoint (filtered BC, SPO), or ILQL's extraction
    from the BC checkpoint at each eval beta."""
    from pipeline.policy import PolicySpec

    betas = (eval_cfg.betas or (eval_cfg.beta,)) if method == "ilql" else (None,)
    return {f"{prefix} beta={b:g}".strip() if b is not None else prefix:
            PolicySpec.of_stage(eval_cfg if b is None else dataclasses.replace(eval_cfg, beta=b), method, checkpoint,
                                bc_checkpoint)
            for b in betas}


def run_baselines(task: str, out: str, preset: str, overrides: dict, methods: list[str], eval_cfg,
                  selection: dict) -> dict:
    """Train each baseline in `methods` (see the module docstring); {method: figures plus "selection"}. Each
    chosen policy's held-out records go to `<out>/eval/<method>/`, beside BC's and Q-SFT's, and the run's report
    is rewritten with every method side by side (the dashboard reads the same folders)."""
    import envs
    from pipeline import tracking
    from pipeline.data import read_metadata
    from pipeline.evaluate import EvalPool, summarize
    from pipeline.models import STAGE_FILE
    from pipeline.report import load_runs, save_records, write_report
    from pipeline.run import changed_inputs, made_from, record_inputs, stage_configs, training_markers
    from pipeline.select import apply_selection, select_policy
    from pipeline.train import FINAL_CHECKPOINT, FROM_BC, method_config, run_stage

    _, bc_cfg, qsft_cfg, _ = stage_configs(task, preset, {k: v for k, v in overrides.items() if k not in BASELINES})
    tracking_uri = tracking.tracking_uri_for(out)  # the run's own MLflow store, beside BC's and Q-SFT's runs
    eval_cfg = apply_selection(eval_cfg, selection)
    data, bc_ckpt = os.path.join(out, "data"), os.path.join(out, "bc", FINAL_CHECKPOINT)
    offered = {}
    for method in methods:  # train everything first: the evaluation actors would hold CPUs the training needs
        own = overrides.get(method, {})
        offered[method] = {}
        for settings in settings_grid(method, own):
            name = ",".join(f"{k}={v:g}" for k, v in settings.items())
            folder = os.path.join(out, method, name or "default")
            checkpoint = os.path.join(folder, FINAL_CHECKPOINT)
            cfg = method_config(method, bc_cfg, qsft_cfg, {**own, **settings})
            key = os.path.relpath(folder, out)
            inputs = made_from(cfg, training_markers(out), ("collect", "bc") if method in FROM_BC else ("collect",))
            changed = changed_inputs(out, key, inputs)
            if changed:  # made with another config, data or BC: start over
                print(f"[{key}] redone: {' and '.join(changed)} changed")
                shutil.rmtree(folder, ignore_errors=True)
            if not os.path.exists(os.path.join(checkpoint, STAGE_FILE)):
                run_stage(cfg, data, folder, task, bc_checkpoint=bc_ckpt if method in FROM_BC else None,
                          tracking_uri=tracking_uri, run_name=f"{task}-{method}" + (f"-{name}" if name else ""))
                record_inputs(out, key, inputs)
            offered[method].update(baseline_candidates(method, checkpoint, bc_ckpt, eval_cfg, name))
    results = {}
    with EvalPool(task, eval_cfg) as pool:
        for method, candidates in offered.items():
            chosen = select_policy(pool, candidates, eval_cfg)
            spec = candidates[chosen["chosen"]]
            records = pool.evaluate(spec, eval_cfg.seed, "eval")
            save_records(os.path.join(out, "eval", method), records,
                         {"policy": spec.name, "selection": chosen, "eval_config": dataclasses.asdict(eval_cfg)})
            results[method] = {**figures(summarize(records)), "selection": chosen}
    runs = load_runs(os.path.join(out, "eval", method) for method in ("bc", "qsft", *offered))
    page = write_report(os.path.join(out, "report"), envs.as_task(task), runs, read_metadata(os.path.join(out, "data")))
    print(f"report with every method: {page}")
    return results


def main(argv: list[str] | None = None) -> dict:
    import envs
    from pipeline.cli import _parse_sets
    from pipeline.evaluate import behaviour_records, summarize
    from pipeline.presets import PRESET_NAMES
    from pipeline.run import STAGE_SECONDS_FILE, run_pipeline, stage_configs
    from pipeline.runtime import init_ray
    from pipeline.select import SELECTION_FILE, decoding, describe
    from pipeline.train import method_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, choices=envs.TASK_NAMES)
    parser.add_argument("--preset", default="cpu", choices=PRESET_NAMES)
    parser.add_argument("--out", help="pipeline folder (default runs/learning/<task>-<preset>); re-runs resume")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    parser.add_argument("--note", default="", help="what limits the result, for the LEARNING.md row")
    parser.add_argument("--no-record", action="store_true", help="print only; leave LEARNING.md and the JSON alone")
    parser.add_argument("--methods", default="bc,qsft",
                        help=f"comma-separated: bc and qsft always run; add any of {', '.join(BASELINES)}")
    args = parser.parse_args(argv)
    command = "python benchmarks/learning.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    out = args.out or os.path.join("runs", "learning", f"{args.task}-{args.preset}")
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in ("bc", "qsft", *BASELINES)]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)} in --methods; choose from bc, qsft, {', '.join(BASELINES)}")
    baselines = [m for m in BASELINES if m in methods]
    sets = _parse_sets(args.set)
    overrides = {k: v for k, v in sets.items() if k not in BASELINES}
    _, bc_cfg, qsft_cfg, eval_cfg = stage_configs(args.task, args.preset, overrides)
    for method in baselines:  # a bad baseline field fails before anything runs
        method_config(method, bc_cfg, qsft_cfg, sets.get(method, {}))

    init_ray()
    summaries = run_pipeline(args.task, out, args.preset, overrides)
    bc_name, qsft_name = list(summaries)
    result = {
        "task": args.task, "preset": args.preset, "commit": commit(), "date": datetime.date.today().isoformat(),
        "command": command,
        "dataset": figures(summarize(behaviour_records(args.task, eval_cfg))),
        "bc": figures(summaries[bc_name]), "qsft": figures(summaries[qsft_name]),
    }
    with open(os.path.join(out, STAGE_SECONDS_FILE)) as f:
        result["stage_seconds"] = json.load(f)
    with open(os.path.join(out, "select", SELECTION_FILE)) as f:
        result["selection"] = json.load(f)
    with open(os.path.join(out, "data", "dataset.json")) as f:
        meta = json.load(f)
    result["training_data"] = {"episodes": meta["num_episodes"], "raw_return": meta["return"]["mean"],
                               "success_rate": meta["success_rate"]}
    if baselines:
        result.update(run_baselines(args.task, out, args.preset, {**overrides, **sets}, baselines, eval_cfg,
                                    result["selection"]))

    print(f"\n{args.task} ({args.preset}), held-out split:")
    keys = ("dataset", "bc", "qsft", *baselines)
    width = max(8, *map(len, keys))
    for key in keys:
        print(f"  {key:{width}s} {cell(result[key]).replace('**', '')}")
    print(f"  chosen on validation: {describe(result['selection'])}")
    print("  stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in result["stage_seconds"].items()))
    if not args.no_record:
        os.makedirs(os.path.join(HERE, "learning"), exist_ok=True)
        with open(os.path.join(HERE, "learning", f"{args.task}-{args.preset}.json"), "w") as f:
            json.dump(result, f, indent=1)
        if not os.path.exists(TABLE):
            with open(TABLE, "w") as f:
                f.write(HEADER)
        sel = result["selection"]
        chosen = f"{decoding(sel)}, beta={sel['beta']:g}, {'ratio' if sel['ratio_form'] else 'paper'} form"
        seconds = ", ".join(f"{k} {v:.0f}" for k, v in result["stage_seconds"].items())
        add_row(f"| {args.task} | {args.preset} | {cell(result['dataset'])} | {cell(result['bc'])} | "
                f"{cell(result['qsft'])} | {chosen} | {seconds} | {result['commit']}, {result['date']} | "
                f"`{command}` | {args.note} |\n")
        for method in baselines:
            fixed = ", ".join(f"{k}={v} (set)" for k, v in sets.get(method, {}).items())
            add_row(f"| {args.task} | {args.preset} | {method} | {cell(result[method])} | "
                    f"{result[method]['selection']['chosen'] or fixed or 'defaults'}, {decoding(sel)} | "
                    f"{result['commit']}, {result['date']} | `{command}` |\n", baseline=True)
        print(f"recorded: {TABLE}")
    return result


if __name__ == "__main__":
    main()
