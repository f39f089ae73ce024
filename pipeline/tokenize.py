"""Episodes -> training sequences (Ray Data), and the turn format shared with inference.

A sequence is `obs_0 act_0 <|eot|> obs_1 act_1 <|eot|> ... obs_T`: environment text, then each agent turn
ending in the end-of-turn token. `action_mask` marks agent tokens (the action text and its <|eot|>),
`turn_end` marks each turn's last agent token (its <|eot|>), and the turn's unit reward sits on that token.
Turn ends are marked, not inferred from where agent tokens stop, since an observation may encode to no
tokens. Pixel tasks (`ActionCodec`) use the same layout with one `<|obs|>` token per observation (its image
and proprioception travel beside the ids) and a fixed number of action bin tokens per turn instead of text
and <|eot|>, the turn end and reward on the last bin. Each segment is tokenized on its own, so the policy
rebuilds exactly the same ids at inference. Sequences longer than `max_length` keep whole turns from the
start (plus the observation after the last kept turn, to bootstrap from); the rest of the episode is
dropped and counted. A terminated episode's final observation is left out (nothing bootstraps from it).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from envs.base import Task
from pipeline.tokens import EOT, OBS


class TurnCodec:
    """Token ids of observation and action segments for a tokenizer that has the <|eot|> token."""

    action_length = None      # actions end with <|eot|>, at most `max_action_tokens` long
    action_token_ids = None   # any token may be part of an action

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.eot_id = tokenizer.convert_tokens_to_ids(EOT)
        if self.eot_id is None or self.eot_id == tokenizer.unk_token_id:
            raise ValueError(f"tokenizer has no {EOT} token; build it with pipeline.models.build_tokenizer")

    def observation_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def action_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False) + [self.eot_id]

    def decode_action(self, ids: Sequence[int]) -> str:
        ids = list(ids)
        if self.eot_id in ids:
            ids = ids[: ids.index(self.eot_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()


class ActionCodec:
    """Pixel tasks: an observation is one <|obs|> token, an action one bin token per dimension.

    `action_tokenizer` (envs.robot.actions.ActionTokenizer) maps a continuous action to bins; bin b is
    token id `first_bin_id + b` in a tokenizer built by `pipeline.models.build_action_tokenizer`.
    Stored observations are JSON text holding "proprio" (the image is a column of its own); live ones are
    {"image", "proprio"} dicts.
    """

    def __init__(self, tokenizer, action_tokenizer):
        self.tokenizer = tokenizer
        self.actions = action_tokenizer
        self.observation_id = tokenizer.convert_tokens_to_ids(OBS)
        ids = tokenizer.convert_tokens_to_ids(action_tokenizer.vocabulary())
        self.first_bin_id = ids[0]
        if ids != list(range(ids[0], ids[0] + len(ids))) or self.observation_id == tokenizer.unk_token_id:
            raise ValueError("tokenizer lacks <|obs|> or contiguous bin tokens; build it with "
                             "pipeline.models.build_action_tokenizer")
        self.action_length = action_tokenizer.action_dim
        self.action_token_ids = range(self.first_bin_id, self.first_bin_id + action_tokenizer.num_bins)
        self.eot_id = None

    def observation_ids(self, observation: Any) -> list[int]:
        return [self.observation_id]

    def action_ids(self, action: Any) -> list[int]:
        values = json.loads(action) if isinstance(action, str) else action
        return [self.first_bin_id + b for b in self.actions.encode(values)]

    def decode_action(self, ids: Sequence[int]) -> np.ndarray:
        return self.actions.decode([int(i) - self.first_bin_id for i in list(ids)[: self.action_length]])

    @staticmethod
    def proprio(observation: Any) -> np.ndarray:
        """The proprioception of a stored (JSON text) or live (dict) observation."""
        values = json.loads(observation)["proprio"] if isinstance(observation, str) else observation["proprio"]
        return np.asarray(values, dtype=np.float32)


def make_codec(tokenizer, task):
    """The turn format of a task: text turns, or pixel observations with action bin tokens."""
    if task.action_tokenizer is not None:
        return ActionCodec(tokenizer, task.action_tokenizer)
    return TurnCodec(tokenizer)


def encode_episode(codec: TurnCodec | ActionCodec, observations: Sequence[str], actions: Sequence[str],
                   unit_rewards: Sequence[float], terminated: bool, max_length: int) -> dict[str, Any]:
    """One training row: input_ids, action_mask, turn_end, rewards, length, terminated, kept/dropped turn counts."""
    ids = codec.observation_ids(observations[0])
    mask = [0] * len(ids)
    turn_end = [0] * len(ids)
    rewards = [0.0] * len(ids)
    kept = 0
    for t, action in enumerate(actions):
        act = codec.action_ids(action)
        is_last = t == len(actions) - 1
        obs = [] if (is_last and terminated) else codec.observation_ids(observations[t + 1])
        if len(ids) + len(act) + len(obs) > max_length:
            break
        ids += act + obs
        mask += [1] * len(act) + [0] * len(obs)
        turn_end += [0] * (len(act) - 1) + [1] + [0] * len(obs)
        rewards += [0.0] * (len(act) - 1) + [float(unit_rewards[t])] + [0.0] * len(obs)
        kept += 1
    if kept == 0:
        ids, mask, turn_end, rewards = [], [], [], []
    return {
        "input_ids": np.asarray(ids, dtype=np.int32),
        "action_mask": np.asarray(mask, dtype=np.int8),
        "turn_end": np.asarray(turn_end, dtype=np.int8),
        "rewards": np.asarray(rewards, dtype=np.float32),
        "length": len(ids),
        "terminated": bool(terminated and kept == len(actions)),
        "kept_turns": kept,
        "dropped_turns": len(actions) - kept,
    }


def attach_observations(codec: ActionCodec, row: dict[str, Any], observations: Sequence[str],
                        images: Sequence[bytes]) -> None:
    """Put a pixel row's kept observations beside its ids: `obs_images` ((kept, H, W, 3) uint8, decoded from the
    stored PNGs here, once: decoding them in every epoch's batches cost ~0.2 s a step on 2 CPUs) and `obs_proprio`
    (flat), one per <|obs|> token; the kept observations are a prefix of the episode's."""
    from envs.robot.codec import decode_image

    kept = int(np.sum(row["input_ids"] == codec.observation_id))
    row["obs_images"] = (np.stack([decode_image(png) for png in images[:kept]]) if kept
                         else np.zeros((0, 0, 0, 3), np.uint8))
    row["obs_proprio"] = np.concatenate([codec.proprio(o) for o in observations[:kept]] or [np.zeros(0, np.float32)])


