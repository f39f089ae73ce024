"""WebShop task: buy the product an instruction describes in an offline re-implementation of WebShop.

Raw reward: WebShop's purchase score in [0, 1] on the "Buy Now" step, 0 elsewhere (so the raw return is
the final score, and it is also the unit reward). Success: the episode ended with a purchase scoring 1.
Papers report the score x100.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from envs.base import ScoreNormalizer, Task
from envs.webshop.shopper import Shopper, ShopperParams

MAX_STEPS = 15
NUM_EVAL_INSTANCES = 100

DEFAULT_BEHAVIOUR_PARAMS: dict[str, Any] = {
    "query_word_keep": 0.5,
    "p_random_product": 0.5,
    "p_next_page": 0.1,
    "p_random_option": 0.45,
    "p_skip_option": 0.2,
    "p_browse": 0.2,
    "p_early_buy": 0.2,
    "p_verify": 0.3,
}


def make_behaviour(**params: Any) -> Shopper:
    """The behaviour policy: a `Shopper` with the given noise knobs (see `ShopperParams`)."""
    return Shopper(ShopperParams(**{"max_steps": MAX_STEPS, **params}))


def make_solver() -> Shopper:
    """The strong scripted solver used to measure `normalizer.best`."""
    return Shopper(ShopperParams(max_steps=MAX_STEPS))


def unit_rewards(raw_rewards: Sequence[float], terminated: bool) -> list[float]:
    """Raw rewards are already in [0, 1] with only the final step non-zero: the unit reward is the raw one."""
    return [float(r) for r in raw_rewards]


def success(raw_rewards: Sequence[float], terminated: bool) -> bool:
    return bool(terminated) and sum(raw_rewards) >= 1.0 - 1e-9


TASK = Task(
    name="webshop",
    env_id="qsft/WebShop-v0",
    version="1",
    max_steps=MAX_STEPS,
    num_eval_instances=NUM_EVAL_INSTANCES,
    make_behaviour=make_behaviour,
    default_behaviour_params=DEFAULT_BEHAVIOUR_PARAMS,
    unit_rewards=unit_rewards,
    success=success,
    # average: default behaviour on 3,000 training episodes (seeds 0-2999); best: `make_solver()` on the
    # 100 held-out instructions (`python -m envs.measure webshop --episodes 3000`).
    normalizer=ScoreNormalizer(worst=0.0, average=0.6052, best=0.9392),
    make_solver=make_solver,
    env_kwargs={"max_steps": MAX_STEPS},
    has_admissible_actions=True,
)

__all__ = ["TASK", "make_behaviour", "make_solver"]
