"""Gymnasium environments and behaviour policies for the Q-SFT tasks.

Importing `envs` registers every environment id (entry points are lazy strings, so a task's
heavy dependencies load only when it is made). `get_task(name)` returns a task's `Task` record.
"""

from __future__ import annotations

import importlib

import gymnasium

from envs.base import BehaviourPolicy, ScoreNormalizer, Task

# task name -> (gymnasium id, entry point, module holding the `TASK` record, or "module:RECORD")
_TASKS: dict[str, tuple[str, str, str]] = {
    "maze": ("qsft/Maze-v0", "envs.maze.env:MazeEnv", "envs.maze"),
    "maze_small": ("qsft/Maze-v0", "envs.maze.env:MazeEnv", "envs.maze.small"),
    "wordle": ("qsft/Wordle-v0", "envs.wordle.env:WordleEnv", "envs.wordle"),
    "twenty_questions": ("qsft/TwentyQuestions-v0", "envs.twenty_questions.env:TwentyQuestionsEnv",
                         "envs.twenty_questions"),
    "webshop": ("qsft/WebShop-v0", "envs.webshop.env:WebShopEnv", "envs.webshop"),
    "alfworld": ("qsft/ALFWorld-v0", "envs.alfworld.env:ALFWorldEnv", "envs.alfworld"),
    "robot_pick": ("qsft/RobotPick-v0", "envs.robot.env:RobotPickEnv", "envs.robot.pick"),
    "robot_place": ("qsft/RobotPlace-v0", "envs.robot.env:RobotPlaceEnv", "envs.robot.place"),
    # diagnostics (never results): the robot tasks with the object positions in proprio (envs.robot.diagnostic)
    "robot_pick_state": ("qsft/RobotPick-v0", "envs.robot.env:RobotPickEnv", "envs.robot.diagnostic:PICK_STATE"),
    "robot_place_state": ("qsft/RobotPlace-v0", "envs.robot.env:RobotPlaceEnv", "envs.robot.diagnostic:PLACE_STATE"),
}

for _env_id, _entry_point, _ in _TASKS.values():
    if _env_id not in gymnasium.registry:
        gymnasium.register(id=_env_id, entry_point=_entry_point)

TASK_NAMES = tuple(_TASKS)


def get_task(name: str) -> Task:
    """The `Task` record of a task name such as "wordle"."""
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(_TASKS)}")
    module, _, record = _TASKS[name][2].partition(":")
    return getattr(importlib.import_module(module), record or "TASK")


def as_task(task: Task | str) -> Task:
    """A `Task` record as it is, or the record of a task name: the pipeline's entry points take either, resolve
    it once, and pass the record down (only Ray remote work, across a process boundary, takes the name)."""
    return get_task(task) if isinstance(task, str) else task


__all__ = ["TASK_NAMES", "BehaviourPolicy", "ScoreNormalizer", "Task", "as_task", "get_task"]
