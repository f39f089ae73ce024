"""Configuration dataclasses for every stage, kept apart from the math (d3rlpy style).

Each stage reads one dataclass; presets are plain dictionaries of overrides; `apply_overrides`
turns `--field value` flags (or a Tune search space) into a new config and names any unknown field.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin, get_type_hints


class ConfigError(ValueError):
    """A configuration value or field name is invalid; the message names the field."""


@dataclass(frozen=True)
class ModelConfig:
    """A causal LM: `name_or_path` loads any HF checkpoint; empty builds a GPT-2-shaped model from scratch."""

    name_or_path: str = ""
    architecture: Literal["gpt2", "llama", "llama_pointer"] = "gpt2"  # scratch only: GPT-2 (learned absolute
    #                                 positions), Llama-shaped (rotary positions, which learn "the last few tokens"
    #                                 patterns faster), or Llama with a pointer head that copies from the context
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    max_length: int = 256          # longest training sequence in tokens (whole turns are kept)
    vocab_size: int = 512          # size of the byte-level BPE trained on the task text (scratch only)
    dropout: float = 0.0


MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"n_layer": 2, "n_embd": 128, "n_head": 4, "max_length": 256, "vocab_size": 512},
    "small": {"n_layer": 6, "n_embd": 384, "n_head": 6, "max_length": 512, "vocab_size": 2048},
    "gpt2-medium": {"n_layer": 24, "n_embd": 1024, "n_head": 16, "max_length": 1024, "vocab_size": 8192},
}


@dataclass(frozen=True)
class TrainConfig:
    """One training stage on Ray Train: BC, Q-SFT, or a baseline on the same rows (filtered BC, ILQL, SPO)."""

    stage: Literal["bc", "filtered_bc", "qsft", "ilql", "spo"] = "bc"
    model: ModelConfig = field(default_factory=ModelConfig)
    lr: float = 3e-4
    weight_decay: float = 0.0
    batch_size: int = 32            # sequences per worker per step
    epochs: int = 1
    max_steps: int = 0              # > 0 stops after this many optimizer steps
    grad_clip: float = 1.0
    warmup_steps: int = 20
    seed: int = 0
    num_workers: int = 2
    cpus_per_worker: float = 0.5    # fractional so two workers plus Ray Data fit on 2 cores
    use_gpu: bool = False
    bf16: bool = False              # autocast to bfloat16 on GPU
    checkpoint_every: int = 0       # steps between checkpoints, independent of log_every (0: only at the end)
    log_every: int = 10             # steps between metric logs (MLflow)
    # Q-SFT only
    gamma: float = 0.99
    per_token_discount: bool = False
    support_eps: float = 0.01       # a' is in the support when pi_beta(a'|s') > support_eps
    smoothing_correction: bool = False  # read Q = p_target / pi_beta without the loss's label-smoothing mass
    #                                 (algorithm.smoothing_corrected): it matters where the action vocabulary is small
    mc_lower_bound: bool = False    # raise each target to the data's own discounted return from that token
    #                                 (algorithm.returns_to_go, Q-Transformer's Monte Carlo bound): sparse rewards reach
    #                                 early tokens at once instead of one target-network backup at a time
    pi_beta_support: Literal["precomputed", "online"] = "precomputed"  # pi_beta's top-k stored by one
    #                                 batch-inference pass over the data, or a pi_beta forward every step
    backup: Literal["token", "action"] = "token"  # the next-state value: max of first-token ratios, or of
    #                                 each admissible action's last-token ratio (tasks that list them; pipeline.candidates)
    target_update: Literal["polyak", "hard"] = "polyak"
    tau: float = 0.005              # Polyak rate
    hard_update_every: int = 100    # steps between hard copies
    init_from: Literal["base", "bc"] = "base"  # Q-SFT's p_theta starts from the model section ("base":
    #                                 pretrained weights at model.name_or_path, else a random init) or from BC
    # filtered BC only
    filter_top_fraction: float = 0.3  # BC on the episodes whose return is in the dataset's top fraction
    # ILQL only (gamma, tau and target_update as for Q-SFT)
    tau_e: float = 0.7              # expectile of V's regression on Q, in (0, 1); 0.5 is the mean
    cql_weight: float = 0.01        # weight of the CQL term logsumexp_a Q(s,a) - Q(s,a_i)
    # SPO only
    spo_beta: float = 0.1           # the soft-RL temperature beta of Q_t = Q0 + sum beta (log pi_theta - log pi_0)
    spo_loss: Literal["squared", "cross_entropy"] = "squared"  # the terminal Q-regression loss
    spo_turn_targets: bool = True   # also regress Q at every turn's last token, not only at the last one


@dataclass(frozen=True)
class CollectConfig:
    """The collection stage: behaviour-policy episodes of the task's training split."""

    episodes: int = 1000
    seed: int = 0
    validation_instances: int = 0   # the split's first N instances are never collected: validation plays them
    #                                 (EvalConfig.num_validation_episodes <= N), so settings are chosen on instances
    #                                 the models never trained on, as the held-out ones are
    behaviour: dict[str, Any] = field(default_factory=dict)  # overrides the task's default_behaviour_params


