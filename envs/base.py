"""The contract every task in `envs/` fulfils, so `pipeline/` can treat tasks alike.

A task is a registered gymnasium environment plus the facts offline RL needs about it:
a behaviour policy for data collection, the held-out evaluation split, the map from raw
rewards to Q-SFT's unit rewards (discounted returns in [0, 1], Assumption 4.1), and
LMRL-Gym score normalization. Nothing here imports torch or Ray.

Instances: `env.reset(seed=s, options={"split": "train" | "eval", "index": i})` plays
instance `i` of a split; without `index` an instance is drawn from the seeded RNG, among those from `options["skip"]`
on (default 0: all). Evaluation instances are never drawn during collection, and a collection that holds back its
split's first instances for validation (`CollectConfig.validation_instances`) skips them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class BehaviourPolicy(Protocol):
    """A data-collection policy: seeded, stateful within an episode, text in and text out."""

    def reset(self, seed: int) -> None: ...

    def act(self, observation: str, info: dict[str, Any]) -> str: ...


@dataclass(frozen=True)
class ScoreNormalizer:
    """LMRL-Gym normalization: `worst` -> 0, `average` (dataset) -> 50, `best` -> 100, piecewise linear."""

    worst: float
    average: float
    best: float

    def __post_init__(self) -> None:
        if not self.worst < self.average < self.best:
            raise ValueError(f"need worst < average < best, got {self.worst}, {self.average}, {self.best}")

    def __call__(self, raw_return: float) -> float:
        if raw_return <= self.average:
            return 50.0 * (raw_return - self.worst) / (self.average - self.worst)
        return 50.0 + 50.0 * (raw_return - self.average) / (self.best - self.average)


@dataclass(frozen=True)
class Task:
    """Everything the pipeline needs to collect, train on and evaluate one environment."""

    name: str                      # short name used on the command line, e.g. "wordle"
    env_id: str                    # gymnasium id, e.g. "qsft/Wordle-v0"
    version: str                   # bumped whenever rules, data files or rewards change
    max_steps: int                 # step limit (episodes are truncated after it)
    num_eval_instances: int        # size of the fixed held-out split
    make_behaviour: Callable[..., BehaviourPolicy]   # make_behaviour(**behaviour_params)
    default_behaviour_params: dict[str, Any]
    unit_rewards: Callable[[Sequence[float], bool], list[float]]  # (raw step rewards, terminated) -> unit
    success: Callable[[Sequence[float], bool], bool]              # (raw step rewards, terminated) -> solved?
    normalizer: ScoreNormalizer
    make_solver: Callable[[], BehaviourPolicy]   # the strong scripted player, whose held-out score is `best`
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    has_admissible_actions: bool = False   # info["admissible_actions"] lists the legal actions (ranked at inference, and
    #                                        the candidates of Q-SFT's action-level backup, pipeline.candidates)
    # Every action worth taking is one of these strings (Wordle: its allowed words), too many to list as
    # admissible actions: text policies decode restricted to them, token by token (a trie). None: free text.
    lexicon: Callable[[], Sequence[str]] | None = None
    # Pixel tasks with continuous actions: the `envs.robot.actions.ActionTokenizer` that turns an action
    # into one bin token per dimension; observations are {"image", "proprio"} dicts. None: text task.
    action_tokenizer: Any = None


@dataclass(frozen=True)
class Played:
    """One episode as `play` saw it: the observations o_0..o_T and infos info_0..info_T as the env returned
    them (from the reset, then one per step), the T actions the policy chose, the T raw step rewards, and how
    the episode ended."""

    observations: list[Any]
    infos: list[dict[str, Any]]
    actions: list[Any]
    rewards: list[float]
    terminated: bool
    truncated: bool

    @property
    def raw_return(self) -> float:
        return float(sum(self.rewards))


def reset_instance(options: dict[str, Any] | None, sizes: dict[str, int], rng: Any) -> tuple[str, int]:
    """The instance a reset plays, by the contract above: (split, index), the index `options["index"]` or, without
    one, drawn from the env's seeded `rng` (`np_random`) in [options["skip"], size). `sizes` gives each split's
    number of instances; an unknown split, an index outside [0, size) or a skip that leaves nothing to draw is a
    ValueError that names it."""
    options = options or {}
    split = options.get("split", "train")
    if split not in sizes:
        raise ValueError(f"options['split'] must be one of {list(sizes)}, got {split!r}")
    if sizes[split] == 0:
        raise ValueError(f"the {split} split has no instances")
    index, skip = options.get("index"), int(options.get("skip", 0))
    if index is None and not 0 <= skip < sizes[split]:
        raise ValueError(f"options['skip'] {skip} leaves no instance of the {split} split ({sizes[split]}) to draw")
    index = skip + int(rng.integers(sizes[split] - skip)) if index is None else int(index)
    if not 0 <= index < sizes[split]:
        raise ValueError(f"options['index'] {index} is out of range for the {split} split ({sizes[split]} instances)")
    return split, index


def play(env: Any, policy: BehaviourPolicy, seed: int, options: dict[str, Any] | None = None) -> Played:
    """One episode of `policy` in `env`: the policy is reset with `seed` first, then the env with `seed` and
    `options`; the only loop in `envs/` and `pipeline/` that steps a policy through an env."""
    policy.reset(seed)
    observation, info = env.reset(seed=seed, options=options)
    observations, infos, actions, rewards = [observation], [info], [], []
    terminated = truncated = False
    while not (terminated or truncated):
        actions.append(policy.act(observation, info))
        observation, reward, terminated, truncated, info = env.step(actions[-1])
        observations.append(observation)
        infos.append(info)
        rewards.append(float(reward))
    return Played(observations, infos, actions, rewards, bool(terminated), bool(truncated))
