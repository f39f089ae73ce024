"""Maze as a text gymnasium environment (`qsft/Maze-v0`), after LMRL-Gym's fully observed maze.

One fixed grid maze (`LAYOUT`) with five goal cells (`GOALS`); an instance is a start cell and a goal. The agent moves
`up`, `down`, `left` or `right`; a move into a wall leaves it where it is. Rewards: -1 for every move
that does not reach the goal, 0 for the move that does (which terminates the episode). After
`MAX_STEPS` moves the episode is truncated (a time limit, so training bootstraps after it). Raw returns
lie in [-MAX_STEPS, 0].

Observations are short (a turn is about five tokens): the prompt names the goal and the start as
row-column pairs ("goal 5 3 start 1 1\\n"); each later one is the new position ("2 1\\n"), or
"wall 2 1\\n" after a blocked move, or "goal\\n" at the goal. An action that is not one of the four moves
costs a step and is answered "no such move 2 1\\n".
`info` holds "split", "instance" (the pair's index in its split), "position", "goal" and "steps".
"""

from __future__ import annotations

import string
from collections import deque
from functools import cache
from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

MAX_STEPS = 24
# '#' wall, '.' open. Dead-end corridors and a loop, so that moving straight towards the goal often
# walks into a wall or a cul-de-sac (the behaviour policy's typical mistake).
LAYOUT = (
    "#########",
    "#...#...#",
    "#.#.#.#.#",
    "#.#...#.#",
    "#.#####.#",
    "#...#...#",
    "###.#.###",
    "#.....#.#",
    "#.###...#",
    "#...#.#.#",
    "#########",
)
MOVES = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
GOALS = ((1, 1), (1, 7), (9, 1), (9, 7), (5, 3))
MIN_DISTANCE = 4      # instances need at least this many moves
NUM_EVAL = 100
SPLIT_SEED = 12345


def is_open(cell: tuple[int, int]) -> bool:
    r, c = cell
    return 0 <= r < len(LAYOUT) and 0 <= c < len(LAYOUT[0]) and LAYOUT[r][c] == "."


def open_cells() -> list[tuple[int, int]]:
    return [(r, c) for r in range(len(LAYOUT)) for c in range(len(LAYOUT[0])) if LAYOUT[r][c] == "."]


def move(cell: tuple[int, int], action: str) -> tuple[int, int]:
    """The cell a move leads to (the same cell when a wall is in the way)."""
    dr, dc = MOVES[action]
    target = (cell[0] + dr, cell[1] + dc)
    return target if is_open(target) else cell


@cache
def distances_to(goal: tuple[int, int]) -> dict[tuple[int, int], int]:
    """Shortest number of moves from every open cell to `goal` (breadth-first search)."""
    dist = {goal: 0}
    queue = deque([goal])
    while queue:
        cell = queue.popleft()
        for action in MOVES:
            nxt = move(cell, action)
            if nxt not in dist:
                dist[nxt] = dist[cell] + 1
                queue.append(nxt)
    return dist


@cache
def splits() -> dict[str, list[tuple[tuple[int, int], tuple[int, int]]]]:
    """(start, goal) pairs at least `MIN_DISTANCE` apart: `NUM_EVAL` held out ("eval"), the rest "train"."""
    pairs = [(s, g) for g in GOALS for s in open_cells() if distances_to(g)[s] >= MIN_DISTANCE]
    order = np.random.default_rng(SPLIT_SEED).permutation(len(pairs))
    shuffled = [pairs[i] for i in order]
    return {"eval": shuffled[:NUM_EVAL], "train": shuffled[NUM_EVAL:]}


def position_text(cell: tuple[int, int]) -> str:
    return f"{cell[0]} {cell[1]}"


class MazeEnv(gymnasium.Env):
    """Text maze; `reset(options={"split": "train" | "eval", "index": i})` plays (start, goal) pair i."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Text(max_length=256, charset=string.printable)
        self.action_space = spaces.Text(max_length=64, charset=string.printable)
        self._info: dict[str, Any] = {}
        self._position = self._goal = (0, 0)
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        split = options.get("split", "train")
        if split not in ("train", "eval"):
            raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
        pairs = splits()[split]
        index = options.get("index")
        index = int(self.np_random.integers(len(pairs))) if index is None else int(index)
        if not 0 <= index < len(pairs):
            raise IndexError(f"index {index} out of range for the {split} split ({len(pairs)} instances)")
        self._position, self._goal = pairs[index]
        self._steps = 0
        self._info = {"split": split, "instance": index}
        return f"goal {position_text(self._goal)} start {position_text(self._position)}\n", self._new_info()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        self._steps += 1
        name = " ".join(str(action).split()).lower()
        if name in MOVES:
            target = move(self._position, name)
            observation = ("" if target != self._position else "wall ") + position_text(target) + "\n"
            self._position = target
        else:
            observation = f"no such move {position_text(self._position)}\n"
        reached = self._position == self._goal
        if reached:
            observation = "goal\n"
        return observation, 0.0 if reached else -1.0, reached, not reached and self._steps >= MAX_STEPS, \
            self._new_info()

    def _new_info(self) -> dict[str, Any]:
        return {**self._info, "position": self._position, "goal": self._goal, "steps": self._steps}
