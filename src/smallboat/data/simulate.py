"""Simulate a batch of sessions from the shopper model, scoring the oracle as the events happen.

All sessions of a batch advance together one collapsed event per step (vectorised over sessions);
the likelihood of what each shopper session shows is accumulated under every shopper class, and at
each prediction point of the intent task the exact P(purchase | prefix) is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smallboat.data import dynamics as dy
from smallboat.data.catalog_gen import Catalog
from smallboat.schema import INTENT_PREDICTION_POINTS

MAX_EVENTS = 130
"""Collapsed events of a browsing session at most (the release's longest session has 206 raw rows).
Shopper sessions are not cut (a cut would make a buyer's label disagree with its class); their
hazards of leaving or buying keep them far shorter."""
MAX_SHOPPER_EVENTS = 1_000

CART_SLOTS = 8
PAIR_PAGEVIEW_P = 0.9
"""Share of product views that also log a pageview with the same timestamp (as the release does)."""

_POINTS = np.zeros(MAX_SHOPPER_EVENTS + 1, dtype=bool)
_POINTS[list(INTENT_PREDICTION_POINTS)] = True


@dataclass
class RawEvents:
    """Raw browsing rows of a batch (before text formatting), one entry per row."""

    session: np.ndarray  # index of the session in the batch
    action: np.ndarray  # dy.PAGEVIEW .. dy.PURCHASE; a paired pageview is PAGEVIEW
    sku: np.ndarray  # -1 for a plain pageview
    page: np.ndarray  # plain page index for a plain pageview, else -1
    ts: np.ndarray  # epoch ms


@dataclass
class OracleRows:
    session: np.ndarray
    k: np.ndarray
    prefix_length: np.ndarray
    p_purchase: np.ndarray


@dataclass
class Batch:
    events: RawEvents
    oracle: OracleRows
    session_class: np.ndarray
    purchased: np.ndarray  # (N,) bool: the session has a purchase
    start_ms: np.ndarray
    end_ms: np.ndarray
    capped: int  # shopper sessions stopped at MAX_SHOPPER_EVENTS (label may disagree with class)


class _Rows:
    """Collects emitted rows step by step."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []

    def emit(
        self,
        session: np.ndarray,
        action: int | np.ndarray,
        sku: np.ndarray,
        page: np.ndarray,
        ts: np.ndarray,
    ) -> None:
        if len(session):
            self.parts.append((session, np.broadcast_to(action, session.shape), sku, page, ts))

    def build(self) -> RawEvents:
        cols = (
            [np.concatenate([p[i] for p in self.parts]) for i in range(5)]
            if self.parts
            else [np.empty(0, np.int64)] * 5
        )
        return RawEvents(*(c.astype(np.int64) for c in cols))


def simulate_batch(
    rng: np.random.Generator,
    dyn: dy.Dynamics,
    cat: Catalog,
    start_ms: np.ndarray,
    n_pages: int,
) -> Batch:
    """Generate len(start_ms) sessions and their oracle rows."""
    n = len(start_ms)
    cls = rng.choice(len(dyn.prior), size=n, p=dyn.prior / dyn.prior.sum())
    shopper_pos = np.full(len(dyn.prior), -1)
    shopper_pos[dy.SHOPPERS] = np.arange(len(dy.SHOPPERS))
    log_prior = np.log(dyn.prior[dy.SHOPPERS] / dyn.prior[dy.SHOPPERS].sum())
    buyer_cols = dyn.is_buyer[dy.SHOPPERS]
    all_shoppers = dy.SHOPPERS[None, :]

    count = np.zeros(n, np.int64)
    cur_sku = np.full(n, -1, np.int64)
    last_action = np.full(n, -1, np.int64)
    cart = np.zeros((n, CART_SLOTS), np.int64)
    cart_n = np.zeros(n, np.int64)
    first_add = np.zeros(n, np.int64)  # 1-based index of the first add; 0 = none yet
    ts = start_ms.astype(np.int64).copy()
    phase = np.zeros(n, np.int64)  # 0 before the purchase, 1 after it, 2 done
    post_left = np.zeros(n, np.int64)
    purchased = np.zeros(n, bool)
    loglik = np.zeros((n, len(dy.SHOPPERS)))
    rows = _Rows()
    oracle: list[tuple[np.ndarray, ...]] = []
    page_cum = np.cumsum(1.0 / np.arange(1, n_pages + 1))
    capped = 0
    is_shopper_class = np.isin(cls, dy.SHOPPERS)

    while True:
        # Sessions after their purchase browse a little (pageviews), then leave.
        post = np.flatnonzero(phase == 1)
        if len(post):
            leaving = post[post_left[post] == 0]
            phase[leaving] = 2
            staying = post[post_left[post] > 0]
            ts[staying] += rng.integers(2_000, 120_000, len(staying))
            rows.emit(
                staying,
                dy.PAGEVIEW,
                np.full(len(staying), -1),
                _pages(rng, page_cum, len(staying)),
                ts[staying],
            )
            post_left[staying] -= 1

        limit = np.where(is_shopper_class, MAX_SHOPPER_EVENTS, MAX_EVENTS)
        at_cap = np.flatnonzero((phase == 0) & (count >= limit))
        capped += int(np.isin(cls[at_cap], dy.SHOPPERS).sum())
        phase[at_cap] = 2
        act = np.flatnonzero(phase == 0)
        if len(act) == 0 and not (phase == 1).any():
            break
        if len(act) == 0:
            continue

        obs = _observe(cat, act, count, cur_sku, last_action, cart_n, first_add)
        own = cls[act][:, None]
        logp_own = dy.action_logprobs(dyn, obs, own)[:, 0, :]
        action = _sample_rows(rng, np.exp(logp_own))

        is_shop = shopper_pos[cls[act]] >= 0
        sh = np.flatnonzero(is_shop)
        obs_sh = _subset(obs, sh)
        if len(sh):
            logp_all = dy.action_logprobs(dyn, obs_sh, all_shoppers)
            loglik[act[sh]] += logp_all[np.arange(len(sh)), :, action[sh]]

        # The time of the event (the first event of a session is at its start).
        moving = action != dy.END
        timed = moving & (count[act] >= 1)
        gap = np.zeros(len(act), np.int64)
        if timed.any():
            sub = np.flatnonzero(timed)
            gap[sub] = dy.sample_gap_ms(dyn, _subset(obs, sub), own[sub], rng)
        ts[act] += gap
        scored = sh[timed[sh] & (action[sh] != dy.PURCHASE)]
        if len(scored):
            loglik[act[scored]] += dy.gap_loglik(
                dyn, _subset(obs, scored), all_shoppers, gap[scored]
            )

        # END: the session leaves without buying.
        phase[act[action == dy.END]] = 2

        # PURCHASE: one row per product in the cart, all at the same time; the cut ends here.
        buy = act[action == dy.PURCHASE]
        for slot in range(CART_SLOTS):
            has = buy[cart_n[buy] > slot]
            rows.emit(has, dy.PURCHASE, cart[has, slot], np.full(len(has), -1), ts[has])
        # Products put in the cart during an earlier visit are bought too (after the cut, so
        # this does not touch the oracle): the release has ~1.46 purchase rows per buying session.
        earlier = buy[rng.random(len(buy)) < 0.3]
        rows.emit(
            earlier,
            dy.PURCHASE,
            cat.sample_global(rng, len(earlier)),
            np.full(len(earlier), -1),
            ts[earlier],
        )
        phase[buy] = 1
        purchased[buy] = True
        post_left[buy] = rng.geometric(0.5, len(buy)) - 1

        # PAGEVIEW: a plain page.
        pv = act[action == dy.PAGEVIEW]
        rows.emit(pv, dy.PAGEVIEW, np.full(len(pv), -1), _pages(rng, page_cum, len(pv)), ts[pv])

        # DETAIL: a product view, in the current product's category or elsewhere.
        det_rows = np.flatnonzero(action == dy.DETAIL)
        det = act[det_rows]
        new_sku = cat.sample_global(rng, len(det))
        has_cur = cur_sku[det] >= 0
        if has_cur.any():
            r = det_rows[has_cur]
            log_stay, _ = dy.stay_logprob(dyn, _subset(obs, r), own[r])
            stay = rng.random(len(r)) < np.exp(log_stay[:, 0])
            prev = cur_sku[act[r]]
            new_sku[has_cur] = np.where(
                stay, cat.sample_near(rng, prev), cat.sample_other_leaf(rng, prev)
            )
            shop_r = is_shop[r]
            if shop_r.any():
                ls, ll = dy.stay_logprob(dyn, _subset(obs, r[shop_r]), all_shoppers)
                loglik[act[r[shop_r]]] += np.where(stay[shop_r, None], ls, ll)
        cur_sku[det] = new_sku
        rows.emit(det, dy.DETAIL, new_sku, np.full(len(det), -1), ts[det])
        paired = det[rng.random(len(det)) < PAIR_PAGEVIEW_P]
        rows.emit(paired, dy.PAGEVIEW, cur_sku[paired], np.full(len(paired), -1), ts[paired])

        # ADD: the product being viewed goes into the cart.
        add = act[action == dy.ADD]
        slot = np.minimum(cart_n[add], CART_SLOTS - 1)
        cart[add, slot] = cur_sku[add]
        cart_n[add] = np.minimum(cart_n[add] + 1, CART_SLOTS)
        rows.emit(add, dy.ADD, cur_sku[add], np.full(len(add), -1), ts[add])
        first_add[add] = np.where(first_add[add] == 0, count[add] + 1, first_add[add])

        # REMOVE: the last product added, or one left in the cart by an earlier visit.
        rem = act[action == dy.REMOVE]
        from_cart = cart_n[rem] > 0
        rem_sku = np.where(
            from_cart, cart[rem, np.maximum(cart_n[rem] - 1, 0)], cat.sample_global(rng, len(rem))
        )
        cart_n[rem] = np.maximum(cart_n[rem] - 1, 0)
        rows.emit(rem, dy.REMOVE, rem_sku, np.full(len(rem), -1), ts[rem])

        stepped = act[(action != dy.END) & (action != dy.PURCHASE)]
        count[stepped] += 1
        last_action[act] = action

        # Prediction points: right after the first add and 2, 4, ... 10 events later.
        k = count[stepped] - first_add[stepped]
        point = stepped[
            (first_add[stepped] > 0) & (k >= 0) & _POINTS[np.clip(k, 0, MAX_SHOPPER_EVENTS)]
        ]
        if len(point):
            log_post = loglik[point] + log_prior
            log_post -= log_post.max(axis=1, keepdims=True)
            post_p = np.exp(log_post)
            p_buy = post_p[:, buyer_cols].sum(axis=1) / post_p.sum(axis=1)
            oracle.append((point, count[point] - first_add[point], count[point].copy(), p_buy))

    events = rows.build()
    if oracle:
        o = [np.concatenate([x[i] for x in oracle]) for i in range(4)]
        oracle_rows = OracleRows(o[0], o[1], o[2], o[3])
    else:
        empty = np.empty(0, np.int64)
        oracle_rows = OracleRows(empty, empty, empty, np.empty(0))
    return Batch(
        events=events,
        oracle=oracle_rows,
        session_class=cls,
        purchased=purchased,
        start_ms=start_ms,
        end_ms=ts,
        capped=capped,
    )


def _pages(rng: np.random.Generator, page_cum: np.ndarray, n: int) -> np.ndarray:
    u = rng.random(n) * page_cum[-1]
    return np.minimum(np.searchsorted(page_cum, u, side="right"), len(page_cum) - 1)


def _sample_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One category per row of `probs` (N, A) by inverse CDF."""
    cum = probs.cumsum(axis=1)
    u = rng.random(len(probs)) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(axis=1), probs.shape[1] - 1)


def _observe(
    cat: Catalog,
    act: np.ndarray,
    count: np.ndarray,
    cur_sku: np.ndarray,
    last_action: np.ndarray,
    cart_n: np.ndarray,
    first_add: np.ndarray,
) -> dy.Observed:
    n = count[act]
    after = first_add[act] > 0
    since = np.where(after, np.minimum(n - first_add[act], 8), 0) / 8.0
    col = lambda x: x[:, None]  # noqa: E731
    return dy.Observed(
        n=col(n),
        viewed=col(cur_sku[act] >= 0),
        last_detail=col(last_action[act] == dy.DETAIL),
        in_cart=col(cart_n[act] > 0),
        after_add=col(after),
        late=col(since),
        price=col(cat.price_feature(cur_sku[act])),
    )


def _subset(obs: dy.Observed, rows: np.ndarray) -> dy.Observed:
    return dy.Observed(**{name: getattr(obs, name)[rows] for name in obs.__dataclass_fields__})
