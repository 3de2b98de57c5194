"""Simulate a batch of sessions from the shopper model, scoring the oracles as the events happen.

All sessions of a batch advance together one collapsed event per step (vectorised over sessions);
the likelihood of what each shopper session shows is accumulated under every shopper class, and at
each prediction point of the intent task the exact P(purchase | prefix) is recorded. For the
next-item task the likelihood of every session is also kept under every class (browsers too), and
before each product view that follows another one the Bayes-optimal top-20 of the next SKU given
the prefix (and that the next event is a product view) is recorded (`next_view`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smallboat.data.synth import dynamics as dy
from smallboat.data.synth.catalog import Catalog
from smallboat.data.synth.next_view import NextViewRanker
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
class NextViewRows:
    """Before a session's second, third ... product view: what an observer of the prefix knows."""

    session: np.ndarray
    prefix_length: np.ndarray  # collapsed events before the view (next_item_examples' count)
    p_stay: np.ndarray  # P(the view stays in the previous product's leaf | prefix, a view)
    top: np.ndarray  # (N, 20) the most probable next SKUs, best first (-1 pads)
    top_p: np.ndarray  # (N, 20) their probabilities


@dataclass
class Batch:
    events: RawEvents
    oracle: OracleRows
    next_views: NextViewRows
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
    ranker: NextViewRanker | None = None,
) -> Batch:
    """Generate len(start_ms) sessions and their oracle rows (`ranker`: the catalog's, built
    once per dataset by the caller; made here when not given)."""
    sim = _Simulation(rng, dyn, cat, start_ms, n_pages, ranker or NextViewRanker(cat))
    while sim.step():
        pass
    return sim.result()


@dataclass
class _Draw:
    """One step's draw: the live sessions, their actions, and what their prefixes show."""

    act: np.ndarray  # live sessions (indexes in the batch)
    action: np.ndarray  # the action each one drew
    obs: dy.Observed  # their observed prefixes
    own: np.ndarray  # (N, 1) their own classes
    shop: np.ndarray  # rows of `act` that are shopper sessions (their likelihood is kept)


