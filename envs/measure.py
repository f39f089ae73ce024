"""The figures behind a task's normalizer: `python -m envs.measure TASK [--episodes N] [--behaviour JSON]`.

The behaviour policy (the task's default parameters, updated by the `--behaviour` JSON object) plays N
training episodes the way `pipeline.collect` plays a collection with seed 0: episode e resets the policy and
the env with seed e, and the env draws a train instance (`{"split": "train"}`). The solver
(`task.make_solver`) plays every held-out instance i with seed i (`{"split": "eval", "index": i}`), as an
evaluation with seed 0 does.

Prints, for each, the average raw return and its standard error, the success rate (`task.success`), steps per
episode and, where `info_0` names a `task_type` (ALFWorld), the success rate per task type; the behaviour's
episodes and steps per second (policy, env and policy construction included); and the Task's normalizer beside
them (the behaviour's average raw return is its `average`, the solver's its `best`).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

import gymnasium

import envs
from envs.base import BehaviourPolicy, Played, Task, play


def behaviour_episodes(task: Task, episodes: int, first_seed: int = 0,
                       params: dict[str, Any] | None = None) -> list[Played]:
    """`episodes` behaviour episodes on drawn train instances with seeds first_seed, first_seed + 1, ... (a
    `pipeline.collect` collection with seed 0 plays seeds 0, 1, ...); the behaviour has the task's default
    parameters updated by `params`."""
    policy = task.make_behaviour(**{**task.default_behaviour_params, **(params or {})})
    seeds = range(first_seed, first_seed + episodes)
    return _play_all(task, policy, [(seed, {"split": "train"}) for seed in seeds])


def solver_episodes(task: Task, split: str = "eval", count: int | None = None) -> list[Played]:
    """The solver on instances 0 .. count - 1 of `split` (default: every held-out instance), instance i with
    seed i."""
    count = task.num_eval_instances if count is None else count
    return _play_all(task, task.make_solver(), [(i, {"split": split, "index": i}) for i in range(count)])


def _play_all(task: Task, policy: BehaviourPolicy, runs: list[tuple[int, dict[str, Any]]]) -> list[Played]:
    """`policy`'s episodes (seed, reset options) in one env of the task."""
    env = gymnasium.make(task.env_id, **task.env_kwargs)
    played = [play(env, policy, seed, options) for seed, options in runs]
    env.close()
    return played


@dataclass(frozen=True)
class Summary:
    """What one policy's episodes on a task scored."""

    episodes: int
    raw_return: float        # average raw return
    standard_error: float    # of the average raw return (nan for a single episode)
    success_rate: float      # fraction of episodes `task.success` counts as solved
    steps_per_episode: float
    success_by_task_type: dict[str, tuple[int, float]]   # info_0["task_type"] -> (episodes, success rate)


def summarize(task: Task, played: list[Played]) -> Summary:
    """The `Summary` of `played`, episodes of one policy on `task`."""
    returns = [p.raw_return for p in played]
    solved = [task.success(p.rewards, p.terminated) for p in played]
    by_type: dict[str, list[bool]] = {}
    for p, success in zip(played, solved):
        if "task_type" in p.infos[0]:
            by_type.setdefault(p.infos[0]["task_type"], []).append(success)
    return Summary(
        episodes=len(played),
        raw_return=statistics.fmean(returns),
        standard_error=statistics.stdev(returns) / math.sqrt(len(returns)) if len(returns) > 1 else math.nan,
        success_rate=statistics.fmean(solved),
        steps_per_episode=statistics.fmean(len(p.actions) for p in played),
        success_by_task_type={t: (len(s), statistics.fmean(s)) for t, s in sorted(by_type.items())})


def describe(summary: Summary, normalizer_name: str, normalizer_value: float) -> str:
    """The lines `main` prints for a summary, with the normalizer constant it measures beside its average."""
    averages = (f"  average raw return {summary.raw_return:.4f} (standard error {summary.standard_error:.4f}; "
                f"normalizer {normalizer_name} {normalizer_value:g}), success {summary.success_rate:.4f}, "
                f"{summary.steps_per_episode:.2f} steps/episode")
    return "\n".join([averages] + [f"    {task_type:32s} success {rate:.3f} ({count} episodes)"
                                   for task_type, (count, rate) in summary.success_by_task_type.items()])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=envs.TASK_NAMES)
    parser.add_argument("--episodes", type=int, default=1000, help="behaviour episodes on training instances")
    parser.add_argument("--behaviour", type=json.loads, default={},
                        help="JSON object of behaviour parameters that replace the task's defaults")
    args = parser.parse_args(argv)
    task = envs.get_task(args.task)
    normalizer = task.normalizer

    start = time.perf_counter()
    behaviour = behaviour_episodes(task, args.episodes, params=args.behaviour)
    seconds = time.perf_counter() - start
    steps = sum(len(p.actions) for p in behaviour)
    params = {**task.default_behaviour_params, **args.behaviour}
    print(f"{task.name} behaviour {json.dumps(params)} on {len(behaviour)} training episodes "
          f"(seeds 0-{len(behaviour) - 1}):")
    print(describe(summarize(task, behaviour), "average", normalizer.average))
    print(f"  {len(behaviour) / seconds:.1f} episodes/s, {steps / seconds:.0f} steps/s (policy included)")

    solver = solver_episodes(task)
    print(f"{task.name} solver on {len(solver)} held-out instances:")
    print(describe(summarize(task, solver), "best", normalizer.best))
    print(f"normalizer: worst {normalizer.worst:g}, average {normalizer.average:g}, best {normalizer.best:g}")


if __name__ == "__main__":
    main()
