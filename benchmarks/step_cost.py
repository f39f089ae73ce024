"""Cost of each method's training step relative to a BC step, same model and batch, measured side by side.

A Q-SFT step is BC's forward+backward of p_theta plus a no-grad forward of the target network and, unless
pi_beta's support was precomputed (pipeline.support, the default), one of pi_beta, at the next-state
positions. Filtered BC's step is BC's (it trains on fewer rows); ILQL's is one backbone pass with its Q and V heads
plus the target network's; SPO's is p_theta's pass plus a no-grad pass of pi_0 (the BC model). Prints ms/step,
tokens/s and each ratio to BC's step (goal: Q-SFT <= 1.4x BC). With `--pixels` the model is the robot tasks'
PixelGPT (`pipeline.models.load_initial_model`, as the stages build it) on pick-shaped episodes: 30 steps of an
`<|obs|>` (a 64x64 image + proprioception) and 4 action bins, so `--batch 32` is the `cpu` preset's step. Memory is
kept as the training workers keep it (`pipeline.allocator`; `benchmarks/allocator.py` measures what that buys).

    python benchmarks/step_cost.py [--model tiny|small|gpt2-medium] [--device cuda --bf16] [--pixels]
"""

import argparse
import copy
import statistics
import time

import torch

from pipeline.algorithm import step_loss, support_size_bound
from pipeline.allocator import keep_freed_memory
from pipeline.config import MODEL_PRESETS, ModelConfig, TrainConfig, apply_overrides
from pipeline.models import TokenLogits, TokenValues, new_value_heads
from pipeline.support import top_support
from pipeline.tokens import OBS


def synthetic_batch(batch: int, length: int, vocab: int, turns: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Wordle-shaped rows: a prompt, then `turns` of (8 agent tokens, 10 env tokens)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (batch, length), generator=g)
    mask = torch.zeros(batch, length, dtype=torch.long)
    rewards = torch.zeros(batch, length)
    turn_end = torch.zeros_like(mask)
    pos = 24
    while pos + 18 <= length and turns:
        mask[:, pos:pos + 8] = 1
        rewards[:, pos + 7] = torch.rand(batch, generator=g)
        turn_end[:, pos + 7] = 1
        pos += 18
        turns -= 1
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "action_mask": mask, "turn_end": turn_end, "rewards": rewards,
            "lengths": torch.full((batch,), length), "terminated": torch.zeros(batch, dtype=torch.bool)}


def synthetic_pixel_batch(batch: int, steps: int, dims: int, tokenizer, space, seed: int = 0
                          ) -> dict[str, torch.Tensor]:
    """Robot-shaped rows: `steps` of (<|obs|>, one bin token per each of `dims` action dimensions), then the final
    <|obs|>, with random images and proprioception packed one per <|obs|>, and a reward on the last action token."""
    g = torch.Generator().manual_seed(seed)
    obs_id = tokenizer.convert_tokens_to_ids(OBS)
    first_bin = obs_id + 1  # pipeline.models.build_action_tokenizer: the bins follow <|obs|>
    ids = first_bin + torch.randint(0, len(tokenizer) - first_bin, (batch, steps * (1 + dims) + 1), generator=g)
    ids[:, ::1 + dims] = obs_id
    action = (ids != obs_id).long()
    turn_end = torch.zeros_like(action)
    turn_end[:, dims:-1:1 + dims] = 1
    rewards = torch.zeros(ids.shape)
    rewards[:, -2] = 1.0
    count = (steps + 1) * batch
    side, proprio = space["image"].shape[0], space["proprio"].shape[0]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "action_mask": action, "turn_end": turn_end,
            "rewards": rewards, "lengths": torch.full((batch,), ids.shape[1]),
            "terminated": torch.zeros(batch, dtype=torch.bool),
            "images": torch.randint(0, 256, (count, side, side, 3), dtype=torch.uint8, generator=g),
            "proprio": torch.randn(count, proprio, generator=g)}


def make_step(cfg, batch, policy, target, behaviour, optimizer, autocast):
    def one() -> float:
        if batch["input_ids"].is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast:
            loss, _ = step_loss(cfg, batch, policy, target, behaviour)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if batch["input_ids"].is_cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return one


