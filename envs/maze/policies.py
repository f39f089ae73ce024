"""Maze players that read the structured `info` (position and goal), never the observation text.

- `MixtureBehaviour`: the behaviour policy. At each step it makes, with probability `optimal_prob`, a
  shortest-path move; with probability `random_prob` a uniformly random move; otherwise the "beeline"
  move, the one that most reduces the straight-line (Manhattan) distance to the goal, walls ignored. The
  beeline is its most frequent choice and walks into walls and cul-de-sacs, so imitating the data's most
  likely move is a poor policy, while the data's shortest-path moves show a better one.
- `ShortestPathSolver`: a shortest-path move every step (the normalizer's `best`).
- `MostLikelyMove`: the behaviour's most likely move every step (greedy imitation of the data).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.maze.env import MOVES, STANDARD, Layout

ACTIONS = tuple(MOVES)


def shortest_path_move(position: tuple[int, int], goal: tuple[int, int], layout: Layout = STANDARD) -> str:
    """The first move (in `ACTIONS` order) that brings `position` one step closer to `goal`."""
    dist = layout.distances_to(goal)
    return next(a for a in ACTIONS if dist[layout.move(position, a)] == dist[position] - 1)


def beeline_move(position: tuple[int, int], goal: tuple[int, int]) -> str:
    """Towards the goal along the axis with the larger remaining offset (rows on a tie), walls ignored."""
    dr, dc = goal[0] - position[0], goal[1] - position[1]
    if abs(dr) >= abs(dc) and dr:
        return "down" if dr > 0 else "up"
    return "right" if dc > 0 else "left"


class MixtureBehaviour:
    """Shortest-path move w.p. `optimal_prob`, random w.p. `random_prob`, else the beeline move."""

    def __init__(self, optimal_prob: float, random_prob: float, layout: Layout = STANDARD, seed: int = 0) -> None:
        if not (0 <= optimal_prob and 0 <= random_prob and optimal_prob + random_prob <= 1):
            raise ValueError(f"need probabilities with optimal_prob + random_prob <= 1, got "
                             f"{optimal_prob}, {random_prob}")
        self.optimal_prob, self.random_prob, self.layout = optimal_prob, random_prob, layout
        self.reset(seed)

    def reset(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def probabilities(self, position: tuple[int, int], goal: tuple[int, int]) -> np.ndarray:
        """The policy's distribution over `ACTIONS` at `position` (the data's true pi_beta)."""
        probs = np.full(len(ACTIONS), self.random_prob / len(ACTIONS))
        probs[ACTIONS.index(shortest_path_move(position, goal, self.layout))] += self.optimal_prob
        probs[ACTIONS.index(beeline_move(position, goal))] += 1 - self.optimal_prob - self.random_prob
        return probs

    def act(self, observation: str, info: dict[str, Any]) -> str:
        u = self._rng.random()
        if u < self.optimal_prob:
            return shortest_path_move(info["position"], info["goal"], self.layout)
        if u < self.optimal_prob + self.random_prob:
            return ACTIONS[self._rng.integers(len(ACTIONS))]
        return beeline_move(info["position"], info["goal"])


class ShortestPathSolver:
    """The optimal policy (deterministic)."""

    def __init__(self, layout: Layout = STANDARD) -> None:
        self.layout = layout

    def reset(self, seed: int) -> None:
        pass

    def act(self, observation: str, info: dict[str, Any]) -> str:
        return shortest_path_move(info["position"], info["goal"], self.layout)


class MostLikelyMove:
    """The behaviour policy's mode at every step (its beeline move, unless the shortest path outweighs it):
    what greedy imitation of the data would play."""

    def __init__(self, optimal_prob: float, random_prob: float, layout: Layout = STANDARD) -> None:
        self.behaviour = MixtureBehaviour(optimal_prob, random_prob, layout)

    def reset(self, seed: int) -> None:
        pass

    def act(self, observation: str, info: dict[str, Any]) -> str:
        return ACTIONS[int(np.argmax(self.behaviour.probabilities(info["position"], info["goal"])))]
