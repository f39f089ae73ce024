"""How well has Q-SFT learned the maze's Q-values? Compare its ratios with the exact Q* on training instances.

On the maze, Q* is known in closed form: the unit reward is 1 on the move that reaches the goal, discounted
per turn, so Q*(s, a) = gamma^d(s') with s' the cell the move leads to and d the shortest-path distance
from s' to the goal. Q-SFT's estimate at the move's first token is p_theta(a|s) / pi_beta(a|s) (the ratio the
Bellman target maximises over pi_beta's support). The probe replays the behaviour policy on training-split
instances (never the held-out ones) and, at every state, reads both checkpoints on the four moves:

    support      moves with pi_beta > eps (what the Bellman max and the extraction see)
    |ratio - Q*| mean absolute error of the estimate on the support, and its mean bias
    bc_kl        KL(true behaviour || BC) over the four moves, nats per state: the ratio's denominator error
    candidate    the same at the move's last token (<|eot|>, which carries the turn's reward and bootstrap):
                 Q(s, a) = p_theta / pi_beta of <|eot|> after the move, the candidate-level reading of
                 `LMPolicy.rank`; its denominator is pi_beta(<|eot|> | s, a) ~ 1, not pi_beta(a|s)
    decisions    at states where the behaviour's favourite (the beeline) is not a shortest-path move but a
                 shortest-path move is in the support: how often each model prefers the shortest-path move
                 (BC by pi_beta, Q-SFT by the first-token ratio, the candidate-level Q, and the paper's score)

    python benchmarks/maze_q_probe.py --bc RUN/bc/checkpoint --qsft RUN/qsft/checkpoint [--task maze_small]
"""

from __future__ import annotations

import argparse
import json

import gymnasium
import numpy as np
import torch

import envs
from envs.maze.policies import ACTIONS, beeline_move, shortest_path_move
from pipeline.policy import LMPolicy, PolicySpec


def first_token_ids(policy: LMPolicy) -> list[int]:
    firsts = [policy.codec.action_ids(a)[0] for a in ACTIONS]
    if len(set(firsts)) != len(firsts):
        raise SystemExit(f"the moves do not start with distinct tokens: {firsts}")
    return firsts


@torch.no_grad()
def candidate_values(policy: LMPolicy, ids: list[int]) -> np.ndarray:
    """Q(s, a) of each move read at its last token: p_theta / pi_beta of <|eot|> after the move's text."""
    values = []
    for action in ACTIONS:
        x = torch.tensor([ids + policy.codec.action_ids(action)])
        logp = [m(input_ids=x, attention_mask=torch.ones_like(x)).logits[0, -2].float().log_softmax(-1)
                for m in (policy.lm, policy.q)]
        values.append(float((logp[1][policy.codec.eot_id] - logp[0][policy.codec.eot_id]).exp()))
    return np.array(values)


@torch.no_grad()
def move_probabilities(policy: LMPolicy, ids: list[int], moves: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """pi_beta and p_theta of each move's first token after the context `ids`."""
    x = torch.tensor([ids])
    probs = [m(input_ids=x, attention_mask=torch.ones_like(x)).logits[0, -1].float().softmax(-1)[moves].numpy()
             for m in (policy.lm, policy.q)]
    return probs[0], probs[1]


def probe(task_name: str, bc: str, qsft: str, episodes: int, gamma: float, eps: float, beta: float, seed: int) -> dict:
    task = envs.get_task(task_name)
    policy = LMPolicy(PolicySpec(checkpoint=bc, q=qsft), task)
    moves = first_token_ids(policy)
    behaviour = task.make_behaviour(**task.default_behaviour_params)
    env = gymnasium.make(task.env_id, **task.env_kwargs).unwrapped
    layout, num_train = env.layout, len(env.layout.splits["train"])
    errors, biases, kls, bc_right, ratio_right, paper_right, support_sizes = [], [], [], [], [], [], []
    candidate_errors, candidate_right = [], []
    for episode in range(episodes):
        behaviour.reset(seed + episode)
        observation, info = env.reset(seed=seed + episode, options={"split": "train", "index": episode % num_train})
        segments = [policy.segment(observation)]
        done = False
        while not done:
            position, goal = info["position"], info["goal"]
            pi_beta, p_theta = move_probabilities(policy, policy.context(segments).ids, moves)
            dist = layout.distances_to(goal)
            q_star = np.array([gamma ** dist[layout.move(position, a)] for a in ACTIONS])
            ratio = p_theta / pi_beta
            q_candidate = candidate_values(policy, policy.context(segments).ids)
            true = behaviour.probabilities(position, goal)
            kls.append(float(np.sum(true * np.log(true / (pi_beta / pi_beta.sum())))))
            support = pi_beta > eps
            support_sizes.append(int(support.sum()))
            errors.extend(np.abs(ratio - q_star)[support])
            biases.extend((ratio - q_star)[support])
            candidate_errors.extend(np.abs(q_candidate - q_star)[support])
            best = ACTIONS.index(shortest_path_move(position, goal, layout))
            bee = ACTIONS.index(beeline_move(position, goal))
            if q_star[bee] < q_star[best] and support[best] and support[bee]:
                bc_right.append(pi_beta[best] > pi_beta[bee])
                ratio_right.append(ratio[best] > ratio[bee])
                candidate_right.append(q_candidate[best] > q_candidate[bee])
                paper = np.log(pi_beta) + beta * p_theta
                paper_right.append(paper[best] > paper[bee])
            action = behaviour.act(observation, info)
            observation, _, terminated, truncated, info = env.step(action)
            segments.append(policy.segment(observation, action))
            done = terminated or truncated
    return {"states": len(support_sizes), "mean_support": float(np.mean(support_sizes)),
            "ratio_abs_error": float(np.mean(errors)), "ratio_bias": float(np.mean(biases)),
            "candidate_abs_error": float(np.mean(candidate_errors)), "bc_kl": float(np.mean(kls)),
            "decision_states": len(bc_right), "bc_prefers_shortest": float(np.mean(bc_right)),
            "ratio_prefers_shortest": float(np.mean(ratio_right)),
            "candidate_prefers_shortest": float(np.mean(candidate_right)),
            f"paper_beta{beta:g}_prefers_shortest": float(np.mean(paper_right))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="maze", choices=("maze", "maze_small"))
    parser.add_argument("--bc", required=True)
    parser.add_argument("--qsft", required=True)
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--gamma", type=float, default=0.9)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--beta", type=float, default=16.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(json.dumps(probe(args.task, args.bc, args.qsft, args.episodes, args.gamma, args.eps, args.beta, args.seed), indent=1))


if __name__ == "__main__":
    main()
