"""Matplotlib for image files, never a display: the one place the pipeline picks its backend."""


def pyplot():
    """`matplotlib.pyplot` on the non-interactive Agg backend (safe in Ray workers and headless CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
