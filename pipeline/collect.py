"""Collect trajectories from a task's behaviour policy with Ray and write them as sharded Parquet.

Episode e of a collection with seed S is played on a train instance drawn by `env.reset(seed=S*1_000_003+e)`
with the behaviour policy seeded the same way, so a dataset is reproducible whatever the number of workers.
The folder is published whole (`pipeline.data.publishing`): a second collection into the same local folder
is refused while the first runs, and readers see either the old dataset or the new one.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from datetime import datetime, timezone
from typing import Any

import gymnasium
import numpy as np
import pyarrow.parquet as pq
import ray

import envs
from envs.base import play
from pipeline import tracking
from pipeline.data import (
    SCHEMA_VERSION,
    STEP_SCHEMA,
    Episode,
    episodes_to_table,
    publishing,
    resolve,
    shard_list,
    write_metadata,
)


def episode_seed(seed: int, episode: int) -> int:
    return seed * 1_000_003 + episode


def observation_parts(observation: Any) -> tuple[str, bytes | None]:
    """Split an observation into (text, PNG image or None); pixel tasks return dicts with an image."""
    if isinstance(observation, str):
        return observation, None
    from envs.robot.codec import encode_image  # pixel tasks only

    text = json.dumps({k: _rounded(v) for k, v in observation.items() if k != "image"})
    return text, encode_image(observation["image"])


def action_text(action: Any) -> str:
    return action if isinstance(action, str) else json.dumps(_rounded(action))


def _rounded(values: Any) -> Any:
    """Numbers as JSON-ready lists rounded to 5 decimals (float64 first: no float32 noise digits)."""
    return np.asarray(values, dtype=np.float64).round(5).tolist()


def play_episode(env: gymnasium.Env, policy: envs.BehaviourPolicy, seed: int, options: dict, episode_id: int,
                 task: str) -> Episode:
    """Run one episode of `policy` in `env` (`envs.base.play`) and record it."""
    played = play(env, policy, seed, options)
    texts, images = zip(*map(observation_parts, played.observations))
    return Episode(episode_id=episode_id, task=task, observations=list(texts),
                   actions=[action_text(a) for a in played.actions], rewards=played.rewards,
                   terminated=played.terminated, truncated=played.truncated, infos=played.infos,
                   images=list(images) if images[-1] is not None else None)


@ray.remote
def collect_chunk(task_name: str, episode_ids: list[int], seed: int, behaviour_params: dict, folder: str,
                  shard: int, skip: int = 0) -> dict[str, list]:
    """Play a chunk of episodes in one process and write their step rows as shard `shard` of `folder` (with
    pyarrow, from this process: the rows never travel through the object store); returns per-episode
    statistics and the env's spaces."""
    task = envs.get_task(task_name)
    env = gymnasium.make(task.env_id, **task.env_kwargs)
    policy = task.make_behaviour(**behaviour_params)
    episodes = [play_episode(env, policy, episode_seed(seed, e), {"split": "train", "skip": skip}, e, task_name)
                for e in episode_ids]
    spaces = {"observation_space": describe_space(env.observation_space),
              "action_space": describe_space(env.action_space)}
    env.close()
    fs, root = resolve(folder)
    pq.write_table(episodes_to_table(episodes), f"{root}/{shard_name(shard)}", filesystem=fs)
    return {"spaces": [spaces], "return": [ep.raw_return for ep in episodes],
            "unit_return": [sum(task.unit_rewards(ep.rewards, ep.terminated)) for ep in episodes],
            "success": [task.success(ep.rewards, ep.terminated) for ep in episodes],
            "length": [len(ep.actions) for ep in episodes],
            "terminated": [ep.terminated for ep in episodes], "truncated": [ep.truncated for ep in episodes],
            "task_type": [str(ep.infos[0].get("task_type") or "") if ep.infos else "" for ep in episodes]}


def shard_name(shard: int) -> str:
    return f"part-{shard:05d}.parquet"


