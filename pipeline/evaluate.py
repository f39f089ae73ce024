"""Evaluate a policy on a task's held-out instances with a pool of Ray actors.

The episodes are cut into fixed chunks (`envs_per_actor` each); an actor plays a chunk's environments in
lock-step so one batched policy call serves them all. Chunks are the unit of work and of retry: a chunk
whose actor died is replayed on a fresh actor, and every episode index is accepted exactly once. Episode i
is always instance i of the eval split with seed `seed*1_000_003 + i` and its own sampling generator, so the
same policy on the same seeds gives identical records.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import gymnasium
import numpy as np
import ray

import envs
from pipeline.collect import action_text, observation_parts
from pipeline.config import EvalConfig
from pipeline.policy import LMPolicy, PolicySpec, Segment

# Fault injection: with this set to a file path that does not exist, the first actor to get work creates the
# file and dies, so retry handling can be rehearsed (tests do).
CRASH_ONCE_ENV = "QSFT_EVAL_CRASH_ONCE"


def eval_seed(seed: int, index: int) -> int:
    return seed * 1_000_003 + index


def play_chunk(task: envs.Task, policy: LMPolicy, indices: list[int], seed: int) -> list[dict[str, Any]]:
    """Play eval episodes `indices` side by side; one batched policy call per turn."""
    games = []
    for index in indices:
        env = gymnasium.make(task.env_id, **task.env_kwargs)
        observation, info = env.reset(seed=eval_seed(seed, index), options={"split": "eval", "index": index})
        generator = torch_generator(eval_seed(seed, index))
        games.append({"env": env, "index": index, "info": info, "segments": [policy.segment(observation)],
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
            "task": task.name, "policy": policy.spec.name, "episode": game["index"],
            "instance": json.dumps(game["info"].get("instance")), "seed": eval_seed(seed, game["index"]),
            "raw_return": raw, "unit_return": float(sum(task.unit_rewards(rewards, terminated))),
            "score": float(task.normalizer(raw)), "success": bool(task.success(rewards, terminated)),
            "steps": len(rewards), "task_type": str(game["info"].get("task_type", "")),
            "transcript": json.dumps(game["transcript"]),
        })
    return records


def choose_actions(task: envs.Task, policy: LMPolicy, contexts: list[Segment], games: list[dict]) -> list[Any]:
    """Generate each action, or, where the task lists admissible actions, take the best-ranked one.

    A winning candidate that is a template such as "search[...]" is then written by the policy itself.
    """
    generators = [g["generator"] for g in games]
    if not task.has_admissible_actions:
        return policy.generate(contexts, generators)
    actions = []
    for game, context in zip(games, contexts):
        candidates = game["info"].get("admissible_actions") or []
        scores = policy.rank(context, candidates) if candidates else []
        actions.append(candidates[int(np.argmax(scores))] if candidates else "")
    free = [i for i, a in enumerate(actions) if not a or a.endswith("[...]")]
    if free:
        written = policy.generate([contexts[i] for i in free], [generators[i] for i in free])
        for i, action in zip(free, written):
            actions[i] = action
    return actions


def torch_generator(seed: int):
    import torch

    return torch.Generator().manual_seed(seed)


@ray.remote
class EvalWorker:
    """Holds one policy copy; plays chunks of episodes on request."""

    def __init__(self, task_name: str, spec: PolicySpec, threads: int = 1):
        import torch

        torch.set_num_threads(threads)
        self.task = envs.get_task(task_name)
        self.policy = LMPolicy(spec, self.task)

    def play(self, indices: list[int], seed: int) -> list[dict[str, Any]]:
        marker = os.environ.get(CRASH_ONCE_ENV)
        if marker and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return play_chunk(self.task, self.policy, indices, seed)


def evaluate(task_name: str, spec: PolicySpec, cfg: EvalConfig, progress: bool = True) -> list[dict[str, Any]]:
    """Records of `cfg.num_episodes` held-out episodes, sorted by episode index."""
    from tqdm.auto import tqdm

    task = envs.get_task(task_name)
    n = min(cfg.num_episodes, task.num_eval_instances)
    chunks = [list(range(i, min(n, i + cfg.envs_per_actor))) for i in range(0, n, cfg.envs_per_actor)]
    threads = max(1, int(cfg.cpus_per_actor))

    crash_marker = os.environ.get(CRASH_ONCE_ENV)  # forwarded so failure handling can be rehearsed
    runtime_env = {"env_vars": {CRASH_ONCE_ENV: crash_marker}} if crash_marker else None

    def new_worker():
        return EvalWorker.options(num_cpus=cfg.cpus_per_actor, runtime_env=runtime_env).remote(task_name, spec, threads)

    workers = [new_worker() for _ in range(min(cfg.num_actors, len(chunks)))]
    todo = list(range(len(chunks)))
    attempts = [0] * len(chunks)
    running: dict[Any, tuple[int, Any]] = {}
    results: dict[int, list[dict[str, Any]]] = {}
    idle = list(workers)
    with tqdm(total=n, desc=f"evaluate {spec.name}", unit="episode", disable=not progress) as bar:
        while todo or running:
            while todo and idle:
                chunk, worker = todo.pop(0), idle.pop(0)
                running[worker.play.remote(chunks[chunk], cfg.seed)] = (chunk, worker)
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
                idle.append(new_worker())
    for worker in workers + idle:
        ray.kill(worker)
    records = [r for chunk in sorted(results) for r in results[chunk]]
    assert [r["episode"] for r in records] == list(range(n))
    return records


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
