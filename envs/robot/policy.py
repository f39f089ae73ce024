"""Scripted pick and place policies that read privileged object positions from `info`.

The script is a small state machine over phases: approach (above the object at `HOVER_Z`), descend,
close, lift, and for placing carry (above the marker), lower, release and retreat. Each action moves
the gripper towards the phase's goal point, `clip((goal - gripper) / MAX_DELTA, -1, 1)`. A missed or
dropped object starts a new attempt. With every mistake rate at 0 it is the strong solver; the
behaviour policies make these seeded mistakes:

- `noise`: standard deviation of Gaussian noise added to each xyz action component;
- `aim_error`: standard deviation (metres) of a per-attempt offset of the grasp (and place) point;
- `wrong_object`: probability that the first attempt grasps and lifts a distractor, then drops it;
- `early_grasp`: probability per attempt of closing the fingers 3.5-7 cm too high (above the cube);
- `sloppy_release`: probability per attempt of letting go 6-12 cm above the table, 3-8 cm off the marker.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from envs.robot.goals import PLACE_RADIUS
from envs.robot.scene import MAX_DELTA

HOVER_Z = 0.13       # gripper height for moving above the objects
GRASP_Z = 0.02       # gripper height at which the fingers close around a cube on the table
LIFT_Z = 0.22
RELEASE_Z = 0.027    # gripper height at which a carried cube is let go (its bottom ~5 mm above the table)
XY_TOLERANCE = 0.012
Z_TOLERANCE = 0.01
HOLDING = 0.01       # a finger opening above this while closed means something is held
CLOSE_STEPS = 2
OPEN_STEPS = 2


class ScriptedPolicy:
    """Picks the target up and, if `place`, puts it down on the marker; see the module docstring."""

    def __init__(self, place: bool, noise: float = 0.0, aim_error: float = 0.0, wrong_object: float = 0.0,
                 early_grasp: float = 0.0, sloppy_release: float = 0.0) -> None:
        self.place = place
        self.noise = noise
        self.aim_error = aim_error
        self.wrong_object = wrong_object
        self.early_grasp = early_grasp
        self.sloppy_release = sloppy_release
        self.reset(0)

    def reset(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self._first_attempt = True
        self._new_attempt()

    def _new_attempt(self) -> None:
        rng = self._rng
        self._object: int | None = None    # None: the target; k: distractor k (modulo how many there are)
        if self._first_attempt and rng.random() < self.wrong_object:
            self._object = int(rng.integers(2))
        self._first_attempt = False
        self._aim = rng.normal(0.0, self.aim_error, 2) if self.aim_error else np.zeros(2)
        self._grasp_z = GRASP_Z + (rng.uniform(0.035, 0.07) if rng.random() < self.early_grasp else 0.0)
        self._release_z, self._drop_offset = RELEASE_Z, np.zeros(2)
        if rng.random() < self.sloppy_release:
            angle = rng.uniform(0.0, 2 * np.pi)
            self._release_z = rng.uniform(0.06, 0.12)
            self._drop_offset = rng.uniform(0.03, 0.08) * np.array([np.cos(angle), np.sin(angle)])
        self._phase = "approach"
        self._wait = 0

    def act(self, observation: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        gripper = np.asarray(observation["proprio"][:3], dtype=float)
        holding = float(observation["proprio"][3]) > HOLDING
        self._advance(gripper, holding, info)
        goal, close = self._phase_goal(gripper, info)
        action = np.clip((goal - gripper) / MAX_DELTA, -1.0, 1.0)
        self.intended = np.array([*action, 1.0 if close else -1.0], dtype=np.float32)  # before the noise
        if self.noise:
            action = np.clip(action + self._rng.normal(0.0, self.noise, 3), -1.0, 1.0)
        return np.array([*action, 1.0 if close else -1.0], dtype=np.float32)

    def _grasp_xy(self, info: dict[str, Any]) -> np.ndarray:
        if self._object is None:
            position = info["target_pos"]
        else:
            position = info["distractor_pos"][self._object % len(info["distractor_pos"])]
        return np.array(position[:2]) + self._aim

    def _drop_xy(self, info: dict[str, Any]) -> np.ndarray:
        return np.array(info["marker_pos"][:2]) + self._aim + self._drop_offset

    def _advance(self, gripper: np.ndarray, holding: bool, info: dict[str, Any]) -> None:
        """Leave every phase whose end is observed (several can end on one step)."""
        phase, z = self._phase, gripper[2]
        if phase == "approach" and _near_xy(gripper, self._grasp_xy(info)) and abs(z - HOVER_Z) < 3 * Z_TOLERANCE:
            phase = "descend"
        if phase == "descend" and _near_xy(gripper, self._grasp_xy(info)) and z - self._grasp_z < Z_TOLERANCE:
            phase, self._wait = "close", 0
        if phase == "close" and self._wait >= CLOSE_STEPS:
            phase = "lift"
        if phase in ("lift", "carry", "lower") and not holding:
            phase, self._wait = "release", 0   # missed or dropped: open up and try again
        if phase == "lift" and z > HOVER_Z - 2 * Z_TOLERANCE and self._object is not None:
            phase, self._wait = "release", 0   # a distractor is up: drop it, go for the target
        if phase == "lift" and z > HOVER_Z - 2 * Z_TOLERANCE and self.place:
            phase = "carry"
        if phase == "carry" and _near_xy(gripper, self._drop_xy(info)):
            phase = "lower"
        if phase == "lower" and z - self._release_z < Z_TOLERANCE:
            phase, self._wait = "release", 0
        if phase == "release" and self._wait >= OPEN_STEPS:
            if self._object is None and self.place and _on_marker(info):
                phase = "retreat"
            else:
                self._new_attempt()
                phase = "approach"
        self._phase = phase
        self._wait += 1

    def _phase_goal(self, gripper: np.ndarray, info: dict[str, Any]) -> tuple[np.ndarray, bool]:
        """The current phase's goal point for the gripper and whether the fingers close."""
        phase = self._phase
        if phase in ("approach", "descend"):
            return np.array([*self._grasp_xy(info), HOVER_Z if phase == "approach" else self._grasp_z]), False
        if phase in ("carry", "lower"):
            return np.array([*self._drop_xy(info), HOVER_Z if phase == "carry" else self._release_z]), True
        if phase in ("lift", "retreat"):
            return np.array([*gripper[:2], LIFT_Z if phase == "lift" else HOVER_Z]), phase == "lift"
        return gripper, phase == "close"   # close / release: stay put


def _on_marker(info: dict[str, Any]) -> bool:
    return math.dist(info["target_pos"][:2], info["marker_pos"][:2]) <= PLACE_RADIUS


def _near_xy(gripper: np.ndarray, point: np.ndarray) -> bool:
    return math.dist(gripper[:2], point) < XY_TOLERANCE
