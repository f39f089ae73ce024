"""Evaluate a policy on a task's held-out instances with a pool of Ray actors.

The episodes are cut into fixed chunks (`envs_per_actor` each); an actor plays a chunk's environments in
lock-step so one batched policy call serves them all, each game carrying its models' KV cache from turn to turn. Chunks are the unit of work and of retry: a chunk
whose actor died is replayed on a fresh actor, and every episode index is accepted exactly once. Episode i
is always instance i mod n of its split (n instances, each played `EvalConfig.repeats` times) with seed
`pipeline.collect.episode_seed(seed, i)` and its own sampling generator, so the same policy on the same seeds gives
identical records. The split is the held-out one ("eval"), or
"validation": the first `num_validation_episodes` instances of the training split, on which settings are
chosen (pipeline.select).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Self

import gymnasium
import numpy as np
import ray

import envs
from pipeline.candidates import is_template
from pipeline.collect import action_text, episode_seed, observation_parts
from pipeline.config import EvalConfig
from pipeline.policy import LMPolicy, PolicySpec, PrefixCache, Segment

# Fault injection: with this set to a file path that does not exist, the first actor to get work creates the
# file and dies, so retry handling can be rehearsed (tests do).
CRASH_ONCE_ENV = "QSFT_EVAL_CRASH_ONCE"


SPLITS = {"eval": "eval", "validation": "train"}  # evaluation split -> the env's instance split
BEHAVIOUR = "behaviour"  # as a spec: the data's scripted behaviour policy (the env's own rate, in the same actors)


def split_size(task: envs.Task, cfg: EvalConfig, split: str, num_episodes: int | None = None) -> tuple[int, int]:
    """(n, episodes): the split's first n instances are played, each `cfg.repeats` times (validation:
    `cfg.validation_repeats` where set). n is `num_episodes` (default `cfg.num_episodes`, at most the task's held-out
    instances) or `cfg.num_validation_episodes`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    n = num_episodes or (cfg.num_episodes if split == "eval" else cfg.num_validation_episodes)
    n = min(n, task.num_eval_instances) if split == "eval" else n
    return n, n * cfg.repeats_of(split)


def reset_options(split: str, index: int, instances: int | None) -> dict[str, Any]:
    """Episode `index` of `split` plays instance index mod `instances` (None: instance `index`)."""
    return {"split": SPLITS[split], "index": index % instances if instances else index}


def play_chunk(task: envs.Task, policy: LMPolicy, indices: list[int], seed: int, split: str = "eval",
               instances: int | None = None) -> list[dict[str, Any]]:
    """Play episodes `indices` of `split` side by side (on instances index mod `instances`, default: one
    episode per instance); one batched policy call per turn, each game's context prefilled only as far as its
    `PrefixCache` lacks it."""
    games = []
    for index in indices:
        env = gymnasium.make(task.env_id, **task.env_kwargs)
        observation, info = env.reset(seed=episode_seed(seed, index),
                                      options=reset_options(split, index, instances))
        generator = torch_generator(episode_seed(seed, index))
        games.append({"env": env, "index": index, "info": info, "segments": [policy.segment(observation)], "cache": PrefixCache(),
                      "transcript": [{"observation": observation_parts(observation)[0]}], "rewards": [], "done": False,
                      "terminated": False, "generator": generator})
    while True:
        active = [g for g in games if not g["done"]]
        if not active:
            break
        contexts = [policy.context(g["segments"]) for g in active]
        actions = choose_actions(task, policy, contexts, active)
        for game, action in zip(active, actions):
            observation, reward, terminated, truncated, game["info"] = game["env"].step(action)
            game["rewards"].append(float(reward))
            game["transcript"][-1].update(action=action_text(action), reward=float(reward))
            game["transcript"].append({"observation": observation_parts(observation)[0]})
            game["segments"].append(policy.segment(observation, action))
            game["done"], game["terminated"] = bool(terminated or truncated), bool(terminated)
    records = []
    for game in games:
        game["env"].close()
        rewards, terminated = game["rewards"], game["terminated"]
        raw = float(sum(rewards))
        records.append({
            "task": task.name, "policy": policy.spec.name, "split": split, "episode": game["index"],
            "instance": json.dumps(game["info"].get("instance")), "seed": episode_seed(seed, game["index"]),
            "raw_return": raw, "unit_return": float(sum(task.unit_rewards(rewards, terminated))),
            "score": float(task.normalizer(raw)), "success": bool(task.success(rewards, terminated)),
            "steps": len(rewards), "task_type": str(game["info"].get("task_type", "")),
            "transcript": json.dumps(game["transcript"]),
        })
    return records


