"""Can a small model trained from scratch copy WebShop's instruction into its search query?

Trains the tiny Llama-shaped model and the same model with a pointer head (`pipeline.pointer_model`) side by
side, from the same seed, on WebShop's search turns alone (instruction page -> `search[query]`, the behaviour
policy's queries), and prints for each every `--every` steps the share of a held-out instruction's content
words that its greedy query holds (recall) and the share of its query's words that are such words
(precision), beside the behaviour's own on the same instructions.

    python benchmarks/query_copy.py --steps 1000 --every 200
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time

import gymnasium
import torch

import envs
from envs.webshop.search import tokenize as words_of
from envs.webshop.shopper import content_words
from pipeline.config import ModelConfig
from pipeline.models import build_tokenizer, load_initial_model
from pipeline.tokenize import TurnCodec


def search_turns(split: str, count: int) -> list[tuple[str, str]]:
    """(instruction page, the behaviour's search action) of instructions 0..count-1 of `split`."""
    task = envs.as_task("webshop")
    env = gymnasium.make(task.env_id, **task.env_kwargs)
    turns = []
    for i in range(count):
        page, info = env.reset(seed=i, options={"split": split, "index": i})
        behaviour = task.make_behaviour(**task.default_behaviour_params)
        behaviour.reset(i)
        turns.append((page, behaviour.act(page, info)))
    return turns


def overlap(page: str, action: str) -> tuple[float, float]:
    """(recall, precision) of the query's words against the instruction's content words."""
    wanted, said = content_words(page.split("[SEP]")[2]), set(words_of(action.removeprefix("search[").removesuffix("]")))
    shared = len(wanted & said)
    return shared / max(len(wanted), 1), shared / max(len(said), 1)


@torch.no_grad()
def greedy(model, codec: TurnCodec, page: str, limit: int = 24) -> str:
    ids = codec.observation_ids(page)
    start = len(ids)
    for _ in range(limit):
        token = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
        ids.append(token)
        if token == codec.eot_id:
            break
    return codec.decode_action(ids[start:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--train", type=int, default=6000, help="training instructions")
    parser.add_argument("--held-out", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(2)

    train, held_out = search_turns("train", args.train), search_turns("eval", args.held_out)
    behaviour = [sum(x) / len(held_out) for x in zip(*(overlap(p, a) for p, a in held_out))]
    cfg = ModelConfig(n_layer=2, n_embd=128, n_head=4, max_length=256, vocab_size=2048)
    tokenizer = build_tokenizer(cfg, [text for turn in train for text in turn])
    codec = TurnCodec(tokenizer)
    rows = [(codec.observation_ids(p), codec.action_ids(a)) for p, a in train]
    models = {arch: load_initial_model(dataclasses.replace(cfg, architecture=arch), tokenizer, seed=0)
              for arch in ("llama", "llama_pointer")}
    optimizers = {arch: torch.optim.AdamW(m.parameters(), lr=1e-3) for arch, m in models.items()}
    print(f"behaviour on {len(held_out)} held-out instructions: recall {behaviour[0]:.2f}, "
          f"precision {behaviour[1]:.2f}")
    print("| step | model | loss | recall | precision | seconds |\n|---:|---|---:|---:|---:|---:|")
    results, seconds, rng = [], dict.fromkeys(models, 0.0), random.Random(0)
    for step in range(1, args.steps + 1):
        batch = rng.sample(rows, args.batch_size)
        width = max(len(o) + len(a) for o, a in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        for b, (obs, act) in enumerate(batch):
            ids[b, : len(obs) + len(act)] = torch.tensor(obs + act)
            labels[b, len(obs): len(obs) + len(act)] = torch.tensor(act)
        mask = (ids != tokenizer.pad_token_id).long()
        for arch, model in models.items():
            started = time.perf_counter()
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            optimizers[arch].zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizers[arch].step()
            seconds[arch] += time.perf_counter() - started
            if step % args.every == 0:
                model.eval()
                recall, precision = (sum(x) / len(held_out) for x in
                                     zip(*(overlap(p, greedy(model, codec, p)) for p, _ in held_out)))
                model.train()
                results.append({"step": step, "model": arch, "loss": loss.item(), "recall": recall,
                                "precision": precision, "train_seconds": seconds[arch]})
                print(f"| {step} | {arch} | {loss.item():.3f} | {recall:.2f} | {precision:.2f} | {seconds[arch]:.0f} |",
                      flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"behaviour": {"recall": behaviour[0], "precision": behaviour[1]}, "results": results,
                       "held_out": len(held_out), "train": len(rows)}, f, indent=1)


if __name__ == "__main__":
    main()
