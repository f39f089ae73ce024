"""Why a WebShop policy does not buy: scripted references, and a checkpoint's choice on the data's results pages.

    python benchmarks/webshop_probe.py [--checkpoint RUN/bc/checkpoint --data RUN/data] [--pages-from 40]

1. References on the held-out instructions (no learning): the scripted `Shopper` with its noise knobs set to search
   the instruction's words, open the best-ranked result within the price (or a random one), and buy at once. They
   show what a policy that merely opens a product scores.
2. With a checkpoint (BC's): at the results pages of the first `--pages-from` training episodes of `--data`, the
   probability it gives the products among the page's clickables (`LMPolicy.rank`, normalised over the page, T=1),
   against the behaviour, which opened a product at most of them; and, where the behaviour opened one, the
   checkpoint's log-probability of each token of that product's ID given the page (copying it would score ~0).
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from envs.base import play
from envs.webshop import NUM_EVAL_INSTANCES, pages
from envs.webshop.env import WebShopEnv
from envs.webshop.shopper import Shopper, ShopperParams

NAVIGATION = tuple(f"click[{label}]" for label in (pages.BACK_TO_SEARCH, pages.NEXT, pages.PREV))


def reference_score(random_product: bool) -> str:
    """Mean score ± 95% CI on the held-out instructions of a shopper that opens the best-ranked result within the
    price (or a random result) and buys at once."""
    env = WebShopEnv()
    shopper = Shopper(ShopperParams(p_verify=0.0, p_early_buy=1.0, p_random_product=float(random_product)))
    scores = [play(env, shopper, seed=i, options={"split": "eval", "index": i}).raw_return
              for i in range(NUM_EVAL_INSTANCES)]
    return f"{statistics.mean(scores):.3f} ± {1.96 * statistics.stdev(scores) / math.sqrt(len(scores)):.3f}"


def product_mass(checkpoint: str, data: str, episodes: int) -> tuple[int, float, float, list[float]]:
    """(results pages, the checkpoint's mean probability on the products there, the behaviour's product rate,
    the mean log-probability of each token of the clicked product's action)."""
    import pyarrow.fs as pafs
    import torch

    import envs
    from pipeline.data import group_episodes, read_shard_rows
    from pipeline.models import load_model
    from pipeline.policy import LMPolicy, PolicySpec

    policy = LMPolicy(PolicySpec(checkpoint=checkpoint, temperature=1.0), envs.get_task("webshop"))
    model = load_model(checkpoint).eval()
    loaded = []
    for shard in sorted(glob.glob(os.path.join(data, "*.parquet"))):
        loaded += group_episodes(read_shard_rows(shard, pafs.LocalFileSystem()), data)
        if len(loaded) >= episodes:
            break
    masses, behaviour_opened, token_log_probs = [], [], {}
    for episode in loaded[:episodes]:
        segments = [policy.segment(episode.observations[0])]
        for t, action in enumerate(episode.actions):
            info = episode.infos[t]
            if info.get("page") == "results":
                candidates = info["admissible_actions"]
                scores = policy.rank(policy.context(segments), candidates)
                top = max(scores)
                weights = [math.exp(s - top) for s in scores]
                masses.append(sum(w for c, w in zip(candidates, weights) if c not in NAVIGATION) / sum(weights))
                behaviour_opened.append(action not in NAVIGATION)
                if action not in NAVIGATION:
                    context, ids = policy.context(segments).ids, policy.codec.action_ids(action)
                    with torch.no_grad():
                        log_p = model(input_ids=torch.tensor([context + ids])).logits[0].float().log_softmax(-1)
                    for k, token in enumerate(ids):
                        token_log_probs.setdefault(k, []).append(log_p[len(context) - 1 + k, token].item())
            segments.append(policy.segment(episode.observations[t + 1], action))
    per_token = [statistics.mean(token_log_probs[k]) for k in sorted(token_log_probs)]
    return len(masses), statistics.mean(masses), statistics.mean(behaviour_opened), per_token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint")
    parser.add_argument("--data")
    parser.add_argument("--pages-from", type=int, default=40, help="training episodes whose results pages to read")
    args = parser.parse_args()
    print(f"held-out references (n={NUM_EVAL_INSTANCES} instructions): best-ranked result {reference_score(False)}, "
          f"random result {reference_score(True)}")
    if args.checkpoint:
        pages, mass, opened, per_token = product_mass(args.checkpoint, args.data, args.pages_from)
        print(f"{pages} results pages: the checkpoint's probability on the products {mass:.3f}; "
              f"the behaviour opened a product at {opened:.0%} of them")
        print("log-prob of each token of the opened product's action (click [ B 0 ... ] <|eot|>):",
              ", ".join(f"{x:.2f}" for x in per_token))


if __name__ == "__main__":
    main()