def choose_actions(task: envs.Task, policy: LMPolicy, contexts: list[Segment], games: list[dict]) -> list[Any]:
    """Generate each action, or, where the task lists admissible actions, choose among them by
    `LMPolicy.rank_many`, all games' candidates in one call (the best, or sampled at the decoding temperature).

    A winning candidate that is a template such as "search[...]" is then written by the policy itself.
    """
    generators, caches = [g["generator"] for g in games], [g["cache"] for g in games]
    if not task.has_admissible_actions:
        return policy.generate(contexts, generators, caches)
    candidates = [g["info"].get("admissible_actions") or [] for g in games]
    actions = [c[policy.choose(scores, g["generator"])] if c else ""
               for g, c, scores in zip(games, candidates, policy.rank_many(contexts, candidates, caches))]
    free = [i for i, a in enumerate(actions) if not a or is_template(a)]
    if free:
        written = policy.generate([contexts[i] for i in free], [generators[i] for i in free],
                                  [caches[i] for i in free])
        for i, action in zip(free, written):
            actions[i] = action
    return actions


def behaviour_records(task: envs.Task | str, cfg: EvalConfig, split: str = "eval") -> list[dict[str, Any]]:
    """The data's behaviour policy played on the same instances and seeds as `evaluate` (in this process)."""
    task = envs.as_task(task)
    instances, episodes = split_size(task, cfg, split)
    return behaviour_chunk(task, list(range(episodes)), cfg.seed, split, instances)


def behaviour_chunk(task: envs.Task, indices: list[int], seed: int, split: str = "eval",
                    instances: int | None = None) -> list[dict[str, Any]]:
    """Records (without transcripts) of the behaviour policy's episodes `indices` of `split`, one after another
    (instances as in `play_chunk`)."""
    from envs.base import play

    env = gymnasium.make(task.env_id, **task.env_kwargs)
    policy = task.make_behaviour(**task.default_behaviour_params)
    records = []
    for index in indices:
        played = play(env, policy, episode_seed(seed, index), reset_options(split, index, instances))
        rewards, terminated, raw = played.rewards, played.terminated, played.raw_return
        records.append({"task": task.name, "policy": BEHAVIOUR, "split": split, "episode": index, "raw_return": raw,
                        "unit_return": float(sum(task.unit_rewards(rewards, terminated))),
                        "score": float(task.normalizer(raw)), "success": bool(task.success(rewards, terminated)),
                        "steps": len(rewards)})
    env.close()
    return records


def torch_generator(seed: int):
    import torch

    return torch.Generator().manual_seed(seed)


@ray.remote
class EvalWorker:
    """Plays chunks of episodes on request; keeps each policy it has loaded for the next request."""

    def __init__(self, task_name: str, threads: int = 1):
        import torch

        torch.set_num_threads(threads)
        self.task = envs.get_task(task_name)
        self.policies: dict[PolicySpec, LMPolicy] = {}

    def play(self, spec: PolicySpec | str, indices: list[int], seed: int, split: str, instances: int
             ) -> list[dict[str, Any]]:
        marker = os.environ.get(CRASH_ONCE_ENV)
        if marker and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        if spec == BEHAVIOUR:
            return behaviour_chunk(self.task, indices, seed, split, instances)
        if spec not in self.policies:
            self.policies = {spec: LMPolicy(spec, self.task)}  # one policy at a time: memory stays flat
        return play_chunk(self.task, self.policies[spec], indices, seed, split, instances)


