"""The robot camera's cost with the stock Panda of pybullet_data against the scene's light Panda
(envs/robot/light_panda.py), side by side: two pick environments driven by the same behaviour actions from the
same layouts, so every frame shows the same state. Prints the milliseconds per 64x64 frame of each (rounds in
alternating order, median), their ratio, the environment step with its frame, and how far the light Panda's
frames are from the stock ones (share of pixels that differ at all, mean absolute difference out of 255).

    python benchmarks/render.py [--episodes 6] [--frames 40] [--rounds 5]
"""

import argparse
import statistics
import time

import numpy as np

import envs
from envs.robot import scene
from envs.robot.env import RobotPickEnv
from envs.robot.light_panda import STOCK_URDF


def make_env(urdf: str) -> RobotPickEnv:
    light = scene.PANDA_URDF
    scene.PANDA_URDF = urdf
    try:
        return RobotPickEnv()
    finally:
        scene.PANDA_URDF = light


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=6, help="behaviour episodes compared frame by frame")
    parser.add_argument("--frames", type=int, default=40, help="frames timed per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    pair = {"stock": make_env(STOCK_URDF), "light": make_env(scene.PANDA_URDF)}
    task = envs.get_task("robot_pick")
    differing, absolute, step_seconds = [], [], {name: [] for name in pair}
    for episode in range(args.episodes):
        policy = task.make_behaviour(**task.default_behaviour_params)
        policy.reset(episode)
        seen = {name: env.reset(seed=episode, options={"split": "train", "index": episode})
                for name, env in pair.items()}
        for _ in range(task.max_steps):
            images = [seen[name][0]["image"].astype(int) for name in pair]
            differing.append(np.any(images[0] != images[1], axis=-1).mean())
            absolute.append(np.abs(images[0] - images[1]).mean())
            action = policy.act(*seen["stock"])
            for name, env in pair.items():
                start = time.perf_counter()
                step = env.step(action)
                step_seconds[name].append(time.perf_counter() - start)
                seen[name] = (step[0], step[4])
            if step[2] or step[3]:
                break
    frame_ms = {name: [] for name in pair}
    for r in range(args.rounds):
        for name in (pair if r % 2 == 0 else reversed(pair)):
            start = time.perf_counter()
            for _ in range(args.frames):
                pair[name].unwrapped._scene.image()
            frame_ms[name].append(1000 * (time.perf_counter() - start) / args.frames)
    ms = {name: statistics.median(values) for name, values in frame_ms.items()}
    for name in pair:
        print(f"{name:5s} Panda: {ms[name]:6.2f} ms per frame, environment step {1000 * statistics.median(step_seconds[name]):6.2f} ms")
    print(f"ratio light/stock frame = {ms['light'] / ms['stock']:.3f}; "
          f"step = {statistics.median(step_seconds['light']) / statistics.median(step_seconds['stock']):.3f}")
    print(f"{len(differing)} frames compared: {100 * np.mean(differing):.2f}% of pixels differ "
          f"(worst frame {100 * np.max(differing):.2f}%), mean absolute difference {np.mean(absolute):.2f} / 255 "
          f"(worst frame {np.max(absolute):.2f})")
    for env in pair.values():
        env.close()


if __name__ == "__main__":
    main()
