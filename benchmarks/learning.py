"""The learning benchmark: does a task's pipeline turn its imperfect data into a better policy?

    python benchmarks/learning.py --task maze --preset tiny [--out DIR] [--set section.field=value ...]

Runs the task's whole pipeline at the preset's budget (collect, BC, Q-SFT, the decoding and extraction
settings chosen on validation instances of the training split, evaluation on the held-out split) and plays
the data's behaviour policy on the same held-out instances and seeds. Prints, for the behaviour policy
("dataset"), BC and Q-SFT: the raw return, normalized score and success rate, each with its 95% CI and
episode count, then each stage's wall time. Appends a row to benchmarks/LEARNING.md and writes the same
figures to benchmarks/learning/<task>-<preset>.json (keys "dataset", "bc", "qsft": score, score_ci,
success_rate, success_ci, raw_return, raw_return_ci, episodes; plus stage_seconds, commit, selection).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
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
held-out instances and seeds. The decoding temperature (by BC's score) and Q-SFT's beta and extraction form
were chosen on validation instances of the training split, never on the held-out split; BC and Q-SFT train on
the same rows with the same model and budget, and decode with the same temperature.

| task | preset | dataset | BC | Q-SFT | chosen on validation | stage seconds | commit, date | command | notes |
|---|---|---|---|---|---|---|---|---|---|
"""


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


def main(argv: list[str] | None = None) -> dict:
    import envs
    from pipeline.cli import _parse_sets
    from pipeline.evaluate import behaviour_records, summarize
    from pipeline.presets import PRESET_NAMES
    from pipeline.run import STAGE_SECONDS_FILE, run_pipeline, stage_configs
    from pipeline.runtime import init_ray
    from pipeline.select import SELECTION_FILE, describe

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, choices=envs.TASK_NAMES)
    parser.add_argument("--preset", default="cpu", choices=PRESET_NAMES)
    parser.add_argument("--out", help="pipeline folder (default runs/learning/<task>-<preset>); re-runs resume")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    parser.add_argument("--note", default="", help="what limits the result, for the LEARNING.md row")
    parser.add_argument("--no-record", action="store_true", help="print only; leave LEARNING.md and the JSON alone")
    args = parser.parse_args(argv)
    command = "python benchmarks/learning.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    out = args.out or os.path.join("runs", "learning", f"{args.task}-{args.preset}")
    overrides = _parse_sets(args.set)
    eval_cfg = stage_configs(args.task, args.preset, overrides)[3]

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

    print(f"\n{args.task} ({args.preset}), held-out split:")
    for key in ("dataset", "bc", "qsft"):
        print(f"  {key:8s} {cell(result[key]).replace('**', '')}")
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
        chosen = f"T={sel['temperature']:g}, beta={sel['beta']:g}, {'ratio' if sel['ratio_form'] else 'paper'} form"
        seconds = ", ".join(f"{k} {v:.0f}" for k, v in result["stage_seconds"].items())
        with open(TABLE, "a") as f:
            f.write(f"| {args.task} | {args.preset} | {cell(result['dataset'])} | {cell(result['bc'])} | "
                    f"{cell(result['qsft'])} | {chosen} | {seconds} | {result['commit']}, {result['date']} | "
                    f"`{command}` | {args.note} |\n")
        print(f"recorded: {TABLE}")
    return result


if __name__ == "__main__":
    main()
