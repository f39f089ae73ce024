"""Maze as a text gymnasium environment (`qsft/Maze-v0`), after LMRL-Gym's fully observed maze.

A fixed grid maze (a `Layout`: `STANDARD`, 11x9 with five goals, or `SMALL`, 7x9 with four, chosen by
`gymnasium.make("qsft/Maze-v0", layout="small")`); an instance is a start cell and a goal. The agent moves
`up`, `down`, `left` or `right`; a move into a wall leaves it where it is. Rewards: -1 for every move
that does not reach the goal, 0 for the move that does (which terminates the episode). After the layout's
`max_steps` moves the episode is truncated (a time limit, so training bootstraps after it). Raw returns
lie in [-max_steps, 0].

Observations are short (a turn is about five tokens): the prompt names the goal and the start as
row-column pairs ("goal 5 3 start 1 1\\n"); each later one is the new position ("2 1\\n"), or
"wall 2 1\\n" after a blocked move, or "goal\\n" at the goal. An action that is not one of the four moves
costs a step and is answered "no such move 2 1\\n".
`info` holds "split", "instance" (the pair's index in its split), "position", "goal", "steps" and
"admissible_actions" (the four moves: the action set is finite, so a policy may choose among them).
"""

from __future__ import annotations

import string
from collections import deque
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

from envs.base import reset_instance

MOVES = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
SPLIT_SEED = 12345


@dataclass(frozen=True)
class Layout:
    """A grid ('#' wall, '.' open), its goal cells, and the instance rules: (start, goal) pairs at least
    `min_distance` moves apart, `num_eval` of them held out, episodes truncated after `max_steps` moves."""

    grid: tuple[str, ...]
    goals: tuple[tuple[int, int], ...]
    min_distance: int
    num_eval: int
    max_steps: int

    def is_open(self, cell: tuple[int, int]) -> bool:
        r, c = cell
        return 0 <= r < len(self.grid) and 0 <= c < len(self.grid[0]) and self.grid[r][c] == "."

    def open_cells(self) -> list[tuple[int, int]]:
        return [(r, c) for r, row in enumerate(self.grid) for c, ch in enumerate(row) if ch == "."]

    def move(self, cell: tuple[int, int], action: str) -> tuple[int, int]:
        """The cell a move leads to (the same cell when a wall is in the way)."""
        dr, dc = MOVES[action]
        target = (cell[0] + dr, cell[1] + dc)
        return target if self.is_open(target) else cell

    def distances_to(self, goal: tuple[int, int]) -> dict[tuple[int, int], int]:
        """Shortest number of moves from every open cell to the open cell `goal`."""
        return self._distances[goal]

    @cached_property
    def _distances(self) -> dict[tuple[int, int], dict[tuple[int, int], int]]:
        """Breadth-first search from every open cell."""
        maps = {}
        for goal in self.open_cells():
            dist, queue = {goal: 0}, deque([goal])
            while queue:
                cell = queue.popleft()
                for action in MOVES:
                    nxt = self.move(cell, action)
                    if nxt not in dist:
                        dist[nxt] = dist[cell] + 1
                        queue.append(nxt)
            maps[goal] = dist
        return maps

    @cached_property
    def splits(self) -> dict[str, list[tuple[tuple[int, int], tuple[int, int]]]]:
        """(start, goal) pairs at least `min_distance` apart: `num_eval` held out ("eval"), the rest "train"."""
        pairs = [(s, g) for g in self.goals for s in self.open_cells() if self.distances_to(g)[s] >= self.min_distance]
        order = np.random.default_rng(SPLIT_SEED).permutation(len(pairs))
        shuffled = [pairs[i] for i in order]
        return {"eval": shuffled[: self.num_eval], "train": shuffled[self.num_eval:]}


# Dead-end corridors and a loop, so that moving straight towards the goal often walks into a wall or a
# cul-de-sac (the behaviour policy's typical mistake).
STANDARD = Layout(
    grid=(
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
    ),
    goals=((1, 1), (1, 7), (9, 1), (9, 7), (5, 3)),
    min_distance=4,
    num_eval=100,
    max_steps=24,
)
# The learning test's maze: 24 cells around one loop, the same kind of traps, paths of at most 13 moves.
SMALL = Layout(
    grid=(
        "#########",
        "#.#...#.#",
        "#.#.#.#.#",
        "#...#...#",
        "#.#####.#",
        "#.......#",
        "#########",
    ),
    goals=((1, 1), (1, 7), (5, 4), (1, 4)),
    min_distance=3,
    num_eval=40,
    max_steps=16,
)
LAYOUTS = {"standard": STANDARD, "small": SMALL}


def position_text(cell: tuple[int, int]) -> str:
    return f"{cell[0]} {cell[1]}"


class MazeEnv(gymnasium.Env):
    """Text maze on `LAYOUTS[layout]`; `reset(options={"split": "train" | "eval", "index": i})` plays pair i."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, layout: str = "standard") -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
        self.layout = LAYOUTS[layout]
        self.observation_space = spaces.Text(max_length=256, charset=string.printable)
        self.action_space = spaces.Text(max_length=64, charset=string.printable)
        self._info: dict[str, Any] = {}
        self._position = self._goal = (0, 0)
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        split, index = reset_instance(options, {s: len(p) for s, p in self.layout.splits.items()}, self.np_random)
        self._position, self._goal = self.layout.splits[split][index]
        self._steps = 0
        self._info = {"split": split, "instance": index}
        return f"goal {position_text(self._goal)} start {position_text(self._position)}\n", self._new_info()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        self._steps += 1
        name = " ".join(str(action).split()).lower()
        if name in MOVES:
            target = self.layout.move(self._position, name)
            observation = ("" if target != self._position else "wall ") + position_text(target) + "\n"
            self._position = target
        else:
            observation = f"no such move {position_text(self._position)}\n"
        reached = self._position == self._goal
        if reached:
            observation = "goal\n"
        return observation, 0.0 if reached else -1.0, reached, not reached and self._steps >= self.layout.max_steps, \
            self._new_info()

    def _new_info(self) -> dict[str, Any]:
        return {**self._info, "position": self._position, "goal": self._goal, "steps": self._steps,
                "admissible_actions": list(MOVES)}
