"""`qsft/WebShop-v0`: WebShop (Yao et al. 2022) as an offline gymnasium environment.

The agent gets a shopping instruction on the search page and acts with `search[query]` (on the search
page only, where WebShop's page has its search box; WebShop's text env also accepted it elsewhere) and
`click[button]`, where a button is any clickable of the current page: "Back to Search",
"< Prev", "Next >", a product's ASIN on a results page, an option value, "Description", "Features",
"Reviews" or "Buy Now" on an item page. Clicks are case-insensitive. The page flow is WebShop's: a search
gives the top 50 BM25 results, 10 per page; "< Prev" goes back one page (results page -> previous
results page, item page -> its results page, sub page -> its item page); clicking an option selects it
for its group; "Buy Now" ends the episode with WebShop's reward (`reward.py`), given on that step only
(all other steps give 0). An invalid action costs a step, leaves the page as it was and is answered with
a one-line explanation. The episode is truncated after `max_steps` steps.

Observations are the newly seen page in WebShop's simple text mode (`pages.py`). With `compact=True`
(default) the instruction appears only on the first page, and selecting an option is answered with
"You have clicked <value>." instead of the whole item page again; `compact=False` gives WebShop's full
pages (instruction on every page, item page re-rendered). Results show titles cut to `title_chars`.
`info["admissible_actions"]` lists the valid actions: "search[...]" on the search page (any query),
"click[<label>]" for each clickable elsewhere.

Data: by default a generated catalog (`generate.py`: 5,000 products, ~9,900 training and 100 held-out
instructions); with `data_dir=` the real WebShop files found there (`real_data.py`).
"""

from __future__ import annotations

import re
import string
import unicodedata
from functools import lru_cache
from typing import Any, ClassVar

import gymnasium
from gymnasium.spaces import Text

from envs.base import reset_instance
from envs.webshop import pages
from envs.webshop.catalog import Catalog, Goal, Product
from envs.webshop.generate import generated_catalog
from envs.webshop.real_data import load_webshop_catalog
from envs.webshop.reward import purchase_reward
from envs.webshop.search import SearchEngine

CHARSET = string.printable
MAX_OBS_CHARS = 16384
MAX_ACTION_CHARS = 1024
SEARCH_ACTION = "search[...]"

_ACTION = re.compile(r"(search|click)\[(.*)\]", re.IGNORECASE | re.DOTALL)


@lru_cache(maxsize=4)
def load_shop(data_dir: str | None = None, human_goals: bool = True, num_products: int | None = None,
              num_eval: int = 100) -> tuple[Catalog, SearchEngine]:
    """The catalog and its search index, built once per process and argument set."""
    if data_dir is None:
        catalog = generated_catalog(num_eval=num_eval)
    else:
        catalog = load_webshop_catalog(data_dir, human_goals=human_goals, num_products=num_products,
                                       num_eval=num_eval)
    return catalog, SearchEngine(catalog.products)


