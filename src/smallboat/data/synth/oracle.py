"""Recompute the synthetic oracles from observed events alone.

`simulate` records P(purchase | prefix) while it generates; this module computes the same posterior
from what a warehouse sees (collapsed actions, timestamps, each product's category path and observed
price bucket). That they agree is the proof that the oracle uses nothing but the observed prefix.
`next_view_stay_path` does the same for the next-item oracle's posterior.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from smallboat.data.synth import dynamics as dy
from smallboat.data.synth.simulate import CART_SLOTS, MAX_EVENTS, MAX_SHOPPER_EVENTS

ACTION_CODES = {"pageview": dy.PAGEVIEW, "detail": dy.DETAIL, "add": dy.ADD, "remove": dy.REMOVE}


@dataclass(frozen=True)
class _Step:
    """Event i of a session as an observer sees it, for the classes being scored."""

    i: int
    action: int
    obs: dy.Observed  # the state before event i
    viewed: bool  # a product was viewed before event i
    logp: np.ndarray  # log P(action | state) per class, every action: (classes, actions)
    terms: tuple[np.ndarray, ...]  # event i's log-likelihood terms per class, in order
    first_add: int  # 1 + index of the first add up to and including event i (0: none yet)


def _steps(
    actions: Sequence[str],
    timestamps_ms: Sequence[int],
    categories: Sequence[str | None],
    price_buckets: Sequence[float | None],
    dyn: dy.Dynamics,
    classes: np.ndarray,
) -> Iterator[_Step]:
    """The one walk both oracles share: the observable state before each event (views, cart,
    price, time since the first add) and the event's log-likelihood under `dynamics` -- its
    action, its gap to the previous event, and for a view after a view, staying in or leaving
    the previous product's category."""
    cur_category: str | None = None
    cur_price = 0.0
    viewed = False
    last_action = -1
    cart_n = 0
    first_add = 0
    for i, (name, ts, category, price) in enumerate(
        zip(actions, timestamps_ms, categories, price_buckets, strict=True)
    ):
        action = ACTION_CODES[name]
        after = first_add > 0
        late = min(i - first_add, 8) / 8.0 if after else 0.0
        obs = dy.Observed(
            n=np.array([[i]]),
            viewed=np.array([[viewed]]),
            last_detail=np.array([[last_action == dy.DETAIL]]),
            in_cart=np.array([[cart_n > 0]]),
            after_add=np.array([[after]]),
            late=np.array([[late]]),
            price=np.array([[cur_price]]),
        )
        logp = dy.action_logprobs(dyn, obs, classes)[0]
        terms = [logp[:, action]]
        if i >= 1:
            gap = np.array([ts - timestamps_ms[i - 1]], dtype=np.int64)
            terms.append(dy.gap_loglik(dyn, obs, classes, gap)[0])
        viewed_before = viewed
        if action == dy.DETAIL:
            if viewed:
                log_stay, log_leave = dy.stay_logprob(dyn, obs, classes)
                terms.append((log_stay if category == cur_category else log_leave)[0])
            viewed = True
            cur_category = category
            cur_price = 0.0 if price is None or np.isnan(price) else (float(price) - 5.5) / 4.5
        elif action == dy.ADD:
            cart_n = min(cart_n + 1, CART_SLOTS)
            first_add = first_add or i + 1
        elif action == dy.REMOVE:
            cart_n = max(cart_n - 1, 0)
        last_action = action
        yield _Step(i, action, obs, viewed_before, logp, tuple(terms), first_add)


def posterior_path(
    actions: Sequence[str],
    timestamps_ms: Sequence[int],
    categories: Sequence[str | None],
    price_buckets: Sequence[float | None],
    dyn: dy.Dynamics | None = None,
) -> np.ndarray:
    """P(purchase | first i events) for i = 1..n of a session cut before its first purchase.

    Defined from the first add on (NaN before it): that is where the intent task predicts.
    `categories` and `price_buckets` describe the product of each event (None for a plain
    pageview, and None for a price the catalog does not show).
    """
    dyn = dyn or dy.Dynamics()
    log_prior = np.log(dyn.prior[dy.SHOPPERS] / dyn.prior[dy.SHOPPERS].sum())
    buyers = dyn.is_buyer[dy.SHOPPERS]
    loglik = np.zeros(len(dy.SHOPPERS))
    out = np.full(len(actions), np.nan)
    shoppers = dy.SHOPPERS[None, :]
    for step in _steps(actions, timestamps_ms, categories, price_buckets, dyn, shoppers):
        for term in step.terms:
            loglik += term
        if step.first_add:  # before the first add, browser classes (not scored here) are possible
            log_post = loglik + log_prior
            post = np.exp(log_post - log_post.max())
            out[step.i] = post[buyers].sum() / post.sum()
    return out


def next_view_stay_path(
    actions: Sequence[str],
    timestamps_ms: Sequence[int],
    categories: Sequence[str | None],
    price_buckets: Sequence[float | None],
    dyn: dy.Dynamics | None = None,
) -> np.ndarray:
    """q[i] = P(event i stays in the previous product's leaf | events 0..i-1, event i is a product
    view), for i = 0..n-1 of a session cut before its first purchase; NaN where event i is not a
    product view or no product was viewed before it (not a next-item example).

    The next-item oracle's one number per example (`next_view.NextViewRanker` turns it and the
    previous product into the ranking): the posterior over every class (browsers view products
    too) given the prefix and that the next event is a view, averaged over the class's stay
    probability. q[i] reads nothing of event i but its being a view: `simulate` records the same
    before drawing the view's SKU.
    """
    dyn = dyn or dy.Dynamics()
    n_classes = len(dyn.prior)
    every = np.arange(n_classes)[None, :]
    limit = np.where(np.isin(np.arange(n_classes), dy.SHOPPERS), MAX_SHOPPER_EVENTS, MAX_EVENTS)
    loglik = np.log(dyn.prior / dyn.prior.sum())
    out = np.full(len(actions), np.nan)
    for step in _steps(actions, timestamps_ms, categories, price_buckets, dyn, every):
        if step.action == dy.DETAIL and step.viewed:
            log_post = np.where(step.i < limit, loglik + step.logp[:, dy.DETAIL], -np.inf)
            post = np.exp(log_post - log_post.max())
            log_stay, _ = dy.stay_logprob(dyn, step.obs, every)
            out[step.i] = float((post * np.exp(log_stay[0])).sum() / post.sum())
        for term in step.terms:
            loglik = loglik + term
    return out
