"""Evaluation games/s of a policy against the env-only rate, and with 1 and with 2 Ray actors, in one run.

The policy is a freshly initialised model of the task's `tiny` preset shape (evaluation cost does not
depend on training) with a tokenizer trained on the task's own text: a few behaviour episodes played in
this process (pixel tasks: a PixelGPT over the action-bin vocabulary). Generating tasks sample (temperature 1) so episodes run their full length; tasks with
admissible actions (ALFWorld, WebShop) rank them, as the pipeline's evaluation does, with the preset's
`envs_per_actor`. `--actors 1,2` lists the pool sizes compared, alternating over `--rounds`; each pool
also plays the same episodes with the task's scripted behaviour policy (`pipeline.evaluate.BEHAVIOUR`, the
env's own rate in the same actors). The pools are started and warmed first, as the pipeline's pool is
kept across evaluations, so actor start-up is not timed. Goals: the policy >= 0.5x the env-only games/s
(ALFWorld, WebShop), and 2 actors >= 1.8x one actor on 2 CPUs.

    python benchmarks/eval_scaling.py [--task wordle] [--episodes 64]
    python benchmarks/eval_scaling.py --task alfworld --episodes 30 --warmup 4
    python benchmarks/eval_scaling.py --task robot_pick --episodes 40 --warmup 10
"""

import argparse
import dataclasses
import tempfile
import time

import gymnasium

import envs
from pipeline.collect import episode_seed, play_episode
from pipeline.evaluate import BEHAVIOUR, EvalPool
from pipeline.models import build_task_tokenizer, load_initial_model, save_checkpoint
from pipeline.policy import PolicySpec
from pipeline.run import stage_configs
from pipeline.runtime import init_ray
from pipeline.train import pixel_observation_space


def task_texts(task_name: str, episodes: int):
    """Observations and actions of a few behaviour episodes on training instances (the tokenizer's corpus;
    played only when read, i.e. not for pixel tasks)."""
    task = envs.get_task(task_name)
    env = gymnasium.make(task.env_id, **task.env_kwargs)
    policy = task.make_behaviour(**task.default_behaviour_params)
    for e in range(episodes):
        episode = play_episode(env, policy, episode_seed(0, e), {"split": "train"}, e, task_name)
        yield from episode.observations + episode.actions
    env.close()


def tiny_checkpoint(task_name: str, folder: str, episodes: int) -> str:
    _, bc_cfg, _, _ = stage_configs(task_name, "tiny")
    task = envs.get_task(task_name)
    tokenizer = build_task_tokenizer(bc_cfg.model, task, task_texts(task_name, episodes))
    model = load_initial_model(bc_cfg.model, tokenizer, seed=0, observation_space=pixel_observation_space(task))
    save_checkpoint(folder, model, tokenizer, {"stage": "bc"})
    return folder


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="wordle", choices=envs.TASK_NAMES)
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--actors", default="1,2", help="comma-separated actor counts to compare")
    parser.add_argument("--rounds", type=int, default=1, help="measurements per actor count, alternating")
    parser.add_argument("--warmup", type=int, default=16,
                        help="episodes of a first, unmeasured evaluation per pool (at least a chunk per actor)")
    parser.add_argument("--text-episodes", type=int, default=8, help="behaviour episodes the tokenizer is trained on")
    args = parser.parse_args()
    actor_counts = [int(a) for a in args.actors.split(",")]
    _, _, _, preset_eval = stage_configs(args.task, "tiny")
    init_ray()
    with tempfile.TemporaryDirectory() as tmp:
        spec = PolicySpec(checkpoint=tiny_checkpoint(args.task, tmp, args.text_episodes), temperature=1.0,
                          max_action_tokens=preset_eval.max_action_tokens)
        # 0.5 CPU an actor (one torch thread each, as with 1.0) so that all the pools fit on 2 CPUs at once
        base = dataclasses.replace(preset_eval, num_episodes=args.episodes, cpus_per_actor=0.5)
        pools = {a: EvalPool(args.task, dataclasses.replace(base, num_actors=a)) for a in actor_counts}
        for actors, pool in pools.items():   # at least one chunk per actor, so that every actor is started
            for played in (spec, BEHAVIOUR):
                pool.evaluate(played, base.seed, progress=False,
                              num_episodes=max(args.warmup, actors * base.envs_per_actor))
        timings = {(a, p): [] for a in actor_counts for p in ("policy", "env")}
        for _ in range(args.rounds):
            for actors, pool in pools.items():
                for label, played in (("policy", spec), ("env", BEHAVIOUR)):
                    start = time.perf_counter()
                    records = pool.evaluate(played, base.seed, progress=False)
                    timings[actors, label].append((len(records), time.perf_counter() - start))
                    if label == "policy":
                        policy_records = records
        for pool in pools.values():
            pool.close()
    steps = sum(r["steps"] for r in policy_records) / len(policy_records)
    print(f"task={args.task} envs_per_actor={base.envs_per_actor} {steps:.1f} steps/episode, "
          f"success {sum(r['success'] for r in policy_records)}/{len(policy_records)} (untrained policy)")
    rates = {}
    for (actors, label), runs in timings.items():
        rates[actors, label] = sum(n for n, _ in runs) / sum(s for _, s in runs)
        print(f"{actors} actor(s), {label:6s}: {rates[actors, label]:7.3f} games/s  ({runs[0][0]} games; "
              f"{', '.join(f'{s:.1f}' for _, s in runs)} s)")
    first = actor_counts[0]
    print(f"ratio {args.task} policy/env = {rates[first, 'policy'] / rates[first, 'env']:.2f}")
    for actors in actor_counts[1:]:
        print(f"ratio {args.task} policy/env {actors} actors = "
              f"{rates[actors, 'policy'] / rates[actors, 'env']:.2f}")
        print(f"ratio {args.task} actors {actors}/{first} = {rates[actors, 'policy'] / rates[first, 'policy']:.2f}")
        print(f"ratio {args.task} env actors {actors}/{first} = {rates[actors, 'env'] / rates[first, 'env']:.2f}")

if __name__ == "__main__":
    main()
