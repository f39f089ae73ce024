"""Checkpoints played side by side: each one's own policy on a preset's validation instances (the training split's,
as the select stage plays them) at each temperature, with the same episode seeds, in one pool of Ray actors.

For questions the pipeline's own selection does not ask, e.g. how a BC changes with its training length:

    python benchmarks/play_checkpoints.py --task robot_pick --preset cpu --temperatures 0.25,0.5 \\
        RUN/bc/checkpoint LONGER/bc/checkpoint [--out figures.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--task", required=True)
    parser.add_argument("--preset", required=True, help="its evaluation sizes, actors and seed")
    parser.add_argument("--temperatures", default="0", help="comma-separated decoding temperatures")
    parser.add_argument("--split", choices=("validation", "eval"), default="validation")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()

    import envs
    from pipeline.evaluate import EvalPool, summarize
    from pipeline.policy import PolicySpec
    from pipeline.run import stage_configs

    task = envs.get_task(args.task)
    cfg = stage_configs(task.name, args.preset)[3]
    rows = []
    with EvalPool(task, cfg) as pool:
        for checkpoint in args.checkpoints:
            for temperature in (float(t) for t in args.temperatures.split(",")):
                spec = PolicySpec.from_config(dataclasses.replace(cfg, temperature=temperature), checkpoint)
                summary = summarize(pool.evaluate(spec, cfg.seed, args.split, progress=False))
                rows.append({"checkpoint": checkpoint, "temperature": temperature, "split": args.split, **summary})
                print(f"{checkpoint}  T={temperature:g}: score {summary['score']:.1f} ± {summary['score_ci']:.1f}, "
                      f"success {100 * summary['success_rate']:.1f}% [{100 * summary['success_ci_low']:.0f}, "
                      f"{100 * summary['success_ci_high']:.0f}], n={summary['episodes']}", flush=True)
                if args.out:
                    with open(args.out, "w") as f:
                        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
