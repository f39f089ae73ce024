"""The training stages: one Ray Train loop, the stage chooses the loss (pipeline.algorithm).

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

import contextlib
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

import envs
from envs import Task
from pipeline import algorithm
from pipeline.allocator import keep_freed_memory
from pipeline.batches import PadBatch
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
DATA_FIELDS = ("filter_top_fraction", "spo_beta", "spo_loss", "support_eps", "pi_beta_support", "backup",
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


# ------------------------------------------------------------------------------------ worker loop
@dataclass
class Learner:
    """One worker's training state: p_theta (`online`: the LM `model`, with ILQL's `heads`), its target network,
    the frozen pi_beta where the step needs its forward, the optimizer, and the number of steps taken."""

    model: torch.nn.Module
    heads: torch.nn.Module | None
    online: torch.nn.Module
    target: torch.nn.Module | None
    pi_beta: torch.nn.Module | None
    optimizer: torch.optim.Optimizer
    step: int


def build_learner(cfg: TrainConfig, config: dict[str, Any], tokenizer, device: torch.device,
                  resume_from: str | None) -> Learner:
    """The stage's models and optimizer. p_theta starts from the BC checkpoint (ILQL, SPO, Q-SFT with
    `init_from="bc"`) or from the model section (`init_from="base"`: pretrained weights at model.name_or_path,
    else a seeded random initialisation); `resume_from`, a checkpoint of an interrupted run of this stage,
    restores p_theta, the heads, the target network, the optimizer and the step instead."""
    state: dict[str, Any] = {"step": 0}
    if resume_from:
        model, state = load_model(resume_from), load_trainer_state(resume_from)
    elif cfg.stage in ("ilql", "spo") or (cfg.stage == "qsft" and cfg.init_from == "bc"):
        model = load_model(config["bc_checkpoint"])
    else:
        model = load_initial_model(cfg.model, tokenizer, cfg.seed, config["observation_space"],
                                   config["stage_info"].get("proprio"))
    heads = None
    if cfg.stage == "ilql":
        heads = (load_value_heads(resume_from) if resume_from else new_value_heads(model)).train()
    online = TokenLogits(model.train()) if heads is None else TokenValues(model.train(), heads)

    target = pi_beta = None
    if cfg.stage in ("qsft", "ilql"):
        target = copy.deepcopy(online)
        if "target" in state:
            target.model.load_state_dict(state["target"])
        if "target_heads" in state:
            target.heads.load_state_dict(state["target_heads"])
        target = target.to(device).eval().requires_grad_(False)
    if cfg.stage == "spo" or (cfg.stage == "qsft" and cfg.pi_beta_support == "online"):
        pi_beta = TokenLogits(load_model(config["bc_checkpoint"], device).requires_grad_(False))

    optimizer = torch.optim.AdamW(online.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    return Learner(model, heads, online, target, pi_beta, optimizer, state["step"])


def train_step(cfg: TrainConfig, learner: Learner, policy: torch.nn.Module, batch: dict[str, torch.Tensor],
               total: int, action_vocab: torch.Tensor | None) -> dict[str, float]:
    """One optimizer step on the stage's loss (`algorithm.step_loss`; `policy` is `learner.online` as Ray Train
    prepared it), then the target network's update; returns the step's metrics."""
    for group in learner.optimizer.param_groups:
        group["lr"] = algorithm.learning_rate(cfg, learner.step, total)
    with torch.autocast(batch["input_ids"].device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
        loss, stats = algorithm.step_loss(cfg, batch, policy, learner.target, learner.pi_beta, action_vocab)
    learner.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(learner.online.parameters(), cfg.grad_clip)
    learner.optimizer.step()
    learner.step += 1
    if learner.target is not None:
        algorithm.update_target(learner.target, learner.online, cfg, learner.step)
    return {"loss": loss.item(), "grad_norm": float(grad_norm), **stats}


def report_checkpoint(cfg: TrainConfig, config: dict[str, Any], learner: Learner, tokenizer,
                      metrics: dict[str, float], rank: int) -> None:
    """Report the metrics and an HF checkpoint (rank 0's) to Ray Train, with the trainer state a resume needs."""
    import ray.train

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            trainer_state = {"step": learner.step, "optimizer": learner.optimizer.state_dict()}
            if learner.target is not None:
                trainer_state["target"] = learner.target.model.state_dict()
            if learner.heads is not None:
                trainer_state["target_heads"] = learner.target.heads.state_dict()
            save_checkpoint(tmp, learner.model, tokenizer, {"stage": cfg.stage, "config": to_dict(cfg),
                                                            "step": learner.step, "metrics": metrics,
                                                            "data": config["data"], **config["stage_info"]},
                            trainer_state, learner.heads)
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=f"step_{learner.step:07d}")


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train's worker: build (or resume) the learner, then step through the data shard, logging every
    `log_every` steps and checkpointing every `checkpoint_every` steps and at the end."""
    import ray.train
    import ray.train.torch
    from ray.experimental.tqdm_ray import tqdm

    cfg: TrainConfig = from_dict(TrainConfig, config["cfg"])
    rank = ray.train.get_context().get_world_rank()
    device = ray.train.torch.get_device()
    torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))  # fractional CPUs: don't oversubscribe cores
    keep_freed_memory()
    torch.manual_seed(cfg.seed + rank)
    tokenizer = load_tokenizer(config["tokenizer_dir"])
    checkpoint = ray.train.get_checkpoint()
    with checkpoint.as_directory() if checkpoint else contextlib.nullcontext() as resume_from:
        learner = build_learner(cfg, config, tokenizer, device, resume_from)
    policy = ray.train.torch.prepare_model(learner.online)
    action_vocab = None if config["action_vocab"] is None else torch.tensor(config["action_vocab"], device=device)

    total = config["total_steps"]
    shard = ray.train.get_dataset_shard("train")
    bar = tqdm(total=total, desc=f"{cfg.stage} training") if rank == 0 and config["progress"] else None
    if bar is not None:
        bar.update(learner.step)
    window: dict[str, list[float]] = {}
    tick, tokens = time.perf_counter(), 0
    while learner.step < total:
        for batch in shard.iter_torch_batches(batch_size=cfg.batch_size, collate_fn=PadBatch(tokenizer.pad_token_id),
                                              device=device, drop_last=True):
            if learner.step >= total:
                continue  # drain the epoch rather than break out of the iterator (RAY_NOTES gotcha 10)
            for key, value in train_step(cfg, learner, policy, batch, total, action_vocab).items():
                window.setdefault(key, []).append(float(value))
            tokens += int(batch["attention_mask"].sum())
            if bar is not None:
                bar.update(1)
            log = learner.step % cfg.log_every == 0 or learner.step == total
            save = learner.step == total or (cfg.checkpoint_every > 0 and learner.step % cfg.checkpoint_every == 0)
            if not (log or save):
                continue
            metrics = {k: float(np.mean(v)) for k, v in window.items()}
            metrics.update(step=learner.step, tokens_per_s=tokens / max(1e-9, time.perf_counter() - tick))
            if log and rank == 0 and config.get("mlflow"):
                _log_mlflow(config["mlflow"], metrics, learner.step)
            if save:
                report_checkpoint(cfg, config, learner, tokenizer, metrics, rank)
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


def check_backup(cfg: TrainConfig, task: Task) -> bool:
    """Whether the stage's rows need each next state's candidates (Q-SFT's action-level backup); a ConfigError
    where the backup cannot apply."""
    if cfg.backup == "token":
        return False
    if cfg.stage != "qsft" or not task.has_admissible_actions:
        raise ConfigError(f"config field 'backup' = 'action' needs the qsft stage and a task that lists admissible "
                          f"actions (Task.has_admissible_actions); got stage {cfg.stage!r} on {task.name!r}")
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


def action_vocabulary(task: Task, tokenizer_dir: str) -> list[int] | None:
    """The token ids an action can consist of, where the task has an action vocabulary (a pixel task's bin
    tokens); None where any token may be part of an action (text)."""
    if task.action_tokenizer is None:
        return None
    from pipeline.tokenize import make_codec

    return list(make_codec(load_tokenizer(tokenizer_dir), task).action_token_ids)


def smoothing_vocab_size(checkpoint: str, action_vocab: list[int] | None) -> int:
    """|A|, the size of the vocabulary `algorithm.qsft_token_losses` smooths over: the action vocabulary, or
    the width of the checkpoint's logits. That width can exceed len(tokenizer) (a pretrained embedding padded
    to a multiple of 64, say), so it is read from the model's config (`resize_token_embeddings` keeps it
    current; Q-SFT's policy has the BC model's shape)."""
    if action_vocab is not None:
        return len(action_vocab)
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
    info: dict[str, Any]
    selection: dict[str, Any] = field(default_factory=dict)

    @property
    def episodes_used(self) -> int:
        return self.info["episodes_used"]


def prepare_data(cfg: TrainConfig, data_dir: str, out: str, task: Task,
                 bc_checkpoint: str | None = None) -> TrainingData:
    """Tokenize a dataset for a stage (Ray Data): the stages that start from BC use the BC checkpoint's
    tokenizer, BC and filtered BC train one (on all the data's text, so both get the same)."""
    from ray.data.expressions import col

    from pipeline.data import column_sum, read_episodes
    from pipeline.runtime import wait_for_free_cpus
    from pipeline.tokenize import tokenize_dataset

    wait_for_free_cpus()
    episodes = read_episodes(data_dir).materialize()  # read once: grouping steps into episodes is a shuffle
    tokenizer_dir = bc_checkpoint if cfg.stage in FROM_BC else _ensure_tokenizer(cfg, episodes, out, task)
    tokenized = tokenize_dataset(episodes, tokenizer_dir, task, cfg.model.max_length,
                                 with_candidates=check_backup(cfg, task))
    tokenized = tokenized.materialize()
    kept = usable = tokenized.filter(expr=col("length") > 0).materialize()
    selection: dict[str, Any] = {}
    if cfg.stage == "filtered_bc":
        kept, selection = top_episodes(usable, episode_table(episodes), cfg.filter_top_fraction)
    elif cfg.stage == "spo":
        kept, selection = with_initial_values(usable, episode_table(episodes), cfg)
    if cfg.stage == "qsft" and cfg.pi_beta_support == "precomputed":
        from pipeline.support import add_pi_beta_support

        kept = add_pi_beta_support(kept, bc_checkpoint, cfg)
    kept = kept.materialize()
    count = tokenized.count()
    info = {"episodes": count, "episodes_used": kept.count(), "episodes_dropped": count - usable.count(),
            "turns_dropped": int(column_sum(tokenized, "dropped_turns"))}
    if task.action_tokenizer is not None:
        info["proprio"] = proprio_statistics(kept, pixel_observation_space(task)["proprio"].shape[0])
    return TrainingData(kept, tokenizer_dir, info, selection)


def proprio_statistics(rows, dim: int) -> dict[str, list[float]]:
    """Per-dimension mean and standard deviation of the proprioception of a pixel task's training rows (their
    flat `obs_proprio` columns), which the scratch PixelGPT standardises its inputs with."""
    values = np.concatenate([v for batch in rows.select_columns(["obs_proprio"]).iter_batches(batch_format="numpy")
                             for v in batch["obs_proprio"]]).reshape(-1, dim)
    return {"mean": values.mean(0).round(6).tolist(), "std": values.std(0).round(6).tolist()}


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
    """Filtered BC's rows: those whose episode's raw return is in the top `fraction` (algorithm.top_fraction_filter)."""
    from ray.data.expressions import col

    ids = sorted(int(r["episode_id"]) for r in rows.select_columns(["episode_id"]).take_all())
    keep, threshold = algorithm.top_fraction_filter(torch.tensor([table[e][0] for e in ids]), fraction)
    chosen = [e for e, k in zip(ids, keep.tolist()) if k]
    return rows.filter(expr=col("episode_id").is_in(chosen)), {
        "top_fraction": fraction, "return_threshold": threshold, "episodes_considered": len(ids),
        "episodes_selected": len(chosen), "episode_ids": chosen}


def with_initial_values(rows, table: dict[int, tuple[float, str]], cfg: TrainConfig) -> tuple[Any, dict[str, Any]]:
    """SPO's rows with a `q0` column, Q0_hat of the row's episode (algorithm.spo_initial_values) from the unit
    returns of the rows of the same instance."""
    returns = {int(r["episode_id"]): float(np.sum(r["rewards"]))
               for r in rows.select_columns(["episode_id", "rewards"]).take_all()}
    ids = sorted(returns)
    instances = sorted({table[e][1] for e in ids})
    index = {name: i for i, name in enumerate(instances)}
    groups = torch.tensor([index[table[e][1]] for e in ids])
    q0 = algorithm.spo_initial_values(torch.tensor([returns[e] for e in ids]), groups, cfg.spo_beta, cfg.spo_loss)
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


def run_stage(cfg: TrainConfig, data_dir: str, out: str, task: Task | str, bc_checkpoint: str | None = None,
              tracking_uri: str | None = None, progress: bool = True, callbacks: list | None = None,
              parent_run_id: str | None = None, run_name: str | None = None,
              data: TrainingData | None = None) -> StageResult:
    """Run one training stage as its own Ray Train job; resumable; returns the final checkpoint path.

    `out` holds everything of the stage: the tokenizer, Ray Train's run (checkpoints), and the final
    `checkpoint/` folder handed to the next stage. `task` is a Task, or its name. Requires Ray to be initialised.
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from pipeline import tracking

    task = envs.as_task(task)
    if cfg.stage in FROM_BC:
        if not bc_checkpoint:
            raise ValueError(f"the {cfg.stage} stage needs bc_checkpoint (the BC stage's checkpoint folder)")
        check_bc_checkpoint(bc_checkpoint, task.name)
    if cfg.stage == "qsft":
        vocab = smoothing_vocab_size(bc_checkpoint, action_vocabulary(task, bc_checkpoint))
        floor = algorithm.label_smoothing_floor(vocab)
        if cfg.support_eps <= floor:
            raise ConfigError(f"config field 'support_eps' ({cfg.support_eps}) must exceed the label-smoothing "
                              f"floor 1/(|A|-1) = {floor:.4f} of the {bc_checkpoint} model (|A| = {vocab} action "
                              f"tokens), else the Bellman targets saturate at 1; use e.g. {min(0.5, 3 * floor):.2f}")
    check_backup(cfg, task)
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    data = data or prepare_data(cfg, data_dir, out, task, bc_checkpoint)
    if data.episodes_used < cfg.num_workers * cfg.batch_size:
        raise ValueError(f"{data_dir}: {data.episodes_used} usable episodes, fewer than num_workers * batch_size "
                         f"({cfg.num_workers} * {cfg.batch_size}); collect more data or lower batch_size")
    steps_per_epoch = data.episodes_used // (cfg.num_workers * cfg.batch_size)
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    stage_info = {"task": task.name, "bc_checkpoint": bc_checkpoint, **data.info}
    tokenizer_dir = data.tokenizer_dir

    run = tracking.start_stage_run(out, run_name or f"{task.name}-{cfg.stage}",
                                   tracking.tracking_uri_for(os.path.dirname(out), tracking_uri),
                                   params={**_flat(to_dict(cfg)), "data": data_dir, **stage_info,
                                           "total_steps": total}, parent_run_id=parent_run_id)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": to_dict(cfg), "tokenizer_dir": tokenizer_dir, "bc_checkpoint": bc_checkpoint,
                           "total_steps": total, "data": data_dir, "progress": progress,
                           "stage_info": {**stage_info, **({"selection": data.selection} if data.selection else {})},
                           "observation_space": pixel_observation_space(task),
                           "action_vocab": action_vocabulary(task, tokenizer_dir),
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


def pixel_observation_space(task: Task):
    """A pixel task's observation space (it sizes the PixelGPT); None for text tasks."""
    import gymnasium

    if task.action_tokenizer is None:
        return None
    env = gymnasium.make(task.env_id, **task.env_kwargs)
    space = env.observation_space
    env.close()
    return space


def _ensure_tokenizer(cfg: TrainConfig, episodes, out: str, task: Task) -> str:
    """Train (or, on resume, reuse) the stage's tokenizer on the episodes' texts; returns its folder."""
    from pipeline.models import build_task_tokenizer
    from pipeline.tokens import EOT

    folder = os.path.join(out, "tokenizer")
    if os.path.exists(os.path.join(folder, "tokenizer_config.json")):
        return folder
    texts = (text for batch in episodes.iter_batches(batch_size=256, batch_format="numpy")
             for column in ("observations", "actions") for episode in batch[column] for text in episode)
    tokenizer = build_task_tokenizer(cfg.model, task, texts)
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
