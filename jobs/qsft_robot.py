"""Q-SFT on robot pick and place from pixels: collect -> BC -> Q-SFT -> evaluate -> report, per task.
`--help` lists the flags; `--task robot_pick` runs one of them."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root, for ray job submit

from pipeline.cli import pipeline_main

if __name__ == "__main__":
    pipeline_main("robot", tasks=("robot_pick", "robot_place"))