def _printable(text: str, limit: int) -> str:
    """ASCII-fold `text` and drop characters outside the observation charset, then cut it to `limit`."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(c for c in folded if c in CHARSET)[:limit]


class WebShopEnv(gymnasium.Env):
    """A WebShop session: find and buy the product the instruction describes (see the module docstring)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"]}

    def __init__(self, max_steps: int = 15, data_dir: str | None = None, compact: bool = True,
                 title_chars: int = 60, human_goals: bool = True, num_products: int | None = None,
                 num_eval: int = 100, render_mode: str | None = None) -> None:
        if render_mode not in (None, "ansi"):
            raise ValueError(f"unsupported render_mode {render_mode!r}")
        self.catalog, self.engine = load_shop(None if data_dir is None else str(data_dir), human_goals,
                                              num_products, num_eval)
        self.max_steps = max_steps
        self.compact = compact
        self.title_chars = title_chars
        self.render_mode = render_mode
        self.observation_space = Text(max_length=MAX_OBS_CHARS, min_length=0, charset=CHARSET)
        self.action_space = Text(max_length=MAX_ACTION_CHARS, min_length=0, charset=CHARSET)
        self._goal: Goal | None = None
        self._observation = ""

    # ---- gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        self._split, self._index = reset_instance(
            options, {split: len(self.catalog.goals(split)) for split in ("train", "eval")}, self.np_random)
        self._goal = self.catalog.goals(self._split)[self._index]
        self._steps = 0
        self._done = False
        self._results: list[Product] = []
        self._page_no = 1
        self._product: Product | None = None
        self._options: dict[str, str] = {}
        self._page = pages.search_page(self._goal.instruction_text)
        self._observation = self._show(self._page)
        return self._observation, self._info()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self._goal is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            return "The episode is over; call reset().", 0.0, True, False, self._info()
        self._steps += 1
        text = " ".join(str(action).split())
        observation, reward, terminated, extra = self._act(text)
        truncated = not terminated and self._steps >= self.max_steps
        self._done = terminated or truncated
        self._observation = _printable(observation, MAX_OBS_CHARS)
        info = {**self._info(), "valid_action": True, **extra}
        return self._observation, reward, terminated, truncated, info

    def render(self) -> str | None:
        return self._observation if self.render_mode == "ansi" else None

    # ---- page logic
    def _act(self, text: str) -> tuple[str, float, bool, dict[str, Any]]:
        """Apply one normalized action: (observation, reward, terminated, extra info)."""
        match = _ACTION.fullmatch(text)
        if match is None:
            return self._invalid("use search[query] on the search page or click[button], "
                                 "e.g. click[Buy Now].")
        name, arg = match.group(1).lower(), match.group(2).strip()
        if name == "search":
            if self._page.kind != "search":
                return self._invalid("search is only possible on the search page; "
                                     "click[Back to Search] first.")
            if not arg:
                return self._invalid("the search query is empty.")
            self._results = self.engine.search(arg.lower())
            return self._goto(self._results_page(1))
        label = {c.lower(): c for c in self._page.clickables}.get(arg.lower())
        if label is None:
            return self._invalid(f'"{arg[:100]}" is not clickable on this page.')
        return self._click(label)

    def _click(self, label: str) -> tuple[str, float, bool, dict[str, Any]]:
        kind = self._page.kind
        if label == pages.BACK_TO_SEARCH:
            return self._goto(pages.search_page(self._goal.instruction_text))
        if label == pages.NEXT:
            return self._goto(self._results_page(self._page_no + 1))
        if label == pages.PREV:
            if kind == "results":
                return self._goto(self._results_page(self._page_no - 1))
            if kind == "item":
                return self._goto(self._results_page(self._page_no))
            return self._goto(pages.item_page(self._product))
        if kind == "results":
            self._product = self.catalog.by_asin[label]
            self._options = {}
            return self._goto(pages.item_page(self._product))
        if label in pages.SUB_PAGES:
            return self._goto(pages.sub_page(self._product, label))
        if label == pages.BUY_NOW:
            return self._buy()
        group = [g for g, values in self._product.options.items() if label in values][-1]
        self._options[group] = label
        if self.compact:
            return f"You have clicked {label}.", 0.0, False, {}
        return self._goto(pages.item_page(self._product))

    def _buy(self) -> tuple[str, float, bool, dict[str, Any]]:
        reward, breakdown = purchase_reward(self._product, self._goal, self._options)
        self._page = pages.done_page(reward)
        extra = {"reward_info": breakdown, "goal": self._goal.to_json(),
                 "purchased": {"asin": self._product.asin, "options": dict(self._options),
                               "price": self._product.price}}
        return self._page.text(), float(reward), True, extra

    def _results_page(self, page_no: int) -> pages.Page:
        self._page_no = page_no
        return pages.results_page(self._results, page_no, self.title_chars)

    def _goto(self, page: pages.Page) -> tuple[str, float, bool, dict[str, Any]]:
        self._page = page
        return self._show(page), 0.0, False, {}

    def _show(self, page: pages.Page) -> str:
        text = page.text()
        if not self.compact and page.kind not in ("search", "done"):
            text = pages.SEP.join(("Instruction:", self._goal.instruction_text, text))
        return _printable(text, MAX_OBS_CHARS)

    @staticmethod
    def _invalid(reason: str) -> tuple[str, float, bool, dict[str, Any]]:
        return f"Invalid action: {reason}", 0.0, False, {"valid_action": False}

    def _info(self) -> dict[str, Any]:
        if self._page.kind == "search":
            admissible = [SEARCH_ACTION]
        else:
            admissible = [f"click[{c}]" for c in self._page.clickables]
        return {"split": self._split, "instance": self._index, "page": self._page.kind,
                "admissible_actions": admissible, "steps": self._steps}