def collect(task: envs.Task | str, num_episodes: int, out: str, *, seed: int = 0, workers: int = 0, shards: int = 0,
            behaviour_params: dict | None = None, validation_instances: int = 0, progress: bool = True
            ) -> dict[str, Any]:
    """Collect `num_episodes` behaviour episodes of a task (a Task or its name) into `out` (part-*.parquet +
    dataset.json).

    Episodes are split into `shards` chunks (default 4 per worker), each played by one Ray task that writes
    its chunk as one shard; at most `workers` tasks run at once (default: the cluster's CPUs). Episodes are
    drawn from the training split's instances but its first `validation_instances`, which validation plays. A local `out` is locked before the first episode is played (raises
    pipeline.data.FolderBusy if another collection holds it) and replaced only once the new dataset is
    complete. Returns the metadata written to dataset.json.
    """
    task = envs.as_task(task)
    params = {**task.default_behaviour_params, **(behaviour_params or {})}
    workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    shards = max(1, min(num_episodes, shards or 4 * workers))
    bounds = np.linspace(0, num_episodes, shards + 1).astype(int)
    chunks = [list(range(a, b)) for a, b in itertools.pairwise(bounds) if b > a]
    started = time.perf_counter()
    with publishing(out) as folder:
        fs, root = resolve(folder)
        fs.create_dir(root, recursive=True)
        stats = _run_limited(lambda i: collect_chunk.remote(task.name, chunks[i], seed, params, folder, i,
                                                            validation_instances),
                             [len(c) for c in chunks], workers, f"collect {task.name}", progress)
        elapsed = time.perf_counter() - started

        merged = {key: [v for chunk in stats for v in chunk[key]] for key in stats[0]}
        metadata = _summarize(merged, task, params, seed, shard_list(folder))
        metadata["validation_instances"] = validation_instances  # the training split's first ones, not collected
        metadata.update(merged["spaces"][0], created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        metadata["collection_seconds"] = round(elapsed, 3)
        write_metadata(folder, metadata)
    return metadata


def _run_limited(submit, sizes: list[int], limit: int, desc: str, progress: bool) -> list:
    """Results of `submit(i)` for every chunk i (of sizes[i] episodes), in order, with at most `limit` tasks in
    flight."""
    from tqdm.auto import tqdm

    results: dict[int, Any] = {}
    running: dict[Any, int] = {}
    todo = list(range(len(sizes)))
    with tqdm(total=sum(sizes), desc=desc, unit="episode", disable=not progress) as bar:
        while todo or running:
            while todo and len(running) < limit:
                i = todo.pop(0)
                running[submit(i)] = i
            done, _ = ray.wait(list(running), num_returns=1)
            i = running.pop(done[0])
            results[i] = ray.get(done[0])
            bar.update(sizes[i])
    return [results[i] for i in range(len(sizes))]


def _summarize(stats: dict[str, list], task: envs.Task, params: dict, seed: int,
               shards: list[dict[str, Any]]) -> dict[str, Any]:
    """dataset.json: what was collected, how and by which code, into which shards (names and row counts),
    the task's score normalizer and unit-reward rule, and the return statistics (raw and unit); where the
    env's `info` names a `task_type` (ALFWorld), also episodes and success rate per task type. (`collect`
    adds the env's spaces, the creation time and the collection's wall time.)"""
    num_episodes, num_steps = len(stats["return"]), int(sum(stats["length"]))
    metadata = {
        "schema_version": SCHEMA_VERSION,
        "columns": STEP_SCHEMA.names,
        "task": task.name,
        "env_id": task.env_id,
        "env_version": task.version,
        "code_version": tracking.code_version(),
        "behaviour_policy": {"factory": _qualified_name(task.make_behaviour), "params": params},
        "score_normalizer": {**dataclasses.asdict(task.normalizer),
                             "rule": "piecewise linear: worst -> 0, average -> 50, best -> 100 (LMRL-Gym)"},
        "unit_rewards": _qualified_name(task.unit_rewards),
        "seed": seed,
        "episode_seeds": "seed * 1000003 + episode_id",
        "num_episodes": num_episodes,
        "num_steps": num_steps,
        "num_rows": num_steps + num_episodes,
        "num_shards": len(shards),
        "shards": shards,
        "num_terminated": int(sum(stats["terminated"])),
        "num_truncated": int(sum(stats["truncated"])),
        "return": _stats(stats["return"]),
        "unit_return": _stats(stats["unit_return"]),
        "success_rate": float(np.mean(stats["success"])) if num_episodes else math.nan,
        "episode_length": _stats(stats["length"]),
    }
    metadata.update(_by_task_type(stats.get("task_type", []), stats["success"]))
    return metadata


def _by_task_type(task_types: list[str], successes: list[bool]) -> dict[str, dict]:
    """{"episodes_by_task_type", "success_rate_by_task_type"} over the episodes that name a task type;
    {} when none does."""
    by_type: dict[str, list[bool]] = {}
    for task_type, success in zip(task_types, successes):
        if task_type:
            by_type.setdefault(task_type, []).append(bool(success))
    if not by_type:
        return {}
    types = sorted(by_type)
    return {"episodes_by_task_type": {t: len(by_type[t]) for t in types},
            "success_rate_by_task_type": {t: float(np.mean(by_type[t])) for t in types}}


def describe_space(space: gymnasium.Space) -> dict[str, Any]:
    """A gymnasium space as JSON, in the spirit of Minari's: its type and parameters (Text: lengths and
    charset; Box: shape, dtype and bounds, one number where all are equal; Dict: its spaces)."""
    if isinstance(space, gymnasium.spaces.Dict):
        return {"type": "Dict", "spaces": {key: describe_space(sub) for key, sub in space.spaces.items()}}
    if isinstance(space, gymnasium.spaces.Text):
        return {"type": "Text", "min_length": space.min_length, "max_length": space.max_length,
                "charset": "".join(sorted(space.character_set))}
    if isinstance(space, gymnasium.spaces.Box):
        def bound(values: np.ndarray) -> Any:
            return _rounded(values.flat[0]) if np.all(values == values.flat[0]) else _rounded(values)

        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype), "low": bound(space.low),
                "high": bound(space.high)}
    return {"type": type(space).__name__, "repr": repr(space)}


def _qualified_name(factory) -> str:
    """module.name of a factory (a function, a class, or a functools.partial of one)."""
    factory = getattr(factory, "func", factory)
    return f"{factory.__module__}.{factory.__qualname__}"


def _stats(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
            "max": float(values.max())}
