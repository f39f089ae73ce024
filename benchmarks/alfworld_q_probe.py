"""Does ALFWorld's Q-SFT rank the planner's command first, and can its extraction take it? A probe on training games.

ALFWorld's behaviour wanders among the admissible commands for a random number of steps, then follows a planner
(`info["expert_action"]`, the next command of a plan from the true state). The probe replays that behaviour on
training-split games (never held-out ones; seeds past the collection's) and, at every state where the planner has
a command among the admissible ones, reads a finished run's checkpoints on all of them:

    bc top-1     the planner's command is BC's most likely, log pi_beta(a|s) under the run's ranking rule
    in support   its pi_beta(a|s), normalised over the state's commands, is above the extraction's support_eps
                 (outside it the extraction scores it -inf, as the Bellman max ignores it)
    q top-1      it has the highest Q(s,a) of all the state's commands (Q read at the command's last token)
    q above bc   its Q is above the Q of BC's favourite (where the two differ)
    p(planner)   the probability the run's policies give it: BC, and Q-SFT's pi_beta * exp(beta * Q) within
                 the support, at the run's chosen temperature

split by the planner command's verb: "go to" (where the object is, which the text shows only once the agent is
there) and the object commands (take, put, open, clean, heat, cool, use, ...).

    python benchmarks/alfworld_q_probe.py --run RUN [--episodes 30] [--support-eps 0.1]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def softmax(scores: np.ndarray) -> np.ndarray:
    """exp(scores) normalised; -inf scores get 0."""
    return np.exp(scores - np.logaddexp.reduce(scores))


def probe(run: str, episodes: int, first_seed: int, support_eps: float | None = None) -> dict[str, dict[str, float]]:
    """The table above over `episodes` behaviour episodes (seeds first_seed, ...); `support_eps` defaults to the
    `cpu` preset's extraction support."""
    import envs
    from envs.measure import behaviour_episodes
    from pipeline.policy import LMPolicy, PolicySpec, PrefixCache
    from pipeline.run import stage_configs
    from pipeline.select import SELECTION_FILE

    task = envs.get_task("alfworld")
    eval_cfg = stage_configs("alfworld", "cpu", {})[3]
    with open(os.path.join(run, "select", SELECTION_FILE)) as f:
        chosen = json.load(f)
    bc_path, q_path = (os.path.join(run, stage, "checkpoint") for stage in ("bc", "qsft"))
    eps = eval_cfg.support_eps if support_eps is None else support_eps
    bc = LMPolicy(PolicySpec(checkpoint=bc_path, ranking=chosen["ranking"]), task)
    qsft = LMPolicy(PolicySpec(checkpoint=bc_path, q=q_path, beta=chosen["beta"], ratio_form=chosen["ratio_form"],
                               support_eps=eps, ranking=chosen["ranking"]), task)
    # beta 1 and no support: the score minus BC's is Q(s,a) itself, for every command
    q = LMPolicy(PolicySpec(checkpoint=bc_path, q=q_path, beta=1.0, ratio_form=chosen["ratio_form"],
                            ranking=chosen["ranking"]), task)
    temperature = max(chosen["temperature"], 1e-6)
    stats: dict[str, list[list[float]]] = defaultdict(list)
    for played in behaviour_episodes(task, episodes, first_seed=first_seed):
        segments = [bc.segment(played.observations[0])]
        caches = (PrefixCache(), PrefixCache(), PrefixCache())
        for t, action in enumerate(played.actions):
            info = played.infos[t]
            commands, planner = info["admissible_actions"], info["expert_action"]
            if planner in commands:
                context = bc.context(segments)
                log_beta, extracted, scores_q = (np.array(policy.rank(context, commands, cache))
                                                 for policy, cache in zip((bc, qsft, q), caches))
                values = scores_q - log_beta
                i, favourite = commands.index(planner), int(np.argmax(log_beta))
                row = [float(favourite == i), float(np.isfinite(extracted[i])), float(np.argmax(values) == i),
                       float(values[i] > values[favourite]) if favourite != i else math.nan,
                       softmax(log_beta / temperature)[i], softmax(extracted / temperature)[i]]
                stats["go to" if planner.startswith("go to") else "object"].append(row)
                stats["all"].append(row)
            segments.append(bc.segment(played.observations[t + 1], action))
    names = ("bc top-1", "in support", "q top-1", "q above bc", "p(planner) bc", "p(planner) q-sft")
    return {kind: {"states": len(stats[kind]),
                   **{name: float(np.nanmean(column)) for name, column in zip(names, zip(*stats[kind]))}}
            for kind in ("all", "go to", "object") if stats[kind]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished ALFWorld pipeline folder (bc/, qsft/, select/)")
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--first-seed", type=int, default=100_000, help="past the collection's seeds 0, 1, ...")
    parser.add_argument("--support-eps", type=float, help="the extraction's support (default: the cpu preset's)")
    args = parser.parse_args(argv)
    result = probe(args.run, args.episodes, args.first_seed, args.support_eps)
    print(f"{'planner command':<16}{'states':>8}" + "".join(f"{name:>18}" for name in next(iter(result.values()))
                                                         if name != "states"))
    for kind, row in result.items():
        print(f"{kind:<16}{row['states']:>8}" + "".join(f"{v:>18.3f}" for k, v in row.items() if k != "states"))
    with open(os.path.join(args.run, "alfworld_q_probe.json"), "w") as f:
        json.dump({"episodes": args.episodes, "first_seed": args.first_seed, "support_eps": args.support_eps,
                   **result}, f, indent=1)
    return result


if __name__ == "__main__":
    main()
