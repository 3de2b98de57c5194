"""The shopper model behind the synthetic data, and the exact likelihood that makes its oracle.

Every session belongs to a latent class: three browser types that never add to cart, and four
shopper types (quick or researcher, crossed with buyer or not). A buyer class never leaves before
its purchase; a non-buyer class never purchases. Events are generated one collapsed event at a time
(a detail+pageview pair counts once, as in `session_events`): an action drawn from a softmax whose
logits depend on the class and on what has been observed so far, then a time gap from a truncated
log-normal, then, for a product view, whether the shopper stays in the current product's category.

Every random choice is either a function of observed quantities with a class-dependent law (action,
gap, staying in the category) or has a law that is the same for all classes (which SKU, which URL).
So the posterior over classes given an observed prefix is exact: accumulate, for each class, the log
probability of each observed action, gap and move, and apply Bayes' rule. The true
P(purchase | prefix) is the posterior mass of the buyer classes. Browser classes drop out as soon as
an add is seen, which is where every prediction point of the intent task lies.

Planted signal that counts alone cannot see: after the first add, buyers speed up and stay in the
category, non-buyers slow down the longer it has been since the add and drift to other categories;
buyers add cheaper products, non-buyers pricier ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr, ndtri

from smallboat.schema import SESSION_GAP_MS

PAGEVIEW, DETAIL, ADD, REMOVE, PURCHASE, END = range(6)
ACTION_NAMES = ("pageview", "detail", "add", "remove", "purchase", "end")
N_ACTIONS = 6
NEG_INF = -np.inf

MIN_GAP_S = 1.0
MAX_GAP_S = SESSION_GAP_MS / 1000 - 1.0  # under the inactivity cut, so a session never splits

CLASS_NAMES = (
    "browse_short",
    "browse_mid",
    "browse_long",
    "quick_window",
    "quick_buyer",
    "research_window",
    "research_buyer",
)
BROWSERS = np.array([0, 1, 2])
SHOPPERS = np.array([3, 4, 5, 6])


def _a(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


@dataclass(frozen=True)
class Dynamics:
    """Per-class parameters (arrays indexed by class, order of CLASS_NAMES)."""

    # Class prior: 95.5% browsers; shoppers are split so that ~4.35% of sessions add and ~1.08% buy.
    prior: np.ndarray = field(
        default_factory=lambda: _a(0.5095, 0.3325, 0.1135, 0.0178, 0.0054, 0.0183, 0.0054)
    )
    is_buyer: np.ndarray = field(default_factory=lambda: np.array([0, 0, 0, 0, 1, 0, 1], bool))
    # Action logits: intercepts (pageview is the reference at 0).
    detail: np.ndarray = field(default_factory=lambda: _a(-0.65, -0.65, -0.65, 0.2, 0.2, 0.5, 0.5))
    add: np.ndarray = field(
        default_factory=lambda: _a(NEG_INF, NEG_INF, NEG_INF, -0.9, -0.7, -1.7, -1.4)
    )
    add_after_detail: np.ndarray = field(default_factory=lambda: _a(0, 0, 0, 1.2, 1.2, 1.2, 1.2))
    add_price: np.ndarray = field(default_factory=lambda: _a(0, 0, 0, 0.9, -0.9, 0.9, -0.9))
    add_refill: np.ndarray = field(default_factory=lambda: _a(0, 0, 0, -0.5, 1.5, -0.5, 1.5))
    add_again: np.ndarray = field(default_factory=lambda: _a(0, 0, 0, -2.4, -2.7, -2.4, -2.7))
    remove: np.ndarray = field(default_factory=lambda: _a(-4.9, -4.9, -4.9, -2.6, -3.6, -2.8, -3.8))
    remove_late: np.ndarray = field(default_factory=lambda: _a(0, 0, 0, 1.8, 0.0, 1.8, 0.0))
    purchase: np.ndarray = field(
        default_factory=lambda: _a(NEG_INF, NEG_INF, NEG_INF, NEG_INF, -1.3, NEG_INF, -2.0)
    )
    purchase_late: np.ndarray = field(default_factory=lambda: _a(0, 0, 0, 0, 1.0, 0, 1.4))
    end: np.ndarray = field(
        default_factory=lambda: _a(0.40, -0.95, -2.32, -3.0, NEG_INF, -3.4, NEG_INF)
    )
    end_after_add: np.ndarray = field(default_factory=lambda: _a(0, 0, 0, 0.9, 0, 0.9, 0))
    end_late: np.ndarray = field(default_factory=lambda: _a(0, 0, 0, 0.9, 0, 0.9, 0))
    # Time gaps: log-seconds ~ Normal(mu, sigma), truncated to [MIN_GAP_S, MAX_GAP_S].
    gap_mu: np.ndarray = field(default_factory=lambda: _a(3.6, 3.6, 3.9, 3.0, 3.0, 4.0, 4.0))
    gap_after_add: np.ndarray = field(default_factory=lambda: _a(0, 0, 0, 0.1, -0.5, 0.1, -0.5))
    gap_late: np.ndarray = field(default_factory=lambda: _a(0, 0, 0, 1.0, -0.2, 1.0, -0.2))
    gap_sigma: np.ndarray = field(default_factory=lambda: _a(1.2, 1.2, 1.2, 1.0, 1.0, 1.0, 1.0))
    # Product views: log-odds of staying in the current product's leaf category.
    stay: np.ndarray = field(default_factory=lambda: _a(0.4, 0.4, 0.6, 0.4, 0.4, 0.6, 0.6))
    stay_after_add: np.ndarray = field(default_factory=lambda: _a(0, 0, 0, -0.2, 1.3, -0.2, 1.3))
    stay_late: np.ndarray = field(default_factory=lambda: _a(0, 0, 0, -1.6, 0.4, -1.6, 0.4))


@dataclass
class Observed:
    """What a session's prefix shows, as features: one entry per session, all shape (N, 1)."""

    n: np.ndarray  # events so far
    viewed: np.ndarray  # a product has been viewed
    last_detail: np.ndarray  # the previous event was a product view
    in_cart: np.ndarray  # the cart is not empty
    after_add: np.ndarray  # the first add has happened
    late: np.ndarray  # min(events since the first add, 8) / 8; 0 before the first add
    price: np.ndarray  # observed price feature of the current product, in [-1, 1]


