"""A Franka Panda over a tabletop, simulated in its own headless pybullet client.

Control (one call of `apply` = one agent step): the gripper is commanded to its current position
plus `action[:3] * MAX_DELTA` metres (clipped to `WORKSPACE`; relative to the measured position, so
the observation holds the whole control state), inverse kinematics (gripper pointing down,
fixed yaw) turns it into joint targets, and `SUBSTEPS` physics steps of `TIME_STEP` seconds run under
position control (10 Hz control). The fingers close when `action[3] > 0` and open otherwise.

Bodies: a red target cube, two distractor slots (a blue cube, a yellow cylinder; a slot not in the
layout is parked far off the table, out of view) and, for the place task, a flat green marker
without collision. Each scene owns its pybullet client, so several scenes can share a process.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pybullet as p

from envs.robot.layout import Layout, Pose2D

TIME_STEP = 1.0 / 240.0
SUBSTEPS = 24
MAX_DELTA = 0.05                      # metres per step per axis at |action| = 1
WORKSPACE = (np.array([0.30, -0.30, 0.015]), np.array([0.80, 0.30, 0.40]))
HALF = 0.025                          # half edge of the cubes, radius and half height of the cylinder
MARKER_RADIUS = 0.045
FINGER_OPEN = 0.04                    # per finger; the opening is the sum of both fingers
IMAGE_SIZE = 64
# pybullet_data's Panda with visual meshes of a tenth of the triangles (envs/robot/light_panda.py): the CPU
# renderer's time goes per triangle.
PANDA_URDF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "panda", "panda.urdf")

_ARM_JOINTS = list(range(7))
_FINGER_JOINTS = [9, 10]
_GRASP_LINK = 11                      # "panda_grasptarget": between the fingertips
_ARM_FORCES = [87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0]
_FINGER_FORCE = 40.0
_HOME = [0.0, -0.4, 0.0, -2.4, 0.0, 2.0, math.pi / 4]
_DOWN = p.getQuaternionFromEuler([math.pi, 0.0, 0.0])
_ASIDE = (0.0, 2.0)                   # objects not in the scene wait off the table, out of view
_CAMERA_EYE = (0.95, 0.0, 0.65)     # in front of the table, looking back and down at the robot
_CAMERA_AT = (0.50, 0.0, 0.14)
_CAMERA_FOV = 50.0

TARGET_RGBA = (0.85, 0.10, 0.10, 1.0)
DISTRACTOR_RGBA = ((0.10, 0.25, 0.85, 1.0), (0.90, 0.80, 0.10, 1.0))
MARKER_RGBA = (0.10, 0.75, 0.25, 1.0)
TABLE_RGBA = (0.55, 0.45, 0.35, 1.0)


def _yaw_quaternion(yaw: float) -> tuple[float, ...]:
    return p.getQuaternionFromEuler([0.0, 0.0, yaw])


class Scene:
    """The simulated world of one environment; `close()` disconnects its pybullet client."""

    def __init__(self, with_marker: bool) -> None:
        self.client = p.connect(p.DIRECT)
        if self.client < 0:
            raise RuntimeError("could not start a pybullet DIRECT client")
        c = self.client
        p.setGravity(0.0, 0.0, -9.81, physicsClientId=c)
        p.setTimeStep(TIME_STEP, physicsClientId=c)
        p.setPhysicsEngineParameter(deterministicOverlappingPairs=1, physicsClientId=c)
        p.createMultiBody(
            0.0,
            p.createCollisionShape(p.GEOM_PLANE, physicsClientId=c),
            p.createVisualShape(p.GEOM_BOX, halfExtents=[1.5, 1.5, 0.001], rgbaColor=TABLE_RGBA,
                                visualFramePosition=[0.0, 0.0, -0.001], physicsClientId=c),
            physicsClientId=c,
        )
        self.robot = p.loadURDF(PANDA_URDF, useFixedBase=True, physicsClientId=c)
        for finger in _FINGER_JOINTS:
            p.changeDynamics(self.robot, finger, lateralFriction=1.5, physicsClientId=c)
        self.target = self._make_object(p.GEOM_BOX, TARGET_RGBA)
        self.distractors = [self._make_object(p.GEOM_BOX, DISTRACTOR_RGBA[0]),
                            self._make_object(p.GEOM_CYLINDER, DISTRACTOR_RGBA[1])]
        self.marker = None
        if with_marker:
            visual = p.createVisualShape(p.GEOM_CYLINDER, radius=MARKER_RADIUS, length=0.002,
                                         rgbaColor=MARKER_RGBA, physicsClientId=c)
            self.marker = p.createMultiBody(0.0, -1, visual, physicsClientId=c)
        self._view = p.computeViewMatrix(_CAMERA_EYE, _CAMERA_AT, [0.0, 0.0, 1.0])
        self._projection = p.computeProjectionMatrixFOV(_CAMERA_FOV, 1.0, 0.05, 3.0)
        self._present: list[int] = []
        self._command = np.zeros(3)
        # Every reset clears contacts and restores this snapshot, so no episode depends on the ones before.
        self._clear_contacts()
        self._fresh = p.saveState(physicsClientId=c)

    def _make_object(self, shape: int, rgba: tuple[float, ...]) -> int:
        c = self.client
        if shape == p.GEOM_BOX:
            collision = p.createCollisionShape(shape, halfExtents=[HALF] * 3, physicsClientId=c)
            visual = p.createVisualShape(shape, halfExtents=[HALF] * 3, rgbaColor=rgba, physicsClientId=c)
        else:
            collision = p.createCollisionShape(shape, radius=HALF, height=2 * HALF, physicsClientId=c)
            visual = p.createVisualShape(shape, radius=HALF, length=2 * HALF, rgbaColor=rgba,
                                         physicsClientId=c)
        body = p.createMultiBody(0.1, collision, visual, basePosition=[0.0, 0.0, HALF], physicsClientId=c)
        p.changeDynamics(body, -1, lateralFriction=1.0, spinningFriction=0.001, physicsClientId=c)
        return body

    # ----------------------------------------------------------------------------------- episode
    def reset(self, layout: Layout) -> None:
        """Put every body where `layout` says, the arm at rest at the gripper start, fingers open."""
        c = self.client
        self._clear_contacts()
        p.restoreState(self._fresh, physicsClientId=c)
        self._place(self.target, layout.target)
        for slot, (body, pose) in enumerate(zip(self.distractors, layout.distractors)):
            self._place(body, pose or Pose2D(_ASIDE[0], _ASIDE[1] + 0.2 * (slot + 1), 0.0))
        self._present = [body for body, pose in zip(self.distractors, layout.distractors) if pose]
        if self.marker is not None and layout.marker is not None:
            p.resetBasePositionAndOrientation(self.marker, [*layout.marker, 0.001], [0, 0, 0, 1],
                                              physicsClientId=c)
        self._command = np.array(layout.gripper_start, dtype=float)
        for joint, angle in zip(_ARM_JOINTS, _HOME):
            p.resetJointState(self.robot, joint, angle, physicsClientId=c)
        for _ in range(4):  # IK from the home pose, refined from its own answer
            for joint, angle in zip(_ARM_JOINTS, self._joint_targets()):
                p.resetJointState(self.robot, joint, angle, physicsClientId=c)
        for finger in _FINGER_JOINTS:
            p.resetJointState(self.robot, finger, FINGER_OPEN, physicsClientId=c)
        self._drive(close=False)

    def _clear_contacts(self) -> None:
        """Lift every object clear of everything, so that pybullet drops their cached contact points
        (they would warm-start the next episode's contact solver and make it depend on this one)."""
        for k, body in enumerate([self.target, *self.distractors]):
            p.resetBasePositionAndOrientation(body, [_ASIDE[0], _ASIDE[1] + 0.2 * k, 1.0], [0, 0, 0, 1],
                                              physicsClientId=self.client)
        p.performCollisionDetection(physicsClientId=self.client)

    def _place(self, body: int, pose: Pose2D) -> None:
        p.resetBasePositionAndOrientation(body, [pose.x, pose.y, HALF], _yaw_quaternion(pose.yaw),
                                          physicsClientId=self.client)
        p.resetBaseVelocity(body, [0, 0, 0], [0, 0, 0], physicsClientId=self.client)

    def apply(self, action: np.ndarray) -> None:
        """One agent step: move the commanded gripper position, set the fingers, simulate."""
        self._command = np.clip(self.gripper_position() + action[:3] * MAX_DELTA, *WORKSPACE)
        self._drive(close=bool(action[3] > 0.0))

    def _joint_targets(self) -> list[float]:
        solution = p.calculateInverseKinematics(
            self.robot, _GRASP_LINK, self._command.tolist(), _DOWN,
            maxNumIterations=50, residualThreshold=1e-5, physicsClientId=self.client)
        return list(solution[:7])

    def _drive(self, close: bool) -> None:
        """Aim the arm at the commanded gripper position, open or close the fingers, simulate."""
        c = self.client
        p.setJointMotorControlArray(self.robot, _ARM_JOINTS, p.POSITION_CONTROL,
                                    targetPositions=self._joint_targets(), forces=_ARM_FORCES,
                                    physicsClientId=c)
        finger = 0.0 if close else FINGER_OPEN
        p.setJointMotorControlArray(self.robot, _FINGER_JOINTS, p.POSITION_CONTROL,
                                    targetPositions=[finger, finger], forces=[_FINGER_FORCE] * 2,
                                    physicsClientId=c)
        for _ in range(SUBSTEPS):
            p.stepSimulation(physicsClientId=c)

    # ----------------------------------------------------------------------------------- reading
    def gripper_position(self) -> np.ndarray:
        """World position of the point between the fingertips."""
        state = p.getLinkState(self.robot, _GRASP_LINK, computeForwardKinematics=True,
                               physicsClientId=self.client)
        return np.array(state[4], dtype=float)

    def gripper_opening(self) -> float:
        """Distance between the fingers (0 closed, 2 * FINGER_OPEN fully open)."""
        return sum(p.getJointState(self.robot, j, physicsClientId=self.client)[0] for j in _FINGER_JOINTS)

    def present_distractors(self) -> list[int]:
        """The distractor bodies on the table in this episode."""
        return list(self._present)

    def position(self, body: int) -> np.ndarray:
        return np.array(p.getBasePositionAndOrientation(body, physicsClientId=self.client)[0], dtype=float)

    def speed(self, body: int) -> float:
        return float(np.linalg.norm(p.getBaseVelocity(body, physicsClientId=self.client)[0]))

    def grasped(self, body: int) -> bool:
        """Both fingers touch `body`."""
        return all(p.getContactPoints(self.robot, body, linkIndexA=finger, physicsClientId=self.client)
                   for finger in _FINGER_JOINTS)

    def touched(self, body: int) -> bool:
        """Any part of the robot touches `body`."""
        return bool(p.getContactPoints(self.robot, body, physicsClientId=self.client))

    def image(self) -> np.ndarray:
        """The camera's RGB view, (IMAGE_SIZE, IMAGE_SIZE, 3) uint8 (CPU TinyRenderer)."""
        _, _, rgba, _, _ = p.getCameraImage(
            IMAGE_SIZE, IMAGE_SIZE, self._view, self._projection, renderer=p.ER_TINY_RENDERER,
            flags=p.ER_NO_SEGMENTATION_MASK, physicsClientId=self.client)
        return np.asarray(rgba, dtype=np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE, 4)[:, :, :3].copy()

    def close(self) -> None:
        if self.client >= 0 and p.isConnected(physicsClientId=self.client):
            p.disconnect(physicsClientId=self.client)
        self.client = -1