class EvalPool:
    """A pool of evaluation actors for one task, kept across `evaluate` calls (an actor's start-up, which
    imports torch and transformers, costs far more than a tiny model's episodes). Use as a context manager."""

    def __init__(self, task: envs.Task | str, cfg: EvalConfig):
        self.task, self.cfg = envs.as_task(task), cfg
        crash_marker = os.environ.get(CRASH_ONCE_ENV)  # forwarded so failure handling can be rehearsed
        self.runtime_env = {"env_vars": {CRASH_ONCE_ENV: crash_marker}} if crash_marker else None
        self.workers: list[Any] = []

    def _new_worker(self):
        worker = EvalWorker.options(num_cpus=self.cfg.cpus_per_actor, runtime_env=self.runtime_env).remote(
            self.task.name, max(1, int(self.cfg.cpus_per_actor)))
        self.workers.append(worker)
        return worker

    def evaluate(self, spec: PolicySpec | str, seed: int, split: str = "eval", progress: bool = True,
                 num_episodes: int | None = None) -> list[dict[str, Any]]:
        """Records of the split's episodes (`split_size`), sorted by episode index; `spec` BEHAVIOUR plays the
        behaviour policy instead (`behaviour_chunk`)."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        instances, n = split_size(self.task, cfg, split, num_episodes)
        chunks = [list(range(i, min(n, i + cfg.envs_per_actor))) for i in range(0, n, cfg.envs_per_actor)]
        while len(self.workers) < min(cfg.num_actors, len(chunks)):
            self._new_worker()
        todo = list(range(len(chunks)))
        attempts = [0] * len(chunks)
        running: dict[Any, tuple[int, Any]] = {}
        results: dict[int, list[dict[str, Any]]] = {}
        idle = list(self.workers)
        desc = f"evaluate {getattr(spec, 'name', spec)}" + ("" if split == "eval" else f" ({split})")
        with tqdm(total=n, desc=desc, unit="episode", disable=not progress) as bar:
            while todo or running:
                while todo and idle:
                    chunk, worker = todo.pop(0), idle.pop(0)
                    running[worker.play.remote(spec, chunks[chunk], seed, split, instances)] = (chunk, worker)
                done, _ = ray.wait(list(running), num_returns=1)
                chunk, worker = running.pop(done[0])
                try:
                    results[chunk] = ray.get(done[0])
                    idle.append(worker)
                    bar.update(len(chunks[chunk]))
                except ray.exceptions.RayActorError:
                    attempts[chunk] += 1
                    if attempts[chunk] > cfg.max_retries:
                        raise RuntimeError(f"evaluation chunk {chunks[chunk]} failed {attempts[chunk]} times") from None
                    todo.insert(0, chunk)
                    self.workers.remove(worker)
                    idle.append(self._new_worker())
        records = [r for chunk in sorted(results) for r in results[chunk]]
        assert [r["episode"] for r in records] == list(range(n))
        return records

    def close(self) -> None:
        for worker in self.workers:
            ray.kill(worker)
        self.workers = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def evaluate(task: envs.Task | str, spec: PolicySpec, cfg: EvalConfig, progress: bool = True, split: str = "eval"
             ) -> list[dict[str, Any]]:
    """Records of `cfg.num_episodes` held-out episodes (or `cfg.num_validation_episodes` validation ones) of one
    policy, sorted by episode index, on a pool of actors of its own."""
    with EvalPool(task, cfg) as pool:
        return pool.evaluate(spec, cfg.seed, split, progress)


def summarize(records: list[dict[str, Any]]) -> dict[str, float]:
    """Means with 95% confidence intervals (normal approximation; Wilson for the success rate)."""
    n = len(records)
    raw = np.array([r["raw_return"] for r in records])
    score = np.array([r["score"] for r in records])
    success = np.array([r["success"] for r in records], dtype=float)
    z = 1.96
    p = success.mean()
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {
        "episodes": n,
        "raw_return": float(raw.mean()), "raw_return_ci": float(z * raw.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0,
        "score": float(score.mean()), "score_ci": float(z * score.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0,
        "success_rate": float(p), "success_ci_low": max(0.0, float(centre - half)),
        "success_ci_high": min(1.0, float(centre + half)),
        "steps": float(np.mean([r["steps"] for r in records])),
    }
