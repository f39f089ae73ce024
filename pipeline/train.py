"""The training stages: one Ray Train loop, the stage chooses the loss (pipeline.losses).

    bc:          minimise  mean_i -log pi(a_i|s_i)                         over agent tokens
    filtered_bc: the same, on the episodes whose return is in the dataset's top `filter_top_fraction`
    qsft:        minimise  mean_i qsft_token_losses(p_theta, a_i, y_i)      y_i = Bellman target
                 with a frozen pi_beta (the BC checkpoint) and a target network p_target (Polyak tau or hard copy).
    ilql:        minimise  mean_i L_Q + L_V + cql_weight * L_CQL           Q and V heads on the LM (from BC),
                 a target network as for Q-SFT; the heads are saved beside the LM (models.HEADS_FILE)
    spo:         minimise  mean over targets of L(Q_t, R)                 Q_t = Q0_hat + sum beta (log pi_theta -
                 log pi_0), pi_theta from BC, pi_0 the frozen BC checkpoint, Q0_hat per episode from the data

Each stage is its own TorchTrainer run writing HF checkpoints; re-running with the same output folder
resumes from the last reported checkpoint (Ray Train V2: same RunConfig name and storage path). The
finished stage's model is copied to `<out>/checkpoint`, which the next stage loads by path.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from pipeline import losses
from pipeline.batches import PadBatch, observation_inputs
from pipeline.candidates import by_state, candidate_log_probs, state_branches
from pipeline.config import ConfigError, TrainConfig, apply_overrides, from_dict, to_dict
from pipeline.models import (
    STAGE_FILE,
    TRAINER_STATE_FILE,
    TokenLogits,
    TokenValues,
    load_initial_model,
    load_model,
    load_tokenizer,
    load_value_heads,
    new_value_heads,
    read_stage_info,
    save_checkpoint,
)

FINAL_CHECKPOINT = "checkpoint"
# Each stage's budget and shared fields (gamma, tau, epochs) come from the preset's BC or Q-SFT section.
BASE_STAGE = {"bc": "bc", "filtered_bc": "bc", "qsft": "qsft", "ilql": "qsft", "spo": "qsft"}
FROM_BC = ("qsft", "ilql", "spo")  # the stages that read the BC checkpoint (pi_beta, pi_0, or their start)
# The config fields `prepare_data` reads beside the stage: they shape the training rows, not only the loop.
DATA_FIELDS = ("filter_top_fraction", "spo_beta", "spo_loss", "support_eps", "behaviour_support", "backup",
               "model.max_length")


def method_config(stage: str, bc_cfg: TrainConfig, qsft_cfg: TrainConfig, overrides: dict | None = None
                  ) -> TrainConfig:
    """Any stage's config: the preset's BC config (filtered BC) or Q-SFT config (ILQL, SPO), then `overrides`.
    The preset's `backup` is Q-SFT's own choice: ILQL and SPO start from the token-level default."""
    if stage not in BASE_STAGE:
        raise ConfigError(f"config field 'stage' must be one of {list(BASE_STAGE)}, got {stage!r}")
    base = bc_cfg if BASE_STAGE[stage] == "bc" else qsft_cfg
    if stage in ("ilql", "spo"):
        base = replace(base, backup=TrainConfig.backup)
    return apply_overrides(base, {**(overrides or {}), "stage": stage})


# -------------------------------------------------------------------------------------------- step
def step_loss(cfg: TrainConfig, batch: dict[str, torch.Tensor], policy: torch.nn.Module,
              target: torch.nn.Module | None, behaviour: torch.nn.Module | None) -> tuple[torch.Tensor, dict]:
    """The stage's loss on one padded batch, and its diagnostics."""
    tr = losses.transitions(batch["input_ids"], batch["action_mask"], batch["turn_end"], batch["rewards"],
                            batch["lengths"], batch["terminated"], cfg.gamma, cfg.per_token_discount)
    ids, attn, obs = batch["input_ids"], batch["attention_mask"], observation_inputs(batch)
    if cfg.stage == "ilql":
        return _ilql_loss(cfg, batch, tr, policy, target)
    logits = policy(ids, attn, tr.row, tr.state_pos, **obs)
    if cfg.stage in ("bc", "filtered_bc"):
        token_losses = losses.bc_token_losses(logits, tr.action)
        return token_losses.mean(), {"tokens": tr.action.numel()}
    if cfg.stage == "spo":
        return _spo_loss(cfg, batch, tr, logits, behaviour)
    if cfg.backup == "action":
        y = _action_backup_targets(cfg, batch, tr, target, behaviour)
    else:
        with torch.no_grad():
            next_target = target(ids, attn, tr.row, tr.next_state_pos, **obs).float().log_softmax(-1)
            next_target, next_behaviour = _with_behaviour(batch, next_target, lambda: behaviour(
                ids, attn, tr.row, tr.next_state_pos, **obs).float().log_softmax(-1))
        y = losses.bellman_targets(next_target, next_behaviour, tr.reward, tr.discount, cfg.support_eps)
    token_losses = losses.qsft_token_losses(logits, tr.action, y.target)
    return token_losses.mean(), {
        "tokens": tr.action.numel(),
        "target_mean": y.target.mean().item(),
        "target_clipped_frac": y.clipped.float().mean().item(),
        "support_size": y.support_size.float().mean().item(),
        "p_action_mean": logits.float().softmax(-1).gather(-1, tr.action[:, None]).mean().item(),
    }


