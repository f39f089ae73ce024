"""Evaluation episodes/s with 1 and with 2 Ray actors, same policy and episodes, in one run.

The policy is a freshly initialised model of the task's `tiny` preset shape (evaluation cost does not
depend on training) with a tokenizer trained on the task's own text: a few behaviour episodes played in
this process (pixel tasks: a PixelGPT over the action-bin vocabulary). Generating tasks sample (temperature 1) so episodes run their full length; tasks with
admissible actions (ALFWorld, WebShop) rank them, as the pipeline's evaluation does, with the preset's
`envs_per_actor`. `--actors 1,2` lists the pool sizes compared, alternating over `--rounds`.
Goal: 2 actors >= 1.8x one actor on 2 CPUs.

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
from pipeline.evaluate import evaluate
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
    tokenizer = build_task_tokenizer(bc_cfg.model, envs.get_task(task_name), task_texts(task_name, episodes))
    model = load_initial_model(bc_cfg.model, tokenizer, seed=0, observation_space=pixel_observation_space(task_name))
    save_checkpoint(folder, model, tokenizer, {"stage": "bc"})
    return folder


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="wordle", choices=envs.TASK_NAMES)
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--actors", default="1,2", help="comma-separated actor counts to compare")
    parser.add_argument("--rounds", type=int, default=1, help="measurements per actor count, alternating")
    parser.add_argument("--warmup", type=int, default=16, help="episodes of a first, unmeasured evaluation")
    parser.add_argument("--text-episodes", type=int, default=8, help="behaviour episodes the tokenizer is trained on")
    args = parser.parse_args()
    actor_counts = [int(a) for a in args.actors.split(",")]
    _, _, _, preset_eval = stage_configs(args.task, "tiny")
    init_ray()
    with tempfile.TemporaryDirectory() as tmp:
        spec = PolicySpec(behaviour=tiny_checkpoint(args.task, tmp, args.text_episodes), temperature=1.0,
                          max_action_tokens=preset_eval.max_action_tokens)
        base = dataclasses.replace(preset_eval, num_episodes=args.episodes, cpus_per_actor=1.0)
        evaluate(args.task, spec, dataclasses.replace(base, num_episodes=args.warmup), progress=False)
        timings: dict[int, list[tuple[int, float]]] = {a: [] for a in actor_counts}
        for _ in range(args.rounds):
            for actors in actor_counts:
                start = time.perf_counter()
                records = evaluate(args.task, spec, dataclasses.replace(base, num_actors=actors), progress=False)
                timings[actors].append((len(records), time.perf_counter() - start))
    steps = sum(r["steps"] for r in records) / len(records)
    print(f"task={args.task} envs_per_actor={base.envs_per_actor} {steps:.1f} steps/episode, "
          f"success {sum(r['success'] for r in records)}/{len(records)} (untrained policy)")
    rates = {}
    for actors, runs in timings.items():
        rates[actors] = sum(n for n, _ in runs) / sum(s for _, s in runs)
        print(f"{actors} actor(s): {rates[actors]:6.3f} episodes/s  ({runs[0][0]} episodes; "
              f"{', '.join(f'{s:.1f}' for _, s in runs)} s)")
    for actors in actor_counts[1:]:
        print(f"ratio {actors}/{actor_counts[0]} = {rates[actors] / rates[actor_counts[0]]:.2f}  (goal >= 1.8)")


if __name__ == "__main__":
    main()
