"""Does a Wordle checkpoint read the feedback? Two measurements on training-split words (never held-out ones).

1. Play: the checkpoint's own policy on the first `--episodes` validation words of the training split, greedy and
   sampled at T=1, writing free text and restricted to the allowed words (`Task.lexicon`), with the same seeds.
2. Feedback: after the guess `--guess` with each of a few feedback patterns, the probability that the next
   guess starts with the guess's first letter, under the checkpoint and under the behaviour policy:

       behaviour: P(next starts with x) = (1 - r) * share of the consistent answers starting with x
                                          + r * share of the allowed words starting with x      (r = random_prob)

   A policy that reads the feedback moves this with it (a green first letter makes it likely, a grey one rare).

    python benchmarks/wordle_probe.py --checkpoint RUN/bc/checkpoint [--episodes 40] [--out probe.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PATTERNS = ("GGGG_", "_____", "____G", "Y____")


def play(task, checkpoint: str, episodes: int) -> list[dict]:
    from pipeline.evaluate import play_chunk, summarize
    from pipeline.policy import LMPolicy, PolicySpec

    rows = []
    for restricted in (False, True):
        played = task if restricted else dataclasses.replace(task, lexicon=None)
        for temperature in (0.0, 1.0):
            policy = LMPolicy(PolicySpec(checkpoint=checkpoint, temperature=temperature), played)
            records = play_chunk(played, policy, list(range(episodes)), seed=0, split="validation")
            first = json.loads(records[0]["transcript"])
            rows.append({"lexicon": restricted, "temperature": temperature, **summarize(records),
                         "first_game": [turn.get("action") for turn in first if "action" in turn]})
    return rows


def feedback(task, checkpoint: str, guess: str) -> list[dict]:
    from envs.wordle import words
    from envs.wordle.env import PROMPT
    from envs.wordle.policies import consistent
    from pipeline.policy import LMPolicy, PolicySpec

    policy = LMPolicy(PolicySpec(checkpoint=checkpoint), task)
    codec, letter = policy.codec, guess[0]
    [letter_id] = codec.tokenizer.encode(letter, add_special_tokens=False)
    answers, random_prob = words.answers(), task.default_behaviour_params["random_prob"]
    allowed_share = float(np.mean([w[0] == letter for w in words.allowed_guesses()]))
    rows = []
    for pattern in PATTERNS:
        candidates = consistent(np.arange(len(answers)), {"guess": guess, "feedback": pattern, "valid": True, "turn": 1})
        share = float(np.mean([answers[i][0] == letter for i in candidates])) if len(candidates) else 0.0
        ids = codec.observation_ids(PROMPT) + codec.action_ids(guess) + codec.observation_ids(
            f"{guess}: {' '.join(pattern)}\n")
        with torch.no_grad():
            p = policy.lm(input_ids=torch.tensor([ids])).logits[0, -1].softmax(-1)[letter_id].item()
        rows.append({"feedback": pattern, "consistent_answers": len(candidates), "checkpoint": p,
                     "behaviour": (1 - random_prob) * share + random_prob * allowed_share})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--guess", default="store")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    import envs

    torch.set_num_threads(2)
    task = envs.get_task("wordle")
    result = {"checkpoint": args.checkpoint, "play": play(task, args.checkpoint, args.episodes),
              "feedback": feedback(task, args.checkpoint, args.guess)}
    print(f"{'decoding':<24} {'solved':>8} {'score':>12}  first game")
    for row in result["play"]:
        decoding = f"{'allowed words' if row['lexicon'] else 'free text'}, T={row['temperature']:g}"
        solved = f"{round(row['success_rate'] * row['episodes'])}/{row['episodes']}"
        print(f"{decoding:<24} {solved:>8} {row['score']:>5.1f} ± {row['score_ci']:<4.1f}  "
              f"{' '.join(row['first_game'])}")
    print(f"\nP(the guess after {args.guess!r} starts with {args.guess[0]!r})")
    print(f"{'feedback':<10} {'consistent':>10} {'behaviour':>10} {'checkpoint':>11}")
    for row in result["feedback"]:
        print(f"{row['feedback']:<10} {row['consistent_answers']:>10} {row['behaviour']:>10.3f} {row['checkpoint']:>11.3f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
