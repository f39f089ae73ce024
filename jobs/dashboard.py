"""Evaluation dashboard over run folders: `python jobs/dashboard.py RUN_DIR [RUN_DIR ...] --out DIR [--serve PORT]`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root, for ray job submit

from pipeline.dashboard import main

if __name__ == "__main__":
    main()
