"""Gymnasium environments for robot manipulation from pixels: `RobotPickEnv` and `RobotPlaceEnv`.

Observation: `{"image": (64, 64, 3) uint8 camera view, "proprio": float32 [gripper x, y, z (m),
finger opening (m)]}`. Action: `Box(-1, 1, (4,))`, gripper xyz deltas (times `MAX_DELTA` metres) and a
gripper command (> 0 closes). Reward 1 on the step the goal is achieved, which terminates; the episode
is truncated after the goal's `max_steps`. `info` carries the privileged object positions that the
scripted behaviour policies read (a learned policy must not).

`observe_objects=True` is a diagnostic, never a result: proprio then also holds those positions (the target's,
each distractor slot's, zeros when empty, and the marker's), so a policy trained on it shows what the same
model and action tokens reach when vision is taken out of the problem (`envs.robot.diagnostic`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

from envs.base import reset_instance
from envs.robot.goals import PICK, PLACE, Goal
from envs.robot.layout import instance_layout
from envs.robot.scene import FINGER_OPEN, IMAGE_SIZE, Scene

# Held-out layouts (the eval stream of envs.robot.layout): 100 until session 24, enlarged to 300 so that a rate's
# 95% interval is +-5.6 points, not +-9.8; the first 100 are the same layouts as before.
NUM_EVAL_INSTANCES = 300
NUM_TRAIN_INSTANCES = 2**31   # train indices are drawn from [0, NUM_TRAIN_INSTANCES)
NUM_DISTRACTOR_SLOTS = 2


def _rounded(vector: np.ndarray) -> list[float]:
    return [round(float(v), 5) for v in vector]


class RobotEnv(gymnasium.Env):
    """A tabletop manipulation task from pixels; the `Goal` decides the task."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, goal: Goal, render_mode: str | None = None, observe_objects: bool = False) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"unsupported render_mode {render_mode!r}")
        self.goal = goal
        self.render_mode = render_mode
        self.observe_objects = observe_objects
        objects = 3 * (1 + NUM_DISTRACTOR_SLOTS + goal.uses_marker) if observe_objects else 0
        self.observation_space = spaces.Dict({
            "image": spaces.Box(0, 255, (IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8),
            "proprio": spaces.Box(np.array([-2.0, -2.0, -2.0, 0.0] + [-2.0] * objects, np.float32),
                                  np.array([2.0, 2.0, 2.0, 2 * FINGER_OPEN + 0.01] + [2.0] * objects, np.float32),
                                  dtype=np.float32),
        })
        self.action_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        self._scene = Scene(with_marker=goal.uses_marker)
        self._split = "train"
        self._instance = ""
        self._steps = 0
        self._image = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        split, index = reset_instance(options, {"train": NUM_TRAIN_INSTANCES, "eval": NUM_EVAL_INSTANCES},
                                      self.np_random)
        layout = instance_layout(split, index, NUM_DISTRACTOR_SLOTS, self.goal.uses_marker)
        self._scene.reset(layout)
        self._split, self._instance, self._steps = split, f"{split}/{index}", 0
        return self._observation(), self._info(success=False)

    def step(self, action):
        action = np.clip(np.nan_to_num(np.asarray(action, dtype=np.float64).reshape(4)), -1.0, 1.0)
        self._scene.apply(action)
        self._steps += 1
        success = self.goal.achieved(self._scene)
        truncated = not success and self._steps >= self.goal.max_steps
        return self._observation(), float(success), success, truncated, self._info(success)

    def _observation(self) -> dict[str, np.ndarray]:
        self._image = self._scene.image()
        proprio = [*self._scene.gripper_position(), self._scene.gripper_opening()]
        if self.observe_objects:
            proprio += self._object_positions()
        return {"image": self._image, "proprio": np.array(proprio, np.float32)}

    def _object_positions(self) -> list[float]:
        """The diagnostic's privileged state: target, distractor slots (zeros when empty), marker, xyz each."""
        scene = self._scene
        distractors = [list(scene.position(body)) for body in scene.present_distractors()]
        distractors += [[0.0, 0.0, 0.0]] * (NUM_DISTRACTOR_SLOTS - len(distractors))
        marker = [list(scene.position(scene.marker))] if scene.marker is not None else []
        return [float(v) for xyz in [scene.position(scene.target), *distractors, *marker] for v in xyz]

    def _info(self, success: bool) -> dict[str, Any]:
        scene = self._scene
        info: dict[str, Any] = {
            "split": self._split,
            "instance": self._instance,
            "success": bool(success),
            "target_pos": _rounded(scene.position(scene.target)),
            "distractor_pos": [_rounded(scene.position(body)) for body in scene.present_distractors()],
        }
        if scene.marker is not None:
            info["marker_pos"] = _rounded(scene.position(scene.marker))
        return info

    def render(self) -> np.ndarray | None:
        return self._image.copy() if self.render_mode == "rgb_array" else None

    def close(self) -> None:
        self._scene.close()


class RobotPickEnv(RobotEnv):
    """`qsft/RobotPick-v0`: lift the red cube."""

    def __init__(self, render_mode: str | None = None, observe_objects: bool = False) -> None:
        super().__init__(PICK, render_mode, observe_objects)


class RobotPlaceEnv(RobotEnv):
    """`qsft/RobotPlace-v0`: put the red cube down on the green marker."""

    def __init__(self, render_mode: str | None = None, observe_objects: bool = False) -> None:
        super().__init__(PLACE, render_mode, observe_objects)
