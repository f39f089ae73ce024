"""Filmstrips of pixel-task evaluation episodes, replayed from their records.

An evaluation record keeps the instance, the seed and every action (bin centres, rounded in the JSON
transcript); the environment is deterministic given those, so re-encoding each action to its bins and
decoding it gives the exact action that was played, and replaying them redraws the camera frames. The
replay is checked against the record (same number of steps, same return) before it is drawn.
"""

from __future__ import annotations

import json
import os
from typing import Any

import gymnasium
import numpy as np

import envs
from pipeline.plotting import pyplot


def replay_frames(task: envs.Task, record: dict[str, Any]) -> list[np.ndarray]:
    """The camera frames of one recorded evaluation episode: the first observation and one per step."""
    env = gymnasium.make(task.env_id, **task.env_kwargs)
    observation, _ = env.reset(seed=record["seed"], options={"split": "eval", "index": record["episode"]})
    frames, rewards = [observation["image"]], []
    for turn in json.loads(record["transcript"])[:-1]:
        bins = task.action_tokenizer.encode(json.loads(turn["action"]))
        observation, reward, *_ = env.step(task.action_tokenizer.decode(bins))
        frames.append(observation["image"])
        rewards.append(reward)
    env.close()
    if len(rewards) != record["steps"] or abs(sum(rewards) - record["raw_return"]) > 1e-9:
        raise RuntimeError(f"replay of episode {record['episode']} does not match its record")
    return frames


def write_filmstrip(folder: str, task: envs.Task, runs: dict[str, list[dict[str, Any]]], frames: int = 8) -> str:
    """One PNG: for each policy, its first successful and first failed episode, `frames` frames each."""
    plt = pyplot()

    rows = []
    for name, records in runs.items():
        for outcome in (True, False):
            record = next((r for r in records if r["success"] == outcome), None)
            if record is not None:
                rows.append((f"{name}\nepisode {record['episode']}: {'success' if outcome else 'failure'}",
                             replay_frames(task, record)))
    fig, axes = plt.subplots(len(rows), frames, figsize=(1.6 * frames, 1.9 * len(rows)), squeeze=False)
    for (label, episode), row_axes in zip(rows, axes):
        picks = np.linspace(0, len(episode) - 1, frames).round().astype(int)
        for ax, t in zip(row_axes, picks):
            ax.imshow(episode[t])
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"t={t}", fontsize=7)
        row_axes[0].set_ylabel(label, fontsize=7)
    fig.tight_layout()
    path = os.path.join(folder, "filmstrip.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
