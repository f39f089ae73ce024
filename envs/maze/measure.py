"""Measure a maze task's constants: `python -m envs.maze.measure [maze | maze_small] [--episodes N]`.

Prints the behaviour policy's average raw return on training instances (the normalizer's `average`), the
shortest-path solver's on the held-out split (`best`), and the return of always taking the behaviour's most
likely move (what greedy imitation of the data would score).
"""

from __future__ import annotations

import argparse

import gymnasium
import numpy as np

import envs
from envs.base import play
from envs.maze.env import STANDARD, Layout
from envs.maze.policies import ACTIONS, MixtureBehaviour


class MostLikelyMove:
    """The behaviour policy's mode at every step (its beeline move, unless the shortest path outweighs it)."""

    def __init__(self, optimal_prob: float, random_prob: float, layout: Layout = STANDARD) -> None:
        self.behaviour = MixtureBehaviour(optimal_prob, random_prob, layout)

    def reset(self, seed: int) -> None:
        pass

    def act(self, observation, info) -> str:
        return ACTIONS[int(np.argmax(self.behaviour.probabilities(info["position"], info["goal"])))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", nargs="?", default="maze", choices=("maze", "maze_small"))
    parser.add_argument("--episodes", type=int, default=5000)
    args = parser.parse_args()
    task = envs.get_task(args.task)
    env, params = gymnasium.make(task.env_id, **task.env_kwargs).unwrapped, task.default_behaviour_params
    behaviour = [play(env, task.make_behaviour(**params), seed) for seed in range(args.episodes)]
    returns = np.array([sum(r) for r, _ in behaviour])
    print(f"behaviour {params}: average return {returns.mean():.3f} (std {returns.std():.3f}, reached "
          f"{np.mean([task.success(r, t) for r, t in behaviour]):.3f}) over {args.episodes} episodes")
    eval_options = [{"split": "eval", "index": i} for i in range(task.num_eval_instances)]
    for name, policy in (("shortest-path solver", task.make_solver()),
                         ("behaviour's mode", MostLikelyMove(**params, layout=env.layout))):
        returns = np.array([sum(play(env, policy, 0, options)[0]) for options in eval_options])
        print(f"{name}: average return {returns.mean():.3f} on {len(returns)} held-out instances")


if __name__ == "__main__":
    main()
