"""Robot manipulation from pixels (pybullet Panda): `qsft/RobotPick-v0` and `qsft/RobotPlace-v0`.

Modules: `layout` (instances), `scene` (simulation and camera), `goals` (success tests), `env` (the
gymnasium environments), `policy` (scripted behaviour policies and solver), `task` with `pick` and
`place` (the `Task` records), `actions` (action tokens), `codec` (PNG image bytes), `light_panda` (writes
the camera's light Panda, `data/panda/`). The success
rates behind the normalizer constants: `python -m envs.measure robot_pick` (or robot_place).
"""
