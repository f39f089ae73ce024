"""`qsft/RobotPlace-v0`: put the red cube down on the green marker, within 40 steps.

Normalizer constants measured with `python -m envs.measure robot_place --episodes 200`: the default
behaviour solved 94/200 train episodes (0.47), the noise-free script 300/300 held-out instances.
"""

from envs.base import ScoreNormalizer
from envs.robot.goals import PLACE
from envs.robot.task import make_task

BEHAVIOUR_PARAMS = {"noise": 0.3, "aim_error": 0.012, "wrong_object": 0.25, "early_grasp": 0.3,
                    "sloppy_release": 0.2}

TASK = make_task(PLACE, "qsft/RobotPlace-v0", BEHAVIOUR_PARAMS,
                 ScoreNormalizer(worst=0.0, average=0.47, best=1.0))
