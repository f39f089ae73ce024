"""Diagnostic tasks: robot pick and place with the object positions the scripted policy reads in proprio.

`robot_pick_state` and `robot_place_state` are `robot_pick` and `robot_place` with `observe_objects=True`
(`envs.robot.env`): the same scenes, rules, held-out layouts, behaviour, normalizer, action tokens and model, but
the observation's proprio also holds the target's, the distractors' and the marker's positions. A policy trained
on them is never a result of the robot tasks: it tells whether the pixel policy's failure is vision (the state
policy reaches the data's level, the pixel one does not) or something vision does not touch (action tokens, the
loss, the data size, the training length).
"""

import dataclasses

from envs.robot import pick, place

PICK_STATE = dataclasses.replace(pick.TASK, name="robot_pick_state", env_kwargs={"observe_objects": True})
PLACE_STATE = dataclasses.replace(place.TASK, name="robot_place_state", env_kwargs={"observe_objects": True})
