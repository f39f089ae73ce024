"""`--help` lists the flags; see pipeline/cli.py."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root, for ray job submit

from pipeline.cli import sweep_main

if __name__ == "__main__":
    sweep_main()
