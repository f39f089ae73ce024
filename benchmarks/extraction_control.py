"""Is Q-SFT's gain its values, or what its extraction formula does to any second model? Controls on a finished run.

Q-SFT's policy is pi(a|s) ∝ pi_beta(a|s) * exp(beta * p_theta(a|s)). If p_theta had learned nothing beyond
imitation (p_theta ≈ pi_beta, e.g. when its Bellman targets saturate at 1), the formula could still help:
sampled, it sharpens BC towards its modes; and with p_theta a second model fitted to the same rows, it combines
two imitators, an ensemble. The control puts another checkpoint in p_theta's place, with the run's chosen
decoding, beta and support (its `select/selection.json`):

- by default the run's BC itself, pi_beta * exp(beta * pi_beta) (sharpening; under greedy decoding it is BC);
- `--q CHECKPOINT`: a second BC, trained on the same rows for the same steps from another seed (the ensemble),
  which is also played alone, decoded as BC is (how far BC moves with its seed).

It is played on the validation instances the choice was made on and on the held-out split, beside BC's and
Q-SFT's figures from the run, and written to RUN/extraction_control[-NAME].json; the control's held-out records go to
RUN/eval/control[-NAME]/, beside BC's and Q-SFT's, so that `benchmarks/pooled.py RUN --policies qsft,control-NAME`
compares it with Q-SFT episode by episode:

    python benchmarks/extraction_control.py --task robot_pick --run RUN --preset cpu [--q OTHER/bc/checkpoint]

Q-SFT's gain is its values' where it beats the controls.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str] | None = None) -> dict:
    from pipeline.evaluate import EvalPool, summarize
    from pipeline.policy import PolicySpec
    from pipeline.report import save_records
    from pipeline.run import stage_configs
    from pipeline.runtime import init_ray
    from pipeline.select import SELECTION_FILE, apply_selection

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--run", required=True, help="a finished pipeline folder (bc/, select/, eval/)")
    parser.add_argument("--preset", required=True, help="the run's preset (its evaluation sizes)")
    parser.add_argument("--q", help="the checkpoint read as p_theta (default: the run's BC)")
    parser.add_argument("--name", default="", help="suffix of the result file, e.g. seed1")
    args = parser.parse_args(argv)
    eval_cfg = stage_configs(args.task, args.preset, {})[3]
    suffix = f"-{args.name}" if args.name else ""
    with open(os.path.join(args.run, "select", SELECTION_FILE)) as f:
        chosen = json.load(f)
    bc = os.path.join(args.run, "bc", "checkpoint")
    decoded = apply_selection(eval_cfg, chosen)
    spec = PolicySpec.from_config(decoded, bc, args.q or bc)
    init_ray()
    result = {"task": args.task, "run": args.run, "q": args.q or bc,
              "selection": {k: v for k, v in chosen.items() if k != "validation"}}
    alone = args.q and PolicySpec.from_config(decoded, args.q, label="q")
    with EvalPool(args.task, eval_cfg) as pool:
        for split in ("validation", "eval"):
            records = pool.evaluate(spec, eval_cfg.seed, split)
            result[f"control_{split}"] = summarize(records)
            if split == "eval":
                save_records(os.path.join(args.run, "eval", "control" + suffix), records,
                             {"policy": "control", "q": spec.q})
            if alone:  # the second model as a policy of its own, decoded as BC is
                result[f"q_alone_{split}"] = summarize(pool.evaluate(alone, eval_cfg.seed, split))
    validation = {row["policy"]: row for row in chosen["validation"]
                  if row["temperature"] == chosen["temperature"] and row.get("beta", chosen["beta"]) == chosen["beta"]}
    for name in ("bc", "qsft"):
        with open(os.path.join(args.run, "eval", name, "summary.json")) as f:
            result[f"{name}_eval"] = json.load(f)
    print(f"{args.task}: {args.run}, T={chosen['temperature']:g}, beta={chosen['beta']:g}, q={args.q or bc}")
    held_out = {name: result[f"{name}_eval"] for name in ("bc", "qsft")}
    for key, split, rows in (("validation", "validation", validation), ("eval", "held-out", held_out)):
        control = result[f"control_{key}"]
        cells = [f"{name} {rows[name]['score']:.1f} ± {rows[name]['score_ci']:.1f}" for name in ("bc", "qsft")
                 if name in rows]
        if alone:
            q_alone = result[f"q_alone_{key}"]
            cells.append(f"q alone {q_alone['score']:.1f} ± {q_alone['score_ci']:.1f}")
        print(f"  {split:10s} {', '.join(cells)}, control pi_beta*exp(beta*p_q) "
              f"{control['score']:.1f} ± {control['score_ci']:.1f} (n={control['episodes']})")
    with open(os.path.join(args.run, f"extraction_control{suffix}.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
