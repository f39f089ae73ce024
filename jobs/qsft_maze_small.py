"""Q-SFT on the small maze (the default suite's learning check): collect -> BC -> Q-SFT -> select settings -> evaluate -> report. `--help` lists the flags."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root, for ray job submit

from pipeline.cli import pipeline_main

if __name__ == "__main__":
    pipeline_main("maze_small")
