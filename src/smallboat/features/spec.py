"""The tokenisation parameters: what a model bundle records so serving encodes exactly as training.

Every per-event feature is a small integer token; 0 is always padding. Reserved ids below the
first real value mean "not applicable" or "unknown", so a serving request with a SKU the model
never saw still encodes, through an out-of-vocabulary id.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

PAD = 0

ACTIONS: tuple[str, ...] = ("pageview", "detail", "add", "remove", "purchase")
"""Action tokens 1..5 in this order (session_events.action)."""
ACTION_TOKEN: dict[str, int] = {name: i + 1 for i, name in enumerate(ACTIONS)}
COUNTED_ACTIONS: tuple[str, ...] = ACTIONS[:4]
"""The actions a prefix counts (`COUNT_FEATURES`' n_<action>): all but a purchase (it ends one)."""

SKU_NONE, SKU_OOV, SKU_FIRST = 1, 2, 3
"""SKU tokens: 1 for an event without a SKU (a plain pageview), 2 for a SKU outside the training
vocabulary, 3.. for known SKUs."""

PRICE_NONE = 1
"""Price tokens: 1 when unknown (no SKU, or the catalog has no price), 2..11 for deciles 1..10."""

CATEGORY_NONE, CATEGORY_FIRST = 1, 2
"""Top-level category tokens: 1 when unknown, 2.. for the catalog's top-level categories."""

MOVE_NA, MOVE_UNKNOWN, MOVE_SAME, MOVE_OTHER = 1, 2, 3, 4
"""Category move of a product event against the session's previous product event: 1 not
applicable (a pageview, or the session's first product), 2 a category is unknown, 3 the same leaf
category, 4 another one. Whether a shopper keeps to one category is a classic intent signal, and a
learned SKU or category embedding cannot express "equal to the previous one" on its own."""

STAGE_BEFORE_ADD = 1
STAGE_MAX_SINCE_ADD = 8
N_STAGE_TOKENS = STAGE_BEFORE_ADD + (STAGE_MAX_SINCE_ADD + 2) * 2
"""Funnel-stage tokens: 1 + 2 * (events since the first add, capped at 8; -1 before it, + 1) +
(the cart holds something). The same event means different things before and after an add."""

GAP_FIRST = 1
"""Gap tokens: 1 for a session's first event, 2.. for the time since the previous event, bucketed
by `FeatureSpec.gap_edges_s`."""

COUNT_FEATURES: tuple[str, ...] = (
    "n_events",
    "n_pageview",
    "n_detail",
    "n_add",
    "n_remove",
    "duration_s",
)
"""Whole-prefix summary features (the count baseline's inputs; the model sees their log1p)."""


def _default_gap_edges() -> tuple[float, ...]:
    # 20 log-spaced edges from 1 s to the 30-minute session cut: the gaps in the data are
    # log-normal-like, so equal steps in log time keep every bucket populated.
    return tuple(float(round(x, 3)) for x in np.geomspace(1.0, 1800.0, 20))


@dataclass(frozen=True)
class FeatureSpec:
    """How a session prefix becomes model inputs (stored in every model bundle)."""

    max_events: int = 20  # L: the last L events are kept; >= 11 keeps the first add in view
    min_sku_count: int = 2  # a SKU needs this many training-split events to get its own id
    gap_edges_s: tuple[float, ...] = field(default_factory=_default_gap_edges)

    def __post_init__(self) -> None:
        if self.max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {self.max_events}")
        if list(self.gap_edges_s) != sorted(self.gap_edges_s):
            raise ValueError(f"gap_edges_s must be increasing, got {self.gap_edges_s}")

    @property
    def n_gap_tokens(self) -> int:
        return GAP_FIRST + 1 + len(self.gap_edges_s) + 1

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "gap_edges_s": list(self.gap_edges_s)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(
            max_events=int(data["max_events"]),
            min_sku_count=int(data["min_sku_count"]),
            gap_edges_s=tuple(float(x) for x in data["gap_edges_s"]),
        )