Ranking = Literal["sequence", "token"]


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation of a policy on a task's held-out instances with Ray actors.

    The extraction and decoding settings are chosen on validation instances, `num_validation_episodes`
    instances of the task's training split, never on the held-out split (`pipeline.select`): BC's
    temperature, ranking rule, text decoding and support from `temperatures` x `rankings` x `greedy_texts` x
    `sample_supports` (Q-SFT then decodes the same way), then Q-SFT's (beta, ratio_form) from `betas` x
    `ratio_forms`, by `beta_rule`. An empty grid keeps the single value (`temperature`, `ranking`, `greedy_text`,
    `sample_support`, `beta`, `ratio_form`).
    """

    num_episodes: int = 100
    num_validation_episodes: int = 100
    repeats: int = 1                 # plays of each instance, each with its own seed (stochastic decoding on a
    #                                  small split): episodes = instances x repeats
    validation_repeats: int = 0      # plays of each validation instance (0: `repeats`)
    num_actors: int = 2
    cpus_per_actor: float = 0.5
    envs_per_actor: int = 8          # environments one actor steps in a batch
    beta: float = 4.0                # extraction pi ∝ pi_beta * exp(beta * p_theta)
    ratio_form: bool = False         # pi ∝ pi_beta * exp(beta * p_theta / pi_beta) instead
    support_eps: float = 0.01        # extraction keeps pi_beta's support {a : pi_beta(a|s) > support_eps}
    temperature: float = 0.0         # 0: greedy decoding
    ranking: Ranking = "sequence"    # pi_beta(a|s) of an admissible action (pipeline.policy.rank_many): "sequence"
    #                                  prod_t pi_beta(a_t|.), or "token", constrained decoding's renormalised tokens
    greedy_text: bool = False        # generate free text (WebShop's search query) greedily, whatever the temperature
    #                                  of the choice among admissible actions
    sample_support: bool = True      # BC (any checkpoint played as it is) samples over {a : pi_beta(a|s) >
    #                                  support_eps} too, as Q-SFT's extraction always does (at beta = 0 it is BC)
    rankings: tuple[Ranking, ...] = ()
    temperatures: tuple[float, ...] = ()
    greedy_texts: tuple[bool, ...] = ()
    sample_supports: tuple[bool, ...] = ()
    betas: tuple[float, ...] = ()
    ratio_forms: tuple[bool, ...] = ()
    beta_rule: Literal["best", "one_se"] = "best"  # Q-SFT's extraction: the best validation score, or the smallest
    #                                  beta within one standard error of it (the setting closest to BC that
    #                                  validation cannot tell apart from the best)
    max_action_tokens: int = 24
    seed: int = 0
    max_retries: int = 3             # per crashed actor

    def repeats_of(self, split: str) -> int:
        """Plays of each instance of `split` ("eval" or "validation")."""
        return self.validation_repeats if split == "validation" and self.validation_repeats else self.repeats


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


# Fields that change how a stage runs, not what it makes: a re-run that changes only these reuses its output.
RUNTIME_FIELDS = frozenset({"num_actors", "cpus_per_actor", "envs_per_actor", "max_retries", "cpus_per_worker",
                            "log_every", "checkpoint_every"})


def config_digest(cfg: Any) -> str:
    """A stage config's identity (`pipeline.run` redoes a stage whose config changed): a hash of every field
    but the `RUNTIME_FIELDS`."""
    fields = {name: value for name, value in to_dict(cfg).items() if name not in RUNTIME_FIELDS}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (nested) config dataclass from `to_dict` output, validating names and types."""
    return apply_overrides(cls(), data)


