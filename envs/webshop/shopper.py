"""Scripted shoppers: the strong solver and the noisy behaviour policy, one class with noise knobs.

A `Shopper` reads only what an agent sees (observations, `info["page"]` and `info["admissible_actions"]`).
Its "wanted words" are the instruction's content words without the price clause.

* Search page: searches for the instruction without its price clause; a noisy shopper keeps each
  content word with probability `query_word_keep`.
* Results page: opens the best-ranked unvisited product whose price is within the instruction's limit
  (else the best-ranked unvisited one); a noisy shopper opens a random product (`p_random_product`) or
  turns the page (`p_next_page`). With nothing left to open it turns the page (at most twice) or
  searches again.
* Item page, careful shopper (each episode with probability `p_verify`): the wanted words that are not
  option values must appear in the title, else it reads the Features page too; if more than one is still
  missing, or an option group offers no value the instruction names, it goes back to try the next
  product while its step budget allows. Then it clicks, for each option group, the value the
  instruction names (word-bounded match, else the closest by fuzzy partial ratio), one per step, and
  "Buy Now".
* Item page, noisy shopper: buys at once (`p_early_buy`), or first reads a Description/Features/Reviews
  page (`p_browse`), then picks a random value (`p_random_option`) or none (`p_skip_option`) per group.

The shopper always buys before the step limit (`max_steps`, the environment's). It is seeded
(`reset(seed)`) and deterministic given the seed and the observations.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from rapidfuzz import fuzz

from envs.webshop import pages
from envs.webshop.search import tokenize

_PRICE_CLAUSE = re.compile(r",?\s*and price lower than ([\d.]+) dollars", re.IGNORECASE)
_FILLER_WORDS = frozenset(tokenize("i am i'm looking for need want buy find me it should be is are that "
                                   "which x color size flavor scent style capacity price lower than dollars"))
MISSING_WORDS_TOLERATED = 1   # wanted words a product may lack (often the instruction's own type name)


def content_words(instruction: str) -> set[str]:
    """The words an instruction asks for: its own words less the price clause and the filler words."""
    return set(tokenize(_PRICE_CLAUSE.sub("", instruction))) - _FILLER_WORDS


@dataclass(frozen=True)
class ShopperParams:
    """Noise knobs; the defaults (no noise, always careful) are the strong solver."""

    query_word_keep: float = 1.0
    p_random_product: float = 0.0
    p_next_page: float = 0.0
    p_random_option: float = 0.0
    p_skip_option: float = 0.0
    p_browse: float = 0.0
    p_early_buy: float = 0.0
    p_verify: float = 1.0          # per episode: shop carefully (check products, go back when wrong)
    max_steps: int = 15            # the environment's step limit, so that the shopper buys in time


@dataclass
class _Item:
    """What the shopper knows about the product page it is on."""

    groups: dict[str, list[str]]   # option group -> values
    named: dict[str, list[str]]    # option group -> the values the instruction names
    text: str                      # the title, plus the Features page once read
    pending: bool = False          # waiting to come back from the Features page to decide


def _price(tag: str) -> float:
    numbers = re.findall(r"\d+(?:\.\d+)?", tag)
    return float(numbers[0]) if numbers else float("inf")


def _labels(info: dict[str, Any]) -> list[str]:
    return [a[len("click["):-1] for a in info.get("admissible_actions", []) if a.startswith("click[")]


def _click(label: str) -> str:
    return f"click[{label}]"


class Shopper:
    """A scripted WebShop agent (see the module docstring); implements `BehaviourPolicy`."""

    def __init__(self, params: ShopperParams | None = None, **knobs: Any) -> None:
        self.params = params if params is not None else ShopperParams(**knobs)
        self.reset(0)

    def reset(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.instruction = ""
        self.price_upper = float("inf")
        self.words: set[str] = set()
        self.visited: set[str] = set()
        self.pages_turned = 0
        self.item: _Item | None = None
        self.plan: list[str] = []
        self.careful = self.rng.random() < self.params.p_verify

    def act(self, observation: str, info: dict[str, Any]) -> str:
        page = info.get("page", "search")
        steps_left = self.params.max_steps - int(info.get("steps", 0))
        labels = _labels(info)
        if page == "search":
            self._read_instruction(observation)
            return f"search[{self._query()}]"
        if page == "results":
            return self._on_results(observation, labels)
        if page == "item":
            return self._on_item(observation, labels, steps_left)
        if page == "features" and self.item is not None:
            segments = observation.split(pages.SEP)
            self.item.text += " " + " ".join(segments[segments.index(pages.PREV) + 1:])
        return _click(pages.PREV) if pages.PREV in labels else _click(pages.BACK_TO_SEARCH)

    # ---- reading
    def _read_instruction(self, observation: str) -> None:
        segments = observation.split(pages.SEP)
        if "Instruction:" in segments:
            text = segments[segments.index("Instruction:") + 1]
            limit = _PRICE_CLAUSE.search(text)
            self.price_upper = float(limit.group(1)) if limit else float("inf")
            self.instruction = _PRICE_CLAUSE.sub("", text).strip()
            self.words = content_words(self.instruction)

    def _names(self, value: str) -> bool:
        """Whether the instruction names `value` as a whole phrase."""
        padded = " " + re.sub(r"[,:;!?()]", " ", self.instruction.lower()) + " "
        return re.search(r"(?<![\w-])" + re.escape(value.lower()) + r"(?![\w-])", padded) is not None

    def _read_item(self, segments: list[str], labels: list[str]) -> _Item:
        title_at = next(i - 1 for i, s in enumerate(segments) if s.startswith("Price: "))
        groups: dict[str, list[str]] = {}
        for segment in segments[segments.index(pages.PREV) + 1:title_at]:
            if segment in labels and groups:
                groups[next(reversed(groups))].append(segment)
            else:
                groups[segment] = []
        named = {g: [v for v in values if self._names(v)] for g, values in groups.items()}
        return _Item(groups, named, text=segments[title_at])

    def _missing_words(self, item: _Item) -> set[str]:
        option_words = {w for values in item.groups.values() for v in values for w in tokenize(v)}
        return self.words - option_words - set(tokenize(item.text))

    # ---- acting
    def _query(self) -> str:
        words = self.instruction.split()
        if self.params.query_word_keep < 1.0:
            kept = [w for w in words
                    if w.lower() not in _FILLER_WORDS and self.rng.random() < self.params.query_word_keep]
            words = kept or [self.rng.choice(words)]
        return " ".join(words)

    def _on_results(self, observation: str, labels: list[str]) -> str:
        segments = observation.split(pages.SEP)
        fresh = [(_price(segments[i + 2]) <= self.price_upper, segment)
                 for i, segment in enumerate(segments[:-2])
                 if segment in labels and segment not in (pages.BACK_TO_SEARCH, pages.PREV, pages.NEXT)
                 and segment not in self.visited]
        can_turn = pages.NEXT in labels and self.pages_turned < 2
        if can_turn and (not fresh or self.rng.random() < self.params.p_next_page):
            self.pages_turned += 1
            return _click(pages.NEXT)
        if not fresh:
            self.visited.clear()
            return _click(pages.BACK_TO_SEARCH)
        if self.rng.random() < self.params.p_random_product:
            _, asin = self.rng.choice(fresh)
        else:
            _, asin = max(fresh, key=lambda p: p[0])   # the best-ranked affordable one
        self.visited.add(asin)
        self.item = None
        return _click(asin)

    def _on_item(self, observation: str, labels: list[str], steps_left: int) -> str:
        segments = observation.split(pages.SEP)
        if self.item is None:
            self.item = self._read_item(segments, labels)
            self.plan = self._arrive(steps_left)
        elif self.item.pending and pages.BUY_NOW in segments:
            self.item.pending = False
            self.plan = self._decide(steps_left)
        if self.plan and len(self.plan) < steps_left:
            return self.plan.pop(0)
        return _click(pages.BUY_NOW)

    def _arrive(self, steps_left: int) -> list[str]:
        """The first clicks on a freshly opened item page."""
        p, item = self.params, self.item
        if self.careful:
            if self._missing_words(item) and steps_left > 3 + len(item.groups):
                item.pending = True
                return [_click("Features")]
            return self._decide(steps_left)
        if self.rng.random() < p.p_early_buy:
            return []
        browse = [_click(self.rng.choice(pages.SUB_PAGES))] if self.rng.random() < p.p_browse else []
        return browse + self._choose_options()

    def _decide(self, steps_left: int) -> list[str]:
        """Careful shopper: go back if the product misses wanted words or options, else pick options."""
        item = self.item
        wrong = len(self._missing_words(item)) > MISSING_WORDS_TOLERATED or any(
            values and not item.named[g] for g, values in item.groups.items())
        if wrong and steps_left > 6 + len(item.groups):
            return [_click(pages.PREV)]
        return self._choose_options()

    def _choose_options(self) -> list[str]:
        p, item = self.params, self.item
        plan = []
        for group, values in item.groups.items():
            if not values or self.rng.random() < p.p_skip_option:
                continue
            if self.rng.random() < p.p_random_option:
                value = self.rng.choice(values)
            elif item.named[group]:
                value = max(item.named[group], key=len)
            else:
                value = max(values, key=lambda v: fuzz.partial_ratio(v, self.instruction))
            plan.append(_click(value))
        return plan
