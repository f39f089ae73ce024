"""`qsft/ALFWorld-v0`: text-only ALFWorld (Shridhar et al. 2021) over generated, shipped game files.

Rules: the first observation is the room description and "Your task is to: ...". Each step takes one
command; an admissible one is played by textworld's PDDL engine and observed as its feedback, any
other string leaves the world unchanged and is observed as `INVALID_ACTION`. Reward 1 on the step that
achieves the goal (the episode terminates), else 0; episodes are truncated after `max_steps` (30, the
paper's limit). Commands are matched after lower-casing and collapsing whitespace.

`info` holds `split`, `instance` (the game folder, e.g. "eval/004-pick_heat_..."), `task_type`,
`admissible_actions`, `won` and `expert_action`: the next command of a plan from the current state
to the goal ("" once won). At reset the plan is the game's stored walkthrough (minimum cost), and
playing its next command advances it for free. Otherwise:
- observation (look, inventory, examine, help) or going where the agent already is keeps it;
- a stray "go to" keeps it if its next command is a "go to" too, else prepends going back (moving works
  from anywhere and no precondition reads the `checked` facts that looking changes): it stays valid,
  if possibly a step or two longer than a fresh plan;
- any other command asks the planner again (~50-150 ms, the main cost of collecting with a noisy policy).
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any, ClassVar

import gymnasium
from gymnasium import spaces

from envs.alfworld import MAX_STEPS
from envs.alfworld.engine import Engine, EngineState, read_game
from envs.base import reset_instance

GAMES_DIR = Path(__file__).parent / "data" / "games"
SPLITS = ("train", "eval")
INVALID_ACTION = "Nothing happens. That is not an admissible action."
_INTRO = "-= Welcome to TextWorld, ALFRED! =-"
_OBSERVATION_ONLY = ("look", "inventory", "examine", "help")


def list_games(games_dir: Path, split: str) -> list[Path]:
    """The game folders of a split, in a fixed (sorted) order: instance `i` is the i-th."""
    folder = games_dir / split
    return sorted(p for p in folder.iterdir() if (p / "game.tw-pddl").is_file()) if folder.is_dir() else []


def normalize_command(action: str) -> str:
    """Lower-case, one line, single spaces."""
    return " ".join(str(action).split()).lower()


class ALFWorldEnv(gymnasium.Env):
    """ALFWorld household tasks as text, with admissible actions and a planner's next action in `info`."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, games_dir: str | Path | None = None, max_steps: int = MAX_STEPS) -> None:
        self.games_dir = Path(games_dir) if games_dir is not None else GAMES_DIR
        self.max_steps = max_steps
        self.games = {split: list_games(self.games_dir, split) for split in SPLITS}
        charset = string.printable
        self.observation_space = spaces.Text(max_length=8192, min_length=0, charset=charset)
        self.action_space = spaces.Text(max_length=256, min_length=0, charset=charset)
        self._engine = Engine()
        self._loaded: Path | None = None
        self._game: dict[str, Any] = {}
        self._split = "train"
        self._task_type = ""
        self._state = EngineState("", (), False)
        self._plan: list[str] = []
        self._at = ""       # the receptacle the agent last went to ("" at the start, in the middle of the room)
        self._steps = 0

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        split, index = reset_instance(options, {split: len(self.games[split]) for split in SPLITS}, self.np_random)
        folder = self.games[split][index]
        if folder != self._loaded:
            self._game = read_game(folder / "game.tw-pddl")
            self._task_type = read_game(folder / "traj_data.json")["task_type"]
            self._engine.load(self._game)
            self._loaded = folder
        self._split = split
        self._state = self._engine.reset()
        self._plan = list(self._game["walkthrough"])
        self._at = ""
        self._steps = 0
        return self._state.feedback.replace(_INTRO, "").strip(), self._info()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        command = normalize_command(action)
        self._steps += 1
        if command in self._state.admissible:
            self._state = self._engine.step(command)
            self._update_plan(command)
            if command.startswith("go to "):
                self._at = command.removeprefix("go to ")
            observation = self._state.feedback.strip()
        else:
            observation = INVALID_ACTION
        terminated = self._state.won
        truncated = not terminated and self._steps >= self.max_steps
        return observation, float(terminated), terminated, truncated, self._info()

    def _update_plan(self, command: str) -> None:
        """Advance, keep, repair or recompute the plan after `command` was played (rules in the module doc)."""
        if self._state.won:
            self._plan = []
        elif self._plan and command == self._plan[0]:
            self._plan = self._plan[1:]
        elif self._plan_still_valid(command):
            return
        elif command.startswith("go to ") and self._plan and self._at:
            self._plan = [f"go to {self._at}", *self._plan]
        else:
            self._plan = self._engine.plan()

    def _plan_still_valid(self, command: str) -> bool:
        """Observation, going where the agent already is, or a stray go-to when the plan goes elsewhere next."""
        if command.split()[0] in _OBSERVATION_ONLY or command == f"go to {self._at}":
            return True
        return command.startswith("go to ") and bool(self._plan) and self._plan[0].startswith("go to ")

    def _info(self) -> dict[str, Any]:
        assert self._loaded is not None
        return {"split": self._split, "instance": f"{self._split}/{self._loaded.name}",
                "task_type": self._task_type, "admissible_actions": list(self._state.admissible),
                "won": self._state.won, "expert_action": self._plan[0] if self._plan else ""}