def pixel_setup(mcfg: ModelConfig, batch: int, device: str = "cpu"):
    """The robot tasks' PixelGPT as the stages build it, and a pick-shaped batch of `batch` episodes."""
    import envs
    from pipeline.models import build_action_tokenizer, load_initial_model
    from pipeline.train import pixel_observation_space

    task = envs.get_task("robot_pick")
    tokenizer, space = build_action_tokenizer(task.action_tokenizer), pixel_observation_space(task)
    model = load_initial_model(mcfg, tokenizer, 0, space).to(device)
    rows = synthetic_pixel_batch(batch, 30, task.action_tokenizer.action_dim, tokenizer, space)
    return model, {k: v.to(device) for k, v in rows.items()}


def text_setup(mcfg: ModelConfig, batch: int, length: int, device: str = "cpu"):
    """A GPT-2 of the model preset's shape and a Wordle-shaped batch."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=mcfg.vocab_size, n_positions=mcfg.max_length,
                                       n_embd=mcfg.n_embd, n_layer=mcfg.n_layer, n_head=mcfg.n_head,
                                       bos_token_id=0, eos_token_id=0)).to(device)
    rows = synthetic_batch(batch, min(length, mcfg.max_length), mcfg.vocab_size, 6)
    return model, {k: v.to(device) for k, v in rows.items()}


def method_steps(mcfg: ModelConfig, model, batch: dict[str, torch.Tensor], bf16: bool = False) -> dict:
    """name -> a function that runs one optimizer step of that method on `batch` and returns its seconds."""
    device = batch["input_ids"].device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    target = TokenLogits(copy.deepcopy(model).eval().requires_grad_(False))
    behaviour = TokenLogits(copy.deepcopy(model).eval().requires_grad_(False))
    support = top_support(behaviour, batch, support_size_bound(TrainConfig().support_eps), TrainConfig().support_eps)
    supported = {**batch, "pi_beta_ids": support.ids, "pi_beta_logp": support.log_probs}  # as pipeline.support stores
    ilql = TokenValues(model, new_value_heads(model).to(device))
    q0 = torch.zeros(len(batch["input_ids"]), device=device)  # SPO's Q0_hat per row (its value does not change the cost)
    variants = {"bc": ("bc", batch, TokenLogits(model), target),
                "filtered_bc": ("filtered_bc", batch, TokenLogits(model), target),
                "qsft (pi_beta online)": ("qsft", batch, TokenLogits(model), target),
                "qsft (pi_beta precomputed)": ("qsft", supported, TokenLogits(model), target),
                "ilql": ("ilql", batch, ilql, copy.deepcopy(ilql).requires_grad_(False)),
                "spo": ("spo", {**batch, "q0": q0}, TokenLogits(model), None)}
    steps = {}
    for name, (stage, data, policy, policy_target) in variants.items():
        optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-5)
        steps[name] = make_step(TrainConfig(stage=stage, model=mcfg), data, policy, policy_target, behaviour,
                                optimizer, autocast)
    return steps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny", choices=list(MODEL_PRESETS))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=160)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--pixels", action="store_true", help="the robot tasks' PixelGPT on pick-shaped episodes")
    args = parser.parse_args()
    keep_freed_memory()

    mcfg = apply_overrides(ModelConfig(), MODEL_PRESETS[args.model])
    model, batch = pixel_setup(mcfg, args.batch, args.device) if args.pixels else text_setup(mcfg, args.batch,
                                                                                              args.length, args.device)
    length = batch["input_ids"].shape[1]
    tokens = batch["attention_mask"].sum().item()
    steps = method_steps(mcfg, model, batch, args.bf16)
    times = {name: [] for name in steps}
    for i in range(args.iters + 3):  # alternate the variants so load on the machine hits them alike
        for stage, step in steps.items():
            seconds = step()
            if i >= 3:
                times[stage].append(seconds)
    results = {stage: statistics.median(t) for stage, t in times.items()}
    for name, seconds in results.items():
        print(f"{name:28s} {1000 * seconds:8.1f} ms/step  {tokens / seconds:10.0f} tokens/s  "
              f"{seconds / results['bc']:.2f}x bc")
    print(f"model={args.model}{' (PixelGPT)' if args.pixels else ''} device={args.device} bf16={args.bf16} "
          f"batch={args.batch}x{length}")
    print(f"ratio qsft/bc = {results['qsft (pi_beta precomputed)'] / results['bc']:.2f} with the support pass "
          f"(default), {results['qsft (pi_beta online)'] / results['bc']:.2f} online  (goal <= 1.4)")
    print("  ".join(f"ratio {m}/bc = {results[m] / results['bc']:.2f}" for m in ("filtered_bc", "ilql", "spo")))


if __name__ == "__main__":
    main()
