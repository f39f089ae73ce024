"""Robot BC diagnostics (issue 14): does a checkpoint reproduce the scripted actions, and does it succeed?

    python benchmarks/robot_probe.py --task robot_pick --checkpoint RUN/bc/checkpoint [--episodes 20]

1. Action-token error: the data's behaviour is played on held-out layouts (`--split validation`: on the
   training split's validation instances, where settings such as the bin count are chosen); at every step the
   checkpoint's greedy bins, given the episode so far (images, proprio, the behaviour's earlier actions), are
   compared with the behaviour's action. Printed: the share of steps whose 4 bins are all within one bin of the
   action the behaviour took, and of the action it intended before its Gaussian noise (`ScriptedPolicy.intended`),
   per dimension too;
   and, for scale, the share of the behaviour's own taken actions within one bin of its intended ones (its noise,
   0.3 in action units, is 2-10 bins as the bin count goes from 15 to 64). Also the mean absolute bin error per
   dimension against the intended action, of the model and of the taken actions, and the model's error in action
   units (1 = 5 cm of gripper motion), which compares checkpoints trained with different bin counts.
2. Success: the checkpoint played greedily on the same held-out layouts (its own episodes).
Works for the diagnostic tasks too (`robot_pick_state`: positions in proprio, `envs.robot.diagnostic`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def within_one_bin(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, D) bool: bins of a and b at most one apart, per dimension."""
    return np.abs(a.astype(int) - b.astype(int)) <= 1


class Recording:
    """The scripted behaviour, keeping each action it intended before its noise (`ScriptedPolicy.intended`)."""

    def __init__(self, behaviour) -> None:
        self.behaviour, self.intended = behaviour, []

    def reset(self, seed: int) -> None:
        self.behaviour.reset(seed)

    def act(self, observation, info):
        action = self.behaviour.act(observation, info)
        self.intended.append(self.behaviour.intended)
        return action


def main(argv: list[str] | None = None) -> dict:
    import gymnasium
    import torch

    import envs
    from envs.base import play
    from pipeline.collect import episode_seed
    from pipeline.evaluate import play_chunk, reset_options
    from pipeline.policy import LMPolicy, PolicySpec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, choices=[n for n in envs.TASK_NAMES if n.startswith("robot")])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--split", choices=("eval", "validation"), default="eval",
                        help="held-out layouts, or the validation instances of the training split (choices are made there)")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    task = envs.get_task(args.task)
    bins = task.action_tokenizer
    policy = LMPolicy(PolicySpec(checkpoint=args.checkpoint), task)

    model, taken, intended = [], [], []
    for i in range(args.episodes):
        behaviour = Recording(task.make_behaviour(**task.default_behaviour_params))
        env = gymnasium.make(task.env_id, **task.env_kwargs)
        played = play(env, behaviour, episode_seed(0, i), reset_options(args.split, i, None))
        env.close()
        segments = [policy.segment(played.observations[0])]
        contexts = []
        for t, action in enumerate(played.actions):
            contexts.append(policy.context(segments))
            segments.append(policy.segment(played.observations[t + 1], action))
        with torch.no_grad():
            for start in range(0, len(contexts), 16):
                model += [bins.encode(a) for a in policy.generate(contexts[start:start + 16])]
        taken += [bins.encode(a) for a in played.actions]
        intended += behaviour.intended   # the actions, before their noise
    model, taken = map(np.asarray, (model, taken))
    intended_values = np.asarray(intended)
    intended = np.array([bins.encode(a) for a in intended_values])
    model_values = np.array([bins.decode(b) for b in model])
    result = {
        "task": args.task, "checkpoint": args.checkpoint, "split": args.split, "episodes": args.episodes,
        "steps": len(taken),
        "model_vs_taken_all": float(within_one_bin(model, taken).all(1).mean()),
        "model_vs_intended_all": float(within_one_bin(model, intended).all(1).mean()),
        "model_vs_intended_per_dim": within_one_bin(model, intended).mean(0).round(3).tolist(),
        "taken_vs_intended_all": float(within_one_bin(taken, intended).all(1).mean()),
        "taken_vs_intended_per_dim": within_one_bin(taken, intended).mean(0).round(3).tolist(),
        "model_bin_error_per_dim": np.abs(model - intended).mean(0).round(2).tolist(),
        "taken_bin_error_per_dim": np.abs(taken - intended).mean(0).round(2).tolist(),
        "model_action_error_per_dim": np.abs(model_values - intended_values).mean(0).round(3).tolist(),
    }
    records = []
    for start in range(0, args.episodes, 10):
        records += play_chunk(task, policy, list(range(start, min(args.episodes, start + 10))), 0, args.split)
    successes = sum(r["success"] for r in records)
    result["greedy_success"] = successes / len(records)
    result["greedy_episodes"] = len(records)
    print(f"{args.task} {args.checkpoint}: {len(taken)} behaviour steps on {args.episodes} {args.split} layouts")
    print(f"  greedy bins within one bin of the behaviour's action, all 4: {result['model_vs_taken_all']:.3f}; "
          f"of its intended (noise-free) action: {result['model_vs_intended_all']:.3f} "
          f"(per dim {result['model_vs_intended_per_dim']})")
    print(f"  the behaviour's own actions within one bin of its intended ones: {result['taken_vs_intended_all']:.3f} "
          f"(per dim {result['taken_vs_intended_per_dim']})")
    print(f"  mean |bin - intended bin| per dim: model {result['model_bin_error_per_dim']}, "
          f"behaviour's taken actions {result['taken_bin_error_per_dim']}")
    print(f"  mean |decoded action - intended action| per dim (action units; 1 = 5 cm): "
          f"{result['model_action_error_per_dim']}")
    print(f"  greedy success on the same layouts: {successes}/{len(records)}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
