"""Collection throughput (episodes/s and steps/s written to Parquet with Ray) next to the raw env step rate.

The raw rate is the behaviour policy playing the environment in one plain process (no Ray, no I/O).
The collection rate is `pipeline.collect.collect` end to end: Ray tasks play the episodes and write a shard
each, dataset.json is written (ray.init excluded). `--workers 1,2` measures collection once per
worker count (at most that many tasks in flight), the counts alternating over `--rounds`, so the
scaling ratio is taken side by side. The run ends with one `ratio <task> <name> = x.xx` line per ratio.
Goals: collection >= 0.7x the raw rate; 2 workers >= 1.8x one.

    python benchmarks/collection_throughput.py [--task wordle] [--episodes 20000]
    python benchmarks/collection_throughput.py --task alfworld --episodes 40 --workers 1,2 --raw-episodes 10 --warmup 8
"""

import argparse
import tempfile
import time

import gymnasium

import envs
from pipeline.collect import episode_seed, play_episode
from pipeline.runtime import init_ray


def raw_rate(task_name: str, episodes: int) -> tuple[float, float]:
    """(steps/s, episodes/s) of the behaviour policy in one process."""
    task = envs.get_task(task_name)
    env = gymnasium.make(task.env_id, **task.env_kwargs)
    policy = task.make_behaviour(**task.default_behaviour_params)
    play_episode(env, policy, 0, {"split": "train"}, 0, task_name)  # warm caches (e.g. feedback tables)
    start, steps = time.perf_counter(), 0
    for e in range(episodes):
        steps += len(play_episode(env, policy, episode_seed(0, e), {"split": "train"}, e, task_name).actions)
    seconds = time.perf_counter() - start
    return steps / seconds, episodes / seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="wordle", choices=envs.TASK_NAMES)
    parser.add_argument("--episodes", type=int, default=20000, help="episodes per measured collection")
    parser.add_argument("--raw-episodes", type=int, default=2000, help="episodes of the raw rate (0: skip it)")
    parser.add_argument("--workers", default="0", help="comma-separated worker counts to compare (0: the cluster's CPUs)")
    parser.add_argument("--rounds", type=int, default=1, help="measurements per worker count, alternating")
    parser.add_argument("--warmup", type=int, default=200, help="episodes of a first, unmeasured collection")
    args = parser.parse_args()
    from pipeline.collect import collect

    worker_counts = [int(w) for w in args.workers.split(",")]
    init_ray()
    raw = raw_rate(args.task, args.raw_episodes) if args.raw_episodes else None
    timings: dict[int, list[tuple[int, int, float]]] = {w: [] for w in worker_counts}
    with tempfile.TemporaryDirectory() as out:
        collect(args.task, args.warmup, out, progress=False)  # warm the Ray workers, as a real job's first stage would
        for _ in range(args.rounds):
            for workers in worker_counts:
                meta = collect(args.task, args.episodes, out, workers=workers, progress=False)
                timings[workers].append((meta["num_episodes"], meta["num_steps"], meta["collection_seconds"]))
    print(f"task={args.task} episodes={meta['num_episodes']} steps={meta['num_steps']} "
          f"mean return={meta['return']['mean']:.3f}")
    if raw:
        print(f"raw env+policy, 1 process  : {raw[0]:10.1f} steps/s {raw[1]:8.3f} episodes/s")
    rates, ratios = {}, []
    for workers, runs in timings.items():
        episodes, steps, seconds = (sum(r[i] for r in runs) for i in range(3))
        rates[workers] = episodes / seconds
        label = f"collect -> Parquet, {workers or 'all'} worker(s)"
        print(f"{label:27s}: {steps / seconds:10.1f} steps/s {rates[workers]:8.3f} episodes/s   "
              f"({', '.join(f'{r[2]:.1f}' for r in runs)} s)")
        if raw:
            ratios.append((f"ray/raw{'' if workers == 0 else f' {workers} workers'}", steps / seconds / raw[0]))
    base = worker_counts[0]
    ratios += [(f"workers {workers or 'all'}/{base or 'all'}", rates[workers] / rates[base])
               for workers in worker_counts[1:]]
    for name, value in ratios:
        print(f"ratio {args.task} {name} = {value:.2f}")

if __name__ == "__main__":
    main()