def apply_overrides(cfg: Any, overrides: dict[str, Any], _prefix: str = "") -> Any:
    """Return `cfg` with `overrides` applied; keys may be nested ("model.n_layer" or {"model": {...}}).

    String values (from the command line) are parsed to the field's type. Unknown fields and values of
    the wrong type raise `ConfigError` naming the field.
    """
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        fields = [f.name for f in dataclasses.fields(cfg)]
        if head not in fields:
            hint = difflib.get_close_matches(head, fields, n=1)
            raise ConfigError(f"unknown config field {_prefix + key!r} for {type(cfg).__name__}"
                              + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        current = getattr(cfg, head)
        if dataclasses.is_dataclass(current):
            nested = {rest: value} if rest else value
            if not isinstance(nested, dict):
                raise ConfigError(f"config field {head!r} needs a mapping, got {value!r}")
            cfg = dataclasses.replace(cfg, **{head: apply_overrides(current, nested, f"{_prefix}{head}.")})
        elif rest:
            raise ConfigError(f"config field {head!r} has no sub-field {rest!r}")
        else:
            hint = get_type_hints(type(cfg))[head]
            cfg = dataclasses.replace(cfg, **{head: _coerce(_prefix + key, hint, current, value)})
    _validate(cfg)
    return cfg


def _coerce(name: str, hint: Any, current: Any, value: Any) -> Any:
    kind = type(current)
    if kind is tuple:  # a grid such as (1.0, 4.0): a JSON list on the command line
        if isinstance(value, str):
            try:
                value = json.loads(value.lower())
            except json.JSONDecodeError:
                raise ConfigError(f"config field {name!r} expects a list like [1, 4], got {value!r}") from None
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config field {name!r} expects a list, got {value!r}")
        item = get_args(hint)[0]
        blank = get_args(item)[0] if get_origin(item) is Literal else item()  # a value of the item's type
        return tuple(_coerce(f"{name}[{i}]", item, blank, v) for i, v in enumerate(value))
    if isinstance(value, str) and kind is not str:
        try:
            value = json.loads(value.lower() if kind is bool else value)
        except json.JSONDecodeError:
            raise ConfigError(f"config field {name!r} expects {kind.__name__}, got {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"config field {name!r} expects {kind.__name__}, got {value!r}")
    choices = get_args(hint) if get_origin(hint) is Literal else ()
    if choices and value not in choices:
        raise ConfigError(f"config field {name!r} must be one of {list(choices)}, got {value!r}")
    return value


_POSITIVE = ("lr", "batch_size", "epochs", "num_workers", "cpus_per_worker", "n_layer", "n_embd", "n_head",
             "max_length", "vocab_size", "num_episodes", "num_actors", "cpus_per_actor", "envs_per_actor",
             "max_action_tokens", "hard_update_every", "num_validation_episodes", "repeats", "log_every", "episodes",
             "filter_top_fraction", "spo_beta")
_UNIT_INTERVAL = ("gamma", "tau", "support_eps", "dropout", "filter_top_fraction")
_NON_NEGATIVE = ("beta", "temperature", "betas", "temperatures", "checkpoint_every", "cql_weight", "validation_instances",
                 "validation_repeats")


def _validate(cfg: Any) -> None:
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in _POSITIVE and not value > 0:
            raise ConfigError(f"config field {f.name!r} must be > 0, got {value!r}")
        if f.name in _UNIT_INTERVAL and not 0 <= value <= 1:
            raise ConfigError(f"config field {f.name!r} must lie in [0, 1], got {value!r}")
        if f.name in _NON_NEGATIVE and not all(v >= 0 for v in (value if isinstance(value, tuple) else (value,))):
            raise ConfigError(f"config field {f.name!r} must be >= 0, got {value!r}")
    if isinstance(cfg, TrainConfig) and not 0 < cfg.tau_e < 1:
        raise ConfigError(f"config field 'tau_e' must lie in (0, 1), got {cfg.tau_e!r}")
    if isinstance(cfg, ModelConfig) and cfg.n_embd % cfg.n_head:
        raise ConfigError(f"config field 'n_embd' ({cfg.n_embd}) must be divisible by 'n_head' ({cfg.n_head})")