def _with_behaviour(batch: dict[str, torch.Tensor], next_target: torch.Tensor, behaviour_log_probs
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(p_target, pi_beta) log-probabilities at the next states over the same tokens: pi_beta's precomputed top-k
    (pipeline.support) with p_target gathered on it, or the full vocabulary from `behaviour_log_probs()`."""
    if "behaviour_logp" in batch:
        return next_target.gather(-1, batch["behaviour_ids"]), batch["behaviour_logp"]
    return next_target, behaviour_log_probs()


@torch.no_grad()
def _action_backup_targets(cfg: TrainConfig, batch: dict[str, torch.Tensor], tr: losses.Transitions,
                           target: torch.nn.Module, behaviour: torch.nn.Module | None) -> losses.BellmanTargets:
    """Q-SFT's targets with the action-level next-state value (pipeline.candidates) at every turn's last token
    that bootstraps from a state with candidates (the batch's `candidate_*` columns); the tokens inside an
    utterance, and turn ends before a state with none, keep the token-level targets. One forward per model reads
    both: the batch's rows with each state's candidates branched after it. pi_beta's part comes from the batch
    where the support pass stored it (`behaviour_candidates`), else from a forward."""
    _, ranked, sizes, _, branches = state_branches(batch, tr, torch.bfloat16 if cfg.bf16 else torch.float32)
    next_target, target_last, _ = candidate_log_probs(target, branches, tr.row, tr.next_state_pos)
    if "behaviour_candidates" in batch:
        behaviour_last, behaviour_action = batch["behaviour_candidates"].unbind(-1)
        next_target, next_behaviour = _with_behaviour(batch, next_target, None)
    else:
        next_behaviour, behaviour_last, behaviour_action = candidate_log_probs(
            behaviour, branches, tr.row, tr.next_state_pos)
    y = losses.bellman_targets(next_target, next_behaviour, tr.reward, tr.discount, cfg.support_eps)
    if not sizes:
        return y
    value = losses.action_values(by_state(target_last, sizes, 0.0), by_state(behaviour_last, sizes, 0.0),
                                 by_state(behaviour_action, sizes, -torch.inf), cfg.support_eps)
    unclipped = y.target.clone()
    unclipped[ranked] = tr.reward[ranked] + tr.discount[ranked] * value
    target_values = unclipped.clamp(0.0, 1.0)
    support = y.support_size.clone()
    support[ranked] = torch.tensor(sizes, device=support.device, dtype=support.dtype)
    clipped = y.clipped.clone()
    clipped[ranked] = unclipped[ranked] != target_values[ranked]
    return losses.BellmanTargets(target_values, support, clipped)


def _spo_loss(cfg: TrainConfig, batch: dict[str, torch.Tensor], tr: losses.Transitions, logits: torch.Tensor,
              reference: torch.nn.Module) -> tuple[torch.Tensor, dict]:
    """SPO: Q-regression of the cumulative Q of pi_theta (`logits`) against pi_0 (`reference`) on the returns."""
    ids, attn, obs = batch["input_ids"], batch["attention_mask"], observation_inputs(batch)
    logp = -losses.bc_token_losses(logits, tr.action)
    with torch.no_grad():
        reference_logp = -losses.bc_token_losses(reference(ids, attn, tr.row, tr.state_pos, **obs), tr.action)
    q = losses.cumulative_q(logp, reference_logp, tr.row, batch["q0"], cfg.spo_beta)
    ends_turn = batch["turn_end"][tr.row, tr.state_pos + 1]
    mask, returns = losses.spo_targets(tr.reward, tr.row, ends_turn, cfg.spo_turn_targets)
    token_losses = losses.spo_regression_losses(q[mask], returns[mask], cfg.spo_beta, cfg.spo_loss)
    return token_losses.mean(), {"tokens": tr.action.numel(), "targets": int(mask.sum()),
                                 "q_mean": q[mask].mean().item(), "return_mean": returns[mask].mean().item(),
                                 "log_ratio_mean": (logp - reference_logp).mean().item()}


def _ilql_loss(cfg: TrainConfig, batch: dict[str, torch.Tensor], tr: losses.Transitions, online: torch.nn.Module,
               target: torch.nn.Module) -> tuple[torch.Tensor, dict]:
    """ILQL: one backbone pass gives Q and V at s_i and V at s'_i; the target network gives Q_target at s_i."""
    ids, attn, obs = batch["input_ids"], batch["attention_mask"], observation_inputs(batch)
    n = tr.action.numel()
    q_values, values = online(ids, attn, torch.cat([tr.row, tr.row]), torch.cat([tr.state_pos, tr.next_state_pos]),
                              **obs)
    with torch.no_grad():
        target_q, _ = target(ids, attn, tr.row, tr.state_pos, **obs)
    parts = losses.ilql_token_losses(q_values[:n], tr.action, target_q, values[:n], values[n:].detach(), tr.reward,
                                     tr.discount, cfg.tau_e)
    loss = (parts.q + parts.v + cfg.cql_weight * parts.cql).mean()
    return loss, {"tokens": n, "q_loss": parts.q.mean().item(), "v_loss": parts.v.mean().item(),
                  "cql": parts.cql.mean().item(), "v_mean": values[:n].mean().item()}


@torch.no_grad()
def update_target(target: torch.nn.Module, online: torch.nn.Module, cfg: TrainConfig, step: int) -> None:
    """Polyak: theta_target <- (1 - tau) theta_target + tau theta; or a hard copy every K steps."""
    if cfg.target_update == "polyak":
        for t, o in zip(target.parameters(), online.parameters()):
            t.lerp_(o, cfg.tau)
    elif step % cfg.hard_update_every == 0:
        target.load_state_dict(online.state_dict())


class StageBatch(PadBatch):
    """`PadBatch`, plus SPO's per-row Q0_hat (`q0`, (B,)) where the rows carry it."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        out = super().__call__(batch)
        if "q0" in batch:
            out["q0"] = torch.as_tensor(np.asarray(batch["q0"], dtype=np.float32))
        return out


def learning_rate(cfg: TrainConfig, step: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 10%."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress))))


# ------------------------------------------------------------------------------------ worker loop
def train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch
    from ray.experimental.tqdm_ray import tqdm

    cfg: TrainConfig = from_dict(TrainConfig, config["cfg"])
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    device = ray.train.torch.get_device()
    torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))  # fractional CPUs: don't oversubscribe cores
    torch.manual_seed(cfg.seed + rank)
    tokenizer = load_tokenizer(config["tokenizer_dir"])

    if cfg.stage in ("ilql", "spo") or (cfg.stage == "qsft" and cfg.init_from == "bc"):
        model = load_model(config["bc_checkpoint"]).train()
    else:
        model = load_initial_model(cfg.model, tokenizer, cfg.seed, config["observation_space"])
    heads = new_value_heads(model) if cfg.stage == "ilql" else None
    state: dict[str, Any] = {"step": 0}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            model = load_model(folder).train()
            heads = load_value_heads(folder).train() if heads is not None else None
            state = load_trainer_state(folder)
    online = TokenLogits(model) if heads is None else TokenValues(model, heads)

    target = behaviour = None
    if cfg.stage in ("qsft", "ilql"):
        target = copy.deepcopy(online)
        if "target" in state:
            target.model.load_state_dict(state["target"])
        if "target_heads" in state:
            target.heads.load_state_dict(state["target_heads"])
        target = target.to(device).eval().requires_grad_(False)
    if cfg.stage == "spo" or (cfg.stage == "qsft" and cfg.behaviour_support == "online"):
        behaviour = TokenLogits(load_model(config["bc_checkpoint"], device).requires_grad_(False))

    policy = ray.train.torch.prepare_model(online.train())
    optimizer = torch.optim.AdamW(online.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])

    total = config["total_steps"]
    step = state["step"]
    shard = ray.train.get_dataset_shard("train")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
    bar = tqdm(total=total, desc=f"{cfg.stage} training") if rank == 0 and config["progress"] else None
    if bar is not None:
        bar.update(step)
    window: dict[str, list[float]] = {}
    tick, tokens = time.perf_counter(), 0

    def report(log: bool, save: bool) -> None:
        """Log the metrics since the last log (`log`), and report a checkpoint to Ray Train (`save`)."""
        metrics = {k: float(np.mean(v)) for k, v in window.items()}
        metrics.update(step=step, tokens_per_s=tokens / max(1e-9, time.perf_counter() - tick))
        if log and rank == 0 and config.get("mlflow"):
            _log_mlflow(config["mlflow"], metrics, step)
        if not save:
            return
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0:
                trainer_state = {"step": step, "optimizer": optimizer.state_dict()}
                if target is not None:
                    trainer_state["target"] = target.model.state_dict()
                if heads is not None:
                    trainer_state["target_heads"] = target.heads.state_dict()
                save_checkpoint(tmp, model, tokenizer, {"stage": cfg.stage, "config": to_dict(cfg),
                                                        "step": step, "metrics": metrics,
                                                        "data": config["data"], **config["stage_info"]},
                                trainer_state, heads)
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=f"step_{step:07d}")

    while step < total:
        for batch in shard.iter_torch_batches(batch_size=cfg.batch_size, collate_fn=StageBatch(tokenizer.pad_token_id),
                                              device=device, drop_last=True):
            if step >= total:
                continue  # drain the epoch rather than break out of the iterator (RAY_NOTES gotcha 10)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(cfg, step, total)
            with autocast:
                loss, stats = step_loss(cfg, batch, policy, target, behaviour)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(online.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1
            if target is not None:
                update_target(target, online, cfg, step)
            tokens += int(batch["attention_mask"].sum())
            for key, value in {"loss": loss.item(), "grad_norm": float(grad_norm), **stats}.items():
                window.setdefault(key, []).append(float(value))
            if bar is not None:
                bar.update(1)
            log = step % cfg.log_every == 0 or step == total
            save = step == total or (cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0)
            if log or save:
                report(log, save)
            if log:
                window, tick, tokens = {}, time.perf_counter(), 0
    if bar is not None:
        bar.close()


def load_trainer_state(folder: str) -> dict[str, Any]:
    """A checkpoint's step, optimizer and target-network state, read without unpickling arbitrary objects.

    `weights_only=True` admits only tensors and plain containers and numbers, so a crafted
    `trainer_state.pt` in a run folder (shared storage, or one someone hands you) cannot run code on resume.
    """
    return torch.load(os.path.join(folder, TRAINER_STATE_FILE), weights_only=True)


def check_backup(cfg: TrainConfig, task_name: str) -> bool:
    """Whether the stage's rows need each next state's candidates (Q-SFT's action-level backup); a ConfigError
    where the backup cannot apply."""
    if cfg.backup == "token":
        return False
    import envs

    if cfg.stage != "qsft" or not envs.get_task(task_name).has_admissible_actions:
        raise ConfigError(f"config field 'backup' = 'action' needs the qsft stage and a task that lists admissible "
                          f"actions (Task.has_admissible_actions); got stage {cfg.stage!r} on {task_name!r}")
    return True


def check_bc_checkpoint(path: str, task_name: str) -> None:
    """Raise ValueError unless `path` is a checkpoint folder written by the BC stage of `task_name`."""
    if not os.path.isfile(os.path.join(path, STAGE_FILE)):
        raise ValueError(f"{path} is not a checkpoint folder (it has no {STAGE_FILE}); "
                         "expected the BC stage's <out>/checkpoint")
    info = read_stage_info(path)
    if info.get("stage") != "bc":
        raise ValueError(f"{path} was written by the {info.get('stage')!r} stage; expected a BC checkpoint")
    if info.get("task") != task_name:
        raise ValueError(f"{path} was trained on task {info.get('task')!r}; expected a checkpoint of "
                         f"{task_name!r}, the task of the data")


def output_vocab_size(checkpoint: str) -> int:
    """The width of a checkpoint's logits, the V that `losses.qsft_token_losses` smooths over.

    It can exceed len(tokenizer) (a pretrained embedding padded to a multiple of 64, say), so the
    label-smoothing floor is taken from the model's config (`resize_token_embeddings` keeps it current;
    Q-SFT's policy has the BC model's shape).
    """
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(checkpoint).vocab_size


def _log_mlflow(info: dict[str, str], metrics: dict[str, float], step: int) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=info["tracking_uri"])
    for key, value in metrics.items():
        if key != "step" and math.isfinite(value):
            client.log_metric(info["run_id"], key, value, step=step)


# ------------------------------------------------------------------------------------------ driver
@dataclass
class TrainingData:
    """A stage's tokenized, materialized training rows and the tokenizer they were made with; `selection`
    (stage.json only, too long for MLflow params) says which episodes filtered BC kept, or SPO's Q0_hat."""

    dataset: Any
    tokenizer_dir: str
    info: dict[str, int]
    selection: dict[str, Any] = field(default_factory=dict)

    @property
    def episodes_used(self) -> int:
        return self.info["episodes_used"]


def prepare_data(cfg: TrainConfig, data_dir: str, out: str, task_name: str,
                 bc_checkpoint: str | None = None) -> TrainingData:
    """Tokenize a dataset for a stage (Ray Data): the stages that start from BC use the BC checkpoint's
    tokenizer, BC and filtered BC train one (on all the data's text, so both get the same)."""
    from ray.data.expressions import col

    from pipeline.data import column_sum, read_episodes
    from pipeline.runtime import wait_for_free_cpus
    from pipeline.tokenize import tokenize_dataset

    wait_for_free_cpus()
    episodes = read_episodes(data_dir).materialize()  # read once: grouping steps into episodes is a shuffle
    tokenizer_dir = bc_checkpoint if cfg.stage in FROM_BC else _ensure_tokenizer(cfg, episodes, out, task_name)
    tokenized = tokenize_dataset(episodes, tokenizer_dir, task_name, cfg.model.max_length,
                                 with_candidates=check_backup(cfg, task_name))
    tokenized = tokenized.materialize()
    kept = usable = tokenized.filter(expr=col("length") > 0).materialize()
    selection: dict[str, Any] = {}
    if cfg.stage == "filtered_bc":
        kept, selection = top_episodes(usable, episode_table(episodes), cfg.filter_top_fraction)
    elif cfg.stage == "spo":
        kept, selection = with_initial_values(usable, episode_table(episodes), cfg)
    if cfg.stage == "qsft" and cfg.behaviour_support == "precomputed":
        from pipeline.support import add_behaviour_support

        kept = add_behaviour_support(kept, bc_checkpoint, cfg)
    kept = kept.materialize()
    count = tokenized.count()
    info = {"episodes": count, "episodes_used": kept.count(), "episodes_dropped": count - usable.count(),
            "turns_dropped": int(column_sum(tokenized, "dropped_turns"))}
    return TrainingData(kept, tokenizer_dir, info, selection)


def episode_table(episodes) -> dict[int, tuple[float, str]]:
    """episode_id -> (raw return, instance) for every episode of a dataset (`read_episodes`); the instance is
    the JSON of the reset info's "instance" (episodes of one instance share it)."""
    def summarise(batch: dict[str, Any]) -> dict[str, list]:
        first_infos = [(json.loads(infos) or [{}])[0] for infos in batch["infos"]]
        return {"episode_id": [int(e) for e in batch["episode_id"]],
                "raw_return": [float(np.sum(r)) for r in batch["rewards"]],
                "instance": [json.dumps(info.get("instance"), sort_keys=True) for info in first_infos]}

    rows = episodes.map_batches(summarise, batch_format="numpy").take_all()
    return {int(r["episode_id"]): (float(r["raw_return"]), str(r["instance"])) for r in rows}


def top_episodes(rows, table: dict[int, tuple[float, str]], fraction: float) -> tuple[Any, dict[str, Any]]:
    """Filtered BC's rows: those whose episode's raw return is in the top `fraction` (losses.top_fraction_filter)."""
    from ray.data.expressions import col

    ids = sorted(int(r["episode_id"]) for r in rows.select_columns(["episode_id"]).take_all())
    keep, threshold = losses.top_fraction_filter(torch.tensor([table[e][0] for e in ids]), fraction)
    chosen = [e for e, k in zip(ids, keep.tolist()) if k]
    return rows.filter(expr=col("episode_id").is_in(chosen)), {
        "top_fraction": fraction, "return_threshold": threshold, "episodes_considered": len(ids),
        "episodes_selected": len(chosen), "episode_ids": chosen}


def with_initial_values(rows, table: dict[int, tuple[float, str]], cfg: TrainConfig) -> tuple[Any, dict[str, Any]]:
    """SPO's rows with a `q0` column, Q0_hat of the row's episode (losses.spo_initial_values) from the unit
    returns of the rows of the same instance."""
    returns = {int(r["episode_id"]): float(np.sum(r["rewards"]))
               for r in rows.select_columns(["episode_id", "rewards"]).take_all()}
    ids = sorted(returns)
    instances = sorted({table[e][1] for e in ids})
    index = {name: i for i, name in enumerate(instances)}
    groups = torch.tensor([index[table[e][1]] for e in ids])
    q0 = losses.spo_initial_values(torch.tensor([returns[e] for e in ids]), groups, cfg.spo_beta, cfg.spo_loss)
    by_episode = dict(zip(ids, q0.tolist()))

    def attach(batch: dict[str, Any]) -> dict[str, Any]:
        batch["q0"] = np.asarray([by_episode[int(e)] for e in batch["episode_id"]], dtype=np.float32)
        return batch

    several = int((torch.bincount(groups)[groups] >= 2).sum())
    return rows.map_batches(attach, batch_format="numpy"), {
        "q0_mean": float(q0.mean()), "q0_min": float(q0.min()), "q0_max": float(q0.max()),
        "instances": len(instances), "episodes_with_instance_estimate": several,
        "episodes_on_fallback": len(ids) - several}


@dataclass
class StageResult:
    checkpoint: str
    metrics: dict[str, Any]
    resumed_from_step: int


def run_stage(cfg: TrainConfig, data_dir: str, out: str, task_name: str, bc_checkpoint: str | None = None,
              tracking_uri: str | None = None, progress: bool = True, callbacks: list | None = None,
              parent_run_id: str | None = None, run_name: str | None = None,
              data: TrainingData | None = None) -> StageResult:
    """Run one training stage as its own Ray Train job; resumable; returns the final checkpoint path.

    `out` holds everything of the stage: the tokenizer, Ray Train's run (checkpoints), and the final
    `checkpoint/` folder handed to the next stage. Requires Ray to be initialised.
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from pipeline import tracking

    if cfg.stage in FROM_BC:
        if not bc_checkpoint:
            raise ValueError(f"the {cfg.stage} stage needs bc_checkpoint (the BC stage's checkpoint folder)")
        check_bc_checkpoint(bc_checkpoint, task_name)
    if cfg.stage == "qsft":
        vocab = output_vocab_size(bc_checkpoint)
        floor = losses.label_smoothing_floor(vocab)
        if cfg.support_eps <= floor:
            raise ConfigError(f"config field 'support_eps' ({cfg.support_eps}) must exceed the label-smoothing "
                              f"floor 1/(V-1) = {floor:.4f} of the {bc_checkpoint} model (V = {vocab} logits), "
                              f"else the Bellman targets saturate at 1; use e.g. {min(0.5, 3 * floor):.2f}")
    check_backup(cfg, task_name)
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    data = data or prepare_data(cfg, data_dir, out, task_name, bc_checkpoint)
    if data.episodes_used < cfg.num_workers * cfg.batch_size:
        raise ValueError(f"{data_dir}: {data.episodes_used} usable episodes, fewer than num_workers * batch_size "
                         f"({cfg.num_workers} * {cfg.batch_size}); collect more data or lower batch_size")
    steps_per_epoch = data.episodes_used // (cfg.num_workers * cfg.batch_size)
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    stage_info = {"task": task_name, "bc_checkpoint": bc_checkpoint, **data.info}
    tokenizer_dir = data.tokenizer_dir

    run = tracking.start_stage_run(out, run_name or f"{task_name}-{cfg.stage}",
                                   tracking.tracking_uri_for(os.path.dirname(out), tracking_uri),
                                   params={**_flat(to_dict(cfg)), "data": data_dir, **stage_info,
                                           "total_steps": total}, parent_run_id=parent_run_id)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": to_dict(cfg), "tokenizer_dir": tokenizer_dir, "bc_checkpoint": bc_checkpoint,
                           "total_steps": total, "data": data_dir, "progress": progress,
                           "stage_info": {**stage_info, **({"selection": data.selection} if data.selection else {})},
                           "observation_space": pixel_observation_space(task_name),
                           "mlflow": {"tracking_uri": run.tracking_uri, "run_id": run.run_id}},
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                               resources_per_worker=None if cfg.use_gpu
                                               else {"CPU": cfg.cpus_per_worker}),
        run_config=ray.train.RunConfig(name="train", storage_path=os.path.join(out, "ray"),
                                       checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
                                       failure_config=ray.train.FailureConfig(max_failures=2),
                                       callbacks=callbacks or []),
        datasets={"train": data.dataset},
    )
    resumed = _latest_step(os.path.join(out, "ray", "train"))
    result = trainer.fit()
    final = os.path.join(out, FINAL_CHECKPOINT)
    with result.checkpoint.as_directory() as folder:
        staging = final + ".partial"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(folder, staging, ignore=shutil.ignore_patterns(TRAINER_STATE_FILE))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
    metrics = dict(result.metrics or {})
    tracking.finish_stage_run(run, metrics, checkpoint=final)
    return StageResult(checkpoint=final, metrics=metrics, resumed_from_step=resumed)


def pixel_observation_space(task_name: str):
    """A pixel task's observation space (it sizes the PixelGPT); None for text tasks."""
    import gymnasium

    import envs

    task = envs.get_task(task_name)
    if task.action_tokenizer is None:
        return None
    env = gymnasium.make(task.env_id, **task.env_kwargs)
    space = env.observation_space
    env.close()
    return space


def _ensure_tokenizer(cfg: TrainConfig, episodes, out: str, task_name: str) -> str:
    """Train (or, on resume, reuse) the stage's tokenizer on the episodes' texts; returns its folder."""
    import envs
    from pipeline.models import build_task_tokenizer
    from pipeline.tokens import EOT

    folder = os.path.join(out, "tokenizer")
    if os.path.exists(os.path.join(folder, "tokenizer_config.json")):
        return folder
    texts = (text for batch in episodes.iter_batches(batch_size=256, batch_format="numpy")
             for column in ("observations", "actions") for episode in batch[column] for text in episode)
    tokenizer = build_task_tokenizer(cfg.model, envs.get_task(task_name), texts)
    assert tokenizer.convert_tokens_to_ids(EOT) is not None
    staging = folder + ".partial"
    tokenizer.save_pretrained(staging)
    os.replace(staging, folder)
    return folder


def _latest_step(run_dir: str) -> int:
    """The step of the newest checkpoint a previous attempt of this stage left (0 if none)."""
    if not os.path.isdir(run_dir):
        return 0
    steps = [int(name.split("_")[1]) for name in os.listdir(run_dir) if name.startswith("step_")]
    return max(steps, default=0)


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