@functools.lru_cache(maxsize=4)
def _codec(tokenizer_dir: str, task_name: str) -> TurnCodec | ActionCodec:
    import envs
    from pipeline.models import load_tokenizer  # registers the pixel model type the folder's config may name

    return make_codec(load_tokenizer(tokenizer_dir), envs.get_task(task_name))


def action_budget_warning(data: str, tokenizer_dir: str, max_action_tokens: int) -> str | None:
    """What a generation cap of `max_action_tokens` would cut: a warning naming how many of the data's actions
    (text tasks) have more text tokens than the cap, which a policy's generated action stops at (an action cut
    mid-way is usually invalid), or None when every action fits."""
    from pipeline.data import read_shard, resolve, shard_files
    from pipeline.models import load_tokenizer

    fs, _ = resolve(data)
    tokenizer = load_tokenizer(tokenizer_dir)
    actions = [a for file in shard_files(data) for a in read_shard(file, fs, ["action"]).column("action").to_pylist()
               if a is not None]
    lengths = [len(ids) for ids in tokenizer(actions, add_special_tokens=False)["input_ids"]] if actions else []
    longer = sum(n > max_action_tokens for n in lengths)
    if not longer:
        return None
    return (f"eval.max_action_tokens={max_action_tokens} is shorter than {longer} of the data's {len(lengths)} actions "
            f"({100 * longer / len(lengths):.1f}%, the longest {max(lengths)} tokens), and a generated action is cut "
            f"there: set it to at least {max(lengths)}")


def bootstrapped_turns(row: dict[str, Any]) -> range:
    """The kept turns of a row whose last token bootstraps from the next state: all but a terminal last one."""
    return range(row["kept_turns"] - 1 if row["terminated"] else row["kept_turns"])


def next_state_candidates(codec: TurnCodec, infos: Sequence[dict[str, Any]], row: dict[str, Any]
                          ) -> dict[str, np.ndarray]:
    """A row's candidate columns: for each bootstrapped turn t, the rankable actions that the step info of the
    next state, infos[t + 1]["admissible_actions"], lists, as token ids (`pipeline.candidates`)."""
    from pipeline.candidates import candidate_columns, rankable

    return candidate_columns([[codec.action_ids(a) for a in rankable(infos[t + 1].get("admissible_actions") or [])]
                              for t in bootstrapped_turns(row)])


def tokenize_dataset(episodes, tokenizer_dir: str, task: Task, max_length: int, with_candidates: bool = False):
    """Map a Ray Dataset of episode records to training rows; drops episodes whose first turn does not fit.

    Rows of pixel tasks also carry the kept observations' images (`obs_images`, decoded) and proprioception
    (`obs_proprio`, flat), one per <|obs|> token in order. `with_candidates` adds, per bootstrapped turn, the
    next state's rankable admissible actions as token ids (`pipeline.candidates.candidate_columns`), read from
    the step infos the environment gave.
    """
    task_name = task.name  # Ray Data's workers look the task up by name

    def encode(batch: dict[str, Any]) -> dict[str, list]:
        import envs

        task = envs.get_task(task_name)
        codec = _codec(tokenizer_dir, task_name)
        out: dict[str, list] = {}
        for i in range(len(batch["episode_id"])):
            actions = list(batch["actions"][i])
            observations = list(batch["observations"][i])
            terminated = bool(batch["terminated"][i])
            unit = task.unit_rewards([float(r) for r in batch["rewards"][i]], terminated)
            row = encode_episode(codec, observations, actions, unit, terminated, max_length)
            row["episode_id"] = int(batch["episode_id"][i])
            if with_candidates:
                row.update(next_state_candidates(codec, json.loads(batch["infos"][i]), row))
            if isinstance(codec, ActionCodec):
                attach_observations(codec, row, observations, list(batch["images"][i]))
            for key, value in row.items():
                out.setdefault(key, []).append(value)
        return out

    return episodes.map_batches(encode, batch_format="numpy", batch_size=64)
