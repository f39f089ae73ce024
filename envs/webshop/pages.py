"""WebShop's pages in its simple text mode: the visible strings of a page joined by " [SEP] ".

Each page is a list of segments plus its clickables (the buttons, product links and option radios the
agent may `click[...]`), in the order they appear. The layouts follow WebShop's templates:

    search   WebShop [SEP] Instruction: [SEP] <instruction> [SEP] Search
    results  Back to Search [SEP] Page 1 (Total results: 50) [SEP] Next > [SEP] <ASIN> [SEP] <title>
             [SEP] <price> ...
    item     Back to Search [SEP] < Prev [SEP] <group> [SEP] <value> ... [SEP] <title> [SEP] Price: <price>
             [SEP] Rating: <rating> [SEP] Description [SEP] Features [SEP] Reviews [SEP] Buy Now
    sub page Back to Search [SEP] < Prev [SEP] <description | bullet points | reviews>
    done     Thank you for shopping with us! [SEP] Your score (min 0.0, max 1.0) [SEP] <reward>

WebShop prefixes the results, item and sub pages with "Instruction: [SEP] <instruction>"; the caller
adds that prefix when it wants the full layout (`with_instruction`).
"""

from __future__ import annotations

from dataclasses import dataclass

from envs.webshop.catalog import Product

SEP = " [SEP] "
BACK_TO_SEARCH = "Back to Search"
PREV = "< Prev"
NEXT = "Next >"
BUY_NOW = "Buy Now"
SUB_PAGES = ("Description", "Features", "Reviews")
PRODUCTS_PER_PAGE = 10
MAX_REVIEWS = 5
MAX_TEXT_CHARS = 600


@dataclass(frozen=True)
class Page:
    kind: str   # "search", "results", "item", "description", "features", "reviews" or "done"
    segments: tuple[str, ...]
    clickables: tuple[str, ...]     # display labels, in page order

    def text(self) -> str:
        return SEP.join(self.segments)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def search_page(instruction: str) -> Page:
    return Page("search", ("WebShop", "Instruction:", instruction, "Search"), ())


def results_page(results: list[Product], page: int, title_chars: int) -> Page:
    """Page `page` (1-based) of the results: ten products with truncated titles and prices."""
    shown = results[(page - 1) * PRODUCTS_PER_PAGE: page * PRODUCTS_PER_PAGE]
    buttons = [BACK_TO_SEARCH] + ([PREV] if page > 1 else [])
    if page * PRODUCTS_PER_PAGE < len(results):
        buttons.append(NEXT)
    segments = [BACK_TO_SEARCH, f"Page {page} (Total results: {len(results)})", *buttons[1:]]
    for product in shown:
        segments += [product.asin, _clip(product.title, title_chars), product.price_tag]
    return Page("results", tuple(segments), tuple(buttons + [p.asin for p in shown]))


def item_page(product: Product) -> Page:
    option_segments: list[str] = []
    values: list[str] = []
    for group, group_values in product.options.items():
        option_segments += [group, *group_values]
        values += group_values
    segments = (BACK_TO_SEARCH, PREV, *option_segments, product.title, f"Price: {product.price_tag}",
                f"Rating: {product.rating}", *SUB_PAGES, BUY_NOW)
    return Page("item", segments, (BACK_TO_SEARCH, PREV, *values, *SUB_PAGES, BUY_NOW))


def sub_page(product: Product, name: str) -> Page:
    """The Description, Features or Reviews page of a product."""
    if name == "Description":
        content = [_clip(product.description or "No description found", MAX_TEXT_CHARS)]
    elif name == "Features":
        content = [_clip(b, MAX_TEXT_CHARS // 3) for b in product.bullet_points] or ["No features found"]
    else:
        content = [s for r in product.reviews[:MAX_REVIEWS]
                   for s in (f'"{_clip(r.title, 80)}"', str(r.score), _clip(r.body, MAX_TEXT_CHARS // 3))]
        content = content or ["No reviews found"]
    return Page(name.lower(), (BACK_TO_SEARCH, PREV, *content), (BACK_TO_SEARCH, PREV))


def done_page(reward: float) -> Page:
    segments = ("Thank you for shopping with us!", "Your score (min 0.0, max 1.0)", f"{reward:.4f}")
    return Page("done", segments, ())
