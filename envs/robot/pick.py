"""`qsft/RobotPick-v0`: lift the red cube 8 cm while holding it, within 30 steps.

Normalizer constants measured with `python -m envs.measure robot_pick --episodes 200`: the default
behaviour solved 97/200 train episodes (0.485), the noise-free script 300/300 held-out instances.
"""

from envs.base import ScoreNormalizer
from envs.robot.goals import PICK
from envs.robot.task import make_task

BEHAVIOUR_PARAMS = {"noise": 0.3, "aim_error": 0.015, "wrong_object": 0.3, "early_grasp": 0.45}

TASK = make_task(PICK, "qsft/RobotPick-v0", BEHAVIOUR_PARAMS, ScoreNormalizer(worst=0.0, average=0.485, best=1.0))
