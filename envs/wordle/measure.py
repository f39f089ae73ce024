"""Measure the Wordle task's constants: `python -m envs.wordle.measure [--episodes N] [--random-prob P ...]`.

Prints the behaviour policy's average raw return on training words (the normalizer's `average` for the
default `random_prob`), the greedy solver's average raw return on the held-out split (`best`), and the
raw step rate of the environment alone and with the behaviour policy choosing actions.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from envs.base import play
from envs.wordle.env import WordleEnv
from envs.wordle.policies import GreedySolver, make_behaviour
from envs.wordle.words import split_answers


def behaviour_returns(random_prob: float, episodes: int, seed: int = 0) -> np.ndarray:
    """Raw returns of `episodes` training episodes of the behaviour policy (episode e uses seed + e)."""
    env, policy = WordleEnv(), make_behaviour(random_prob=random_prob)
    return np.array([sum(play(env, policy, seed + e)[0]) for e in range(episodes)])


def solver_returns() -> np.ndarray:
    """Raw returns of the greedy solver on every held-out word."""
    env, solver = WordleEnv(), GreedySolver()
    return np.array([sum(play(env, solver, 0, {"split": "eval", "index": i})[0])
                     for i in range(len(split_answers("eval")))])


def steps_per_second(random_prob: float | None, steps: int, seed: int = 0) -> float:
    """Raw env steps per second; actions from the behaviour policy, or a fixed word if `random_prob` is None."""
    env = WordleEnv()
    policy = None if random_prob is None else make_behaviour(random_prob=random_prob)
    observation, info = env.reset(seed=seed)
    if policy is not None:
        policy.reset(seed)
    start = time.perf_counter()
    for _ in range(steps):
        action = "crane" if policy is None else policy.act(observation, info)
        observation, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            observation, info = env.reset()
    return steps / (time.perf_counter() - start)


def main() -> None:
    from envs.wordle import TASK

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=5000)
    parser.add_argument("--random-prob", type=float, nargs="*",
                        default=[TASK.default_behaviour_params["random_prob"]])
    parser.add_argument("--steps", type=int, default=20000)
    args = parser.parse_args()
    for p in args.random_prob:
        returns = behaviour_returns(p, args.episodes)
        print(f"behaviour random_prob={p}: average return {returns.mean():.3f} "
              f"(std {returns.std():.3f}, solved {np.mean(returns > -6):.3f}) over {args.episodes} episodes")
    returns = solver_returns()
    print(f"greedy solver: average return {returns.mean():.3f} on {len(returns)} held-out words "
          f"(solved {np.mean(returns > -6):.3f}, worst {returns.min():.0f})")
    print(f"env steps/s, fixed action: {steps_per_second(None, args.steps):.0f}")
    p = TASK.default_behaviour_params["random_prob"]
    print(f"env steps/s with the behaviour policy (random_prob={p}): {steps_per_second(p, args.steps):.0f}")


if __name__ == "__main__":
    main()