class _Simulation:
    """The state of a batch of sessions, advanced one collapsed event per `step()`.

    Sessions are in one of three phases: 0 before their purchase (the cut the intent task sees),
    1 after it (a few pageviews), 2 done. Each step draws, for every session in phase 0, an
    action from its own class, then the event's time and product; for shopper sessions the log
    probability of what was drawn is added under every shopper class (the oracle's likelihood).
    """

    def __init__(
        self,
        rng: np.random.Generator,
        dyn: dy.Dynamics,
        cat: Catalog,
        start_ms: np.ndarray,
        n_pages: int,
        ranker: NextViewRanker,
    ) -> None:
        n = len(start_ms)
        self.rng, self.dyn, self.cat = rng, dyn, cat
        self.start_ms = start_ms
        self.cls = rng.choice(len(dyn.prior), size=n, p=dyn.prior / dyn.prior.sum())
        self.is_shopper = np.isin(self.cls, dy.SHOPPERS)
        self.limit = np.where(self.is_shopper, MAX_SHOPPER_EVENTS, MAX_EVENTS)
        self.log_prior = np.log(dyn.prior[dy.SHOPPERS] / dyn.prior[dy.SHOPPERS].sum())
        self.buyer_cols = dyn.is_buyer[dy.SHOPPERS]
        self.all_shoppers = dy.SHOPPERS[None, :]
        self.page_cum = np.cumsum(1.0 / np.arange(1, n_pages + 1))
        # The next-item oracle's posterior is over every class: browsers view products too.
        n_classes = len(dyn.prior)
        self.ranker = ranker
        self.every_class = np.arange(n_classes)[None, :]
        self.log_prior_every = np.log(dyn.prior / dyn.prior.sum())
        shopper_class = np.isin(np.arange(n_classes), dy.SHOPPERS)
        self.class_limit = np.where(shopper_class, MAX_SHOPPER_EVENTS, MAX_EVENTS)
        self.loglik_every = np.zeros((n, n_classes))
        self.next_views: list[tuple[np.ndarray, ...]] = []

        self.count = np.zeros(n, np.int64)  # collapsed events so far
        self.cur_sku = np.full(n, -1, np.int64)  # the product being viewed
        self.last_action = np.full(n, -1, np.int64)
        self.cart = np.zeros((n, CART_SLOTS), np.int64)
        self.cart_n = np.zeros(n, np.int64)
        self.first_add = np.zeros(n, np.int64)  # 1-based index of the first add; 0 = none yet
        self.ts = start_ms.astype(np.int64).copy()
        self.phase = np.zeros(n, np.int64)
        self.post_left = np.zeros(n, np.int64)
        self.purchased = np.zeros(n, bool)
        self.loglik = np.zeros((n, len(dy.SHOPPERS)))
        self.rows = _Rows()
        self.oracle: list[tuple[np.ndarray, ...]] = []
        self.capped = 0

    def step(self) -> bool:
        """Advance every live session by one event; False once all sessions are done."""
        self._browse_after_purchase()
        at_cap = np.flatnonzero((self.phase == 0) & (self.count >= self.limit))
        self.capped += int(self.is_shopper[at_cap].sum())
        self.phase[at_cap] = 2
        act = np.flatnonzero(self.phase == 0)
        if len(act) == 0:
            return bool((self.phase == 1).any())

        obs = _observe(
            self.cat, act, self.count, self.cur_sku, self.last_action, self.cart_n, self.first_add
        )
        own = self.cls[act][:, None]
        # Every class's action law at once (each (session, class) cell is computed alone, so the
        # own class's and the shopper classes' columns are what scoring them alone gives).
        logp_every = dy.action_logprobs(self.dyn, obs, self.every_class)
        rows = np.arange(len(act))
        action = _sample_rows(self.rng, np.exp(logp_every[rows, own[:, 0], :]))
        shop = np.flatnonzero(self.is_shopper[act])  # rows of `act` whose likelihood is kept
        if len(shop):
            logp_all = logp_every[shop][:, dy.SHOPPERS, :]
            self.loglik[act[shop]] += logp_all[np.arange(len(shop)), :, action[shop]]
        self._record_next_views(act, action, obs, logp_every)
        self.loglik_every[act] += logp_every[rows, :, action]
        draw = _Draw(act, action, obs, own, shop)
        self._advance_clock(draw)

        self.phase[act[action == dy.END]] = 2
        self._purchase(act[action == dy.PURCHASE])
        pv = act[action == dy.PAGEVIEW]
        self.rows.emit(pv, dy.PAGEVIEW, _none(pv), self._pages(len(pv)), self.ts[pv])
        self._detail(draw)
        self._add(act[action == dy.ADD])
        self._remove(act[action == dy.REMOVE])

        stepped = act[(action != dy.END) & (action != dy.PURCHASE)]
        self.count[stepped] += 1
        self.last_action[act] = action
        self._record_prediction_points(stepped)
        return True

    def _browse_after_purchase(self) -> None:
        """Sessions after their purchase browse a little (pageviews), then leave."""
        post = np.flatnonzero(self.phase == 1)
        if len(post) == 0:
            return
        self.phase[post[self.post_left[post] == 0]] = 2
        staying = post[self.post_left[post] > 0]
        self.ts[staying] += self.rng.integers(2_000, 120_000, len(staying))
        pages = self._pages(len(staying))
        self.rows.emit(staying, dy.PAGEVIEW, _none(staying), pages, self.ts[staying])
        self.post_left[staying] -= 1

    def _advance_clock(self, d: _Draw) -> None:
        """The time of each event (a session's first event is at its start), and its likelihood."""
        act, action, obs, own, shop = d.act, d.action, d.obs, d.own, d.shop
        timed = (action != dy.END) & (self.count[act] >= 1)
        gap = np.zeros(len(act), np.int64)
        if timed.any():
            sub = np.flatnonzero(timed)
            gap[sub] = dy.sample_gap_ms(self.dyn, _subset(obs, sub), own[sub], self.rng)
        self.ts[act] += gap
        every = np.flatnonzero(timed & (action != dy.PURCHASE))
        if len(every):
            self.loglik_every[act[every]] += dy.gap_loglik(
                self.dyn, _subset(obs, every), self.every_class, gap[every]
            )
        scored = shop[timed[shop] & (action[shop] != dy.PURCHASE)]
        if len(scored):
            self.loglik[act[scored]] += dy.gap_loglik(
                self.dyn, _subset(obs, scored), self.all_shoppers, gap[scored]
            )

    def _purchase(self, buy: np.ndarray) -> None:
        """One row per product in the cart, all at the same time; the cut session ends here."""
        for slot in range(CART_SLOTS):
            has = buy[self.cart_n[buy] > slot]
            self.rows.emit(has, dy.PURCHASE, self.cart[has, slot], _none(has), self.ts[has])
        # Products put in the cart during an earlier visit are bought too (after the cut, so
        # this does not touch the oracle): the release has ~1.46 purchase rows per buying session.
        earlier = buy[self.rng.random(len(buy)) < 0.3]
        skus = self.cat.sample_global(self.rng, len(earlier))
        self.rows.emit(earlier, dy.PURCHASE, skus, _none(earlier), self.ts[earlier])
        self.phase[buy] = 1
        self.purchased[buy] = True
        self.post_left[buy] = self.rng.geometric(0.5, len(buy)) - 1

    def _detail(self, d: _Draw) -> None:
        """A product view: in the current product's category, or elsewhere (a scored choice)."""
        act, action, obs, own, shop = d.act, d.action, d.obs, d.own, d.shop
        det_rows = np.flatnonzero(action == dy.DETAIL)
        det = act[det_rows]
        new_sku = self.cat.sample_global(self.rng, len(det))
        has_cur = self.cur_sku[det] >= 0
        if has_cur.any():
            r = det_rows[has_cur]
            log_stay, _ = dy.stay_logprob(self.dyn, _subset(obs, r), own[r])
            stay = self.rng.random(len(r)) < np.exp(log_stay[:, 0])
            prev = self.cur_sku[act[r]]
            new_sku[has_cur] = np.where(
                stay,
                self.cat.sample_near(self.rng, prev),
                self.cat.sample_other_leaf(self.rng, prev),
            )
            scored = np.isin(r, shop)
            if scored.any():
                obs_r = _subset(obs, r[scored])
                ls, ll = dy.stay_logprob(self.dyn, obs_r, self.all_shoppers)
                self.loglik[act[r[scored]]] += np.where(stay[scored, None], ls, ll)
            ls, ll = dy.stay_logprob(self.dyn, _subset(obs, r), self.every_class)
            self.loglik_every[act[r]] += np.where(stay[:, None], ls, ll)
        self.cur_sku[det] = new_sku
        self.rows.emit(det, dy.DETAIL, new_sku, _none(det), self.ts[det])
        paired = det[self.rng.random(len(det)) < PAIR_PAGEVIEW_P]
        self.rows.emit(paired, dy.PAGEVIEW, self.cur_sku[paired], _none(paired), self.ts[paired])

    def _add(self, add: np.ndarray) -> None:
        """The product being viewed goes into the cart."""
        slot = np.minimum(self.cart_n[add], CART_SLOTS - 1)
        self.cart[add, slot] = self.cur_sku[add]
        self.cart_n[add] = np.minimum(self.cart_n[add] + 1, CART_SLOTS)
        self.rows.emit(add, dy.ADD, self.cur_sku[add], _none(add), self.ts[add])
        first = self.first_add[add]
        self.first_add[add] = np.where(first == 0, self.count[add] + 1, first)

    def _remove(self, rem: np.ndarray) -> None:
        """The last product added leaves the cart, or one left there by an earlier visit."""
        last = self.cart[rem, np.maximum(self.cart_n[rem] - 1, 0)]
        skus = np.where(self.cart_n[rem] > 0, last, self.cat.sample_global(self.rng, len(rem)))
        self.cart_n[rem] = np.maximum(self.cart_n[rem] - 1, 0)
        self.rows.emit(rem, dy.REMOVE, skus, _none(rem), self.ts[rem])

    def _record_prediction_points(self, stepped: np.ndarray) -> None:
        """Right after the first add and 2, 4, ... 10 events later: the exact P(purchase)."""
        k = self.count[stepped] - self.first_add[stepped]
        at_point = (self.first_add[stepped] > 0) & (k >= 0)
        point = stepped[at_point & _POINTS[np.clip(k, 0, MAX_SHOPPER_EVENTS)]]
        if len(point) == 0:
            return
        log_post = self.loglik[point] + self.log_prior
        post = np.exp(log_post - log_post.max(axis=1, keepdims=True))
        p_buy = post[:, self.buyer_cols].sum(axis=1) / post.sum(axis=1)
        k_point = self.count[point] - self.first_add[point]
        self.oracle.append((point, k_point, self.count[point].copy(), p_buy))

    def _record_next_views(
        self, act: np.ndarray, action: np.ndarray, obs: dy.Observed, logp_every: np.ndarray
    ) -> None:
        """Before a product view that follows another: the law of its SKU given the prefix.

        The posterior over classes conditions on the prefix's likelihood (kept in loglik_every)
        and on the next event being a product view (its action probability; a class whose length
        limit the prefix has reached cannot go on). Nothing about the view itself is used: its
        SKU is drawn after this, and its time and stay/leave outcome are not looked at.
        """
        rows = np.flatnonzero((action == dy.DETAIL) & (self.cur_sku[act] >= 0))
        if len(rows) == 0:
            return
        sessions = act[rows]
        can_go_on = self.count[sessions][:, None] < self.class_limit[None, :]
        log_post = np.where(
            can_go_on,
            self.log_prior_every + self.loglik_every[sessions] + logp_every[rows, :, dy.DETAIL],
            -np.inf,
        )
        post = np.exp(log_post - log_post.max(axis=1, keepdims=True))
        post /= post.sum(axis=1, keepdims=True)
        log_stay, _ = dy.stay_logprob(self.dyn, _subset(obs, rows), self.every_class)
        p_stay = (post * np.exp(log_stay)).sum(axis=1)
        top, top_p = self.ranker.top(self.cur_sku[sessions], p_stay)
        self.next_views.append((sessions, self.count[sessions].copy(), p_stay, top, top_p))

    def _pages(self, n: int) -> np.ndarray:
        """Plain pages by Zipf-like popularity."""
        u = self.rng.random(n) * self.page_cum[-1]
        return np.minimum(np.searchsorted(self.page_cum, u, side="right"), len(self.page_cum) - 1)

    def result(self) -> Batch:
        if self.oracle:
            o = [np.concatenate([x[i] for x in self.oracle]) for i in range(4)]
            oracle_rows = OracleRows(o[0], o[1], o[2], o[3])
        else:
            empty = np.empty(0, np.int64)
            oracle_rows = OracleRows(empty, empty, empty, np.empty(0))
        if self.next_views:
            v = [np.concatenate([x[i] for x in self.next_views]) for i in range(5)]
            next_views = NextViewRows(v[0], v[1], v[2], v[3], v[4])
        else:
            k = self.ranker.k
            none = np.empty(0, np.int64)
            next_views = NextViewRows(
                none, none, np.empty(0), np.empty((0, k), np.int64), np.empty((0, k))
            )
        return Batch(
            events=self.rows.build(),
            oracle=oracle_rows,
            next_views=next_views,
            purchased=self.purchased,
            start_ms=self.start_ms,
            end_ms=self.ts,
            capped=self.capped,
        )


def _none(sessions: np.ndarray) -> np.ndarray:
    """-1 for each session: no SKU, or no plain page."""
    return np.full(len(sessions), -1)


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