def action_logprobs(dyn: Dynamics, obs: Observed, classes: np.ndarray) -> np.ndarray:
    """log P(action | observed prefix, class) as (N, K, N_ACTIONS).

    `classes` is (N, 1) (each session's own class, to simulate) or (1, K) (every class, to score).
    """

    def p(name: str) -> np.ndarray:
        return np.asarray(getattr(dyn, name))[classes]

    n_rows = max(obs.n.shape[0], 1)
    shape = (n_rows, classes.shape[1])
    logits = np.zeros((*shape, N_ACTIONS))
    logits[..., DETAIL] = p("detail")
    with np.errstate(invalid="ignore"):
        add = (
            p("add")
            + p("add_after_detail") * obs.last_detail
            + p("add_price") * obs.price
            + p("add_refill") * (obs.after_add & ~obs.in_cart)
            + p("add_again") * obs.in_cart
        )
    logits[..., ADD] = np.where(obs.viewed, add, NEG_INF)
    logits[..., REMOVE] = np.where(obs.n >= 1, p("remove") + p("remove_late") * obs.late, NEG_INF)
    purchase = p("purchase") + p("purchase_late") * obs.late
    logits[..., PURCHASE] = np.where(obs.in_cart, purchase, NEG_INF)
    end = p("end") + p("end_after_add") * obs.after_add + p("end_late") * obs.late
    logits[..., END] = np.where(obs.n >= 1, end, NEG_INF)
    top = logits.max(axis=-1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(axis=-1, keepdims=True))


def _gap_params(dyn: Dynamics, obs: Observed, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = (
        dyn.gap_mu[classes]
        + dyn.gap_after_add[classes] * obs.after_add
        + dyn.gap_late[classes] * obs.late
    )
    return mu, np.broadcast_to(dyn.gap_sigma[classes], mu.shape)


_LO, _HI = np.log(MIN_GAP_S), np.log(MAX_GAP_S)


def sample_gap_ms(
    dyn: Dynamics, obs: Observed, classes: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Time before the next event in whole milliseconds, from each session's own class."""
    mu, sigma = _gap_params(dyn, obs, classes)
    a, b = ndtr((_LO - mu) / sigma), ndtr((_HI - mu) / sigma)
    z = ndtri(a + rng.random(mu.shape) * (b - a))
    gap_ms = np.rint(np.exp(mu + sigma * z) * 1000.0)
    return np.clip(gap_ms, MIN_GAP_S * 1000, MAX_GAP_S * 1000)[:, 0].astype(np.int64)


def gap_loglik(dyn: Dynamics, obs: Observed, classes: np.ndarray, gap_ms: np.ndarray) -> np.ndarray:
    """log density of the observed gaps (N,) under every class in `classes` (1, K): (N, K)."""
    mu, sigma = _gap_params(dyn, obs, classes)
    log_gap = np.log(gap_ms / 1000.0)[:, None]
    zs = (log_gap - mu) / sigma
    norm = np.log(ndtr((_HI - mu) / sigma) - ndtr((_LO - mu) / sigma))
    return -0.5 * zs**2 - 0.5 * np.log(2 * np.pi) - np.log(sigma) - log_gap - norm


def stay_logprob(
    dyn: Dynamics, obs: Observed, classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(log P(stay in category), log P(leave)) under `classes`, each (N, K)."""
    logit = (
        dyn.stay[classes]
        + dyn.stay_after_add[classes] * obs.after_add
        + dyn.stay_late[classes] * obs.late
    )
    return log_sigmoid(logit), log_sigmoid(-logit)


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    """log(sigmoid(x)), stable for large |x|."""
    return -np.logaddexp(0.0, -x)


__all__ = [
    "ACTION_NAMES",
    "ADD",
    "BROWSERS",
    "CLASS_NAMES",
    "DETAIL",
    "END",
    "PAGEVIEW",
    "PURCHASE",
    "REMOVE",
    "SHOPPERS",
    "Dynamics",
    "Observed",
    "action_logprobs",
    "gap_loglik",
    "sample_gap_ms",
    "stay_logprob",
]
