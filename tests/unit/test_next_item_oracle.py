"""The next-item ceiling: the synthetic generator's exact law of the next viewed SKU given the
prefix, its top-20, and that the ranking written beside the data reads nothing but the prefix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from smallboat.data.synth.catalog import Catalog, build_catalog, catalog_size
from smallboat.data.synth.generate import SynthConfig, synthesize
from smallboat.data.synth.next_view import TOP_K, NextViewRanker, next_view_probs
from smallboat.data.synth.oracle import next_view_stay_path
from smallboat.metrics.ranking import hit_ranks
from smallboat.model.next_item.data import NextItemExamples
from smallboat.model.next_item.oracle import oracle_ceiling
from smallboat.schema import COVEO_FILES, NEXT_ITEM_ORACLE_FILE
from tests.unit.test_synth import collapsed_events, read_release_csv

SESSIONS, SEED = 20_000, 3


def hand_catalog() -> Catalog:
    """Three leaves: 0 = SKUs 0-4, 1 = SKUs 5-8, 2 = SKUs 9-12. Leaf popularity 0.5 / 0.3 / 0.2;
    inside leaf 1, SKU 6 holds half of the leaf's views. Leaf 0's co-viewed leaves: 1, 1, 2."""
    pop = np.array([0.1] * 5 + [0.06, 0.15, 0.06, 0.03] + [0.05] * 4)
    leaf = np.repeat([0, 1, 2], [5, 4, 4])
    ids = pa.array([f"s{i}" for i in range(13)])
    return Catalog(
        sku_hash=ids,
        sku_url=ids,
        leaf=leaf,
        leaf_start=np.array([0, 5, 9, 13]),
        leaf_parent=np.zeros(3, np.int64),
        leaf_path=pa.array(["a", "b", "c"]),
        price_bucket=np.ones(13, np.int8),
        price_observed=np.ones(13, bool),
        popularity=pop,
        cum_popularity=np.cumsum(pop),
        leaf_popularity_cum=np.cumsum([0.5, 0.3, 0.2]),
        related_leaf=np.array([[1, 1, 2], [0, 2, 2], [0, 1, 1]]),
        centroid=np.zeros((3, 2)),
        has_description=np.ones(13, bool),
        has_image=np.ones(13, bool),
    )


def test_hand_worked_next_view_law() -> None:
    cat = hand_catalog()
    # After SKU 2 (the middle of leaf 0, five SKUs): staying moves 1, 2 or 3 places up or down
    # (0.55, 0.3, 0.15, halved per side); +3 wraps to SKU 0 and -3 to SKU 4.
    stay = next_view_probs(cat, 2, 1.0)
    np.testing.assert_allclose(stay[:5], [0.15 + 0.075, 0.275, 0.0, 0.275, 0.15 + 0.075])
    assert stay[5:].sum() == 0.0
    # Leaving: leaf 1 with 0.7 * 2/3 + 0.3 * (0.3 + 0.5 * 2/3), leaf 2 with the rest.
    leave = next_view_probs(cat, 2, 0.0)
    to_leaf1 = 0.7 * 2 / 3 + 0.3 * (0.3 + 0.5 * 2 / 3)
    assert leave[5:9].sum() == pytest.approx(to_leaf1)
    assert leave[9:].sum() == pytest.approx(1 - to_leaf1)
    assert leave[6] == pytest.approx(to_leaf1 * 0.5)
    # Half and half: SKU 6 (0.5 * 0.6567 * 0.5 = 0.164) beats SKUs 1 and 3 (0.5 * 0.275 = 0.1375).
    top, top_p = NextViewRanker(cat, k=5).top(np.array([2]), np.array([0.5]))
    assert list(top[0]) == [6, 1, 3, 0, 4]
    np.testing.assert_allclose(
        top_p[0], [0.5 * to_leaf1 * 0.5, 0.1375, 0.1375, 0.1125, 0.1125], rtol=1e-12
    )
    # Mostly staying, the nearest SKUs come first.
    assert list(NextViewRanker(cat, k=2).top(np.array([2]), np.array([0.9]))[0][0]) == [1, 3]


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return build_catalog(np.random.default_rng(0), 3_000)


def test_the_law_is_a_distribution_and_the_ranking_its_top_20(cat: Catalog) -> None:
    ranker = NextViewRanker(cat)
    rng = np.random.default_rng(1)
    live = np.flatnonzero(cat.popularity > 0)
    prev = rng.choice(live, 40)
    stay = np.concatenate([[0.0, 1.0], rng.random(38)])
    top, top_p = ranker.top(prev, stay)
    assert top.shape == top_p.shape == (40, TOP_K)
    for i in range(40):
        law = next_view_probs(cat, int(prev[i]), float(stay[i]))
        assert law.min() >= 0.0 and law.sum() == pytest.approx(1.0, abs=1e-12)
        best = np.lexsort((np.arange(cat.size), -law))[:TOP_K]
        possible = law[best] > 0  # (after a sure stay only six SKUs can come next)
        np.testing.assert_array_equal(top[i][possible], best[possible])
        assert (law[top[i][~possible]] == 0).all()
        np.testing.assert_allclose(top_p[i], law[best], rtol=1e-12, atol=1e-15)
        assert (np.diff(top_p[i]) <= 0).all()
        assert prev[i] not in top[i]  # the generator never "views" the same SKU again


def test_the_law_is_the_samplers_law(cat: Catalog) -> None:
    """The law the ceiling ranks by is what `sample_near` / `sample_other_leaf` draw."""
    rng = np.random.default_rng(2)
    n = 200_000
    prev = int(np.flatnonzero(cat.popularity > 0)[7])
    for stay, draw in ((1.0, cat.sample_near), (0.0, cat.sample_other_leaf)):
        law = next_view_probs(cat, prev, stay)
        freq = np.bincount(draw(rng, np.full(n, prev)), minlength=cat.size) / n
        se = np.sqrt(law * (1 - law) / n)
        assert (np.abs(freq - law) <= 5.5 * se + 2 / n).all(), stay
        assert (freq[law == 0] == 0).all()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("next-item-oracle")
    synthesize(SynthConfig(sessions=SESSIONS, seed=SEED), out)
    return out


def next_item_examples(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """dbt's `next_item_examples`, written independently from the CSVs: every detail view from
    the second on, before the first purchase; prefix_length = collapsed events before it.
    Returns (examples, collapsed events cut before the first purchase, catalog)."""
    browsing = read_release_csv(out / COVEO_FILES["browsing_events"])
    catalog = read_release_csv(out / COVEO_FILES["catalog"]).set_index("product_sku_hash")
    ev = collapsed_events(browsing)
    ev["idx"] = ev.groupby("session_id_hash").cumcount()
    first_buy = ev[ev.action == "purchase"].groupby("session_id_hash").idx.min()
    ev = ev.join(first_buy.rename("first_buy"), on="session_id_hash")
    ev = ev[ev.first_buy.isna() | (ev.idx < ev.first_buy)]
    details = ev[ev.action == "detail"].copy()
    details["position"] = details.groupby("session_id_hash").cumcount() + 1
    details["prev_sku"] = details.groupby("session_id_hash").product_sku_hash.shift()
    examples = details[details.position >= 2].rename(
        columns={"idx": "prefix_length", "product_sku_hash": "target_sku"}
    )
    return examples[["session_id_hash", "prefix_length", "prev_sku", "target_sku"]], ev, catalog


def test_the_oracle_file_keys_every_example_once(synthetic: Path) -> None:
    examples, _, _ = next_item_examples(synthetic)
    oracle = pd.read_parquet(
        synthetic / NEXT_ITEM_ORACLE_FILE, columns=["session_id_hash", "prefix_length", "probs"]
    )
    key = ["session_id_hash", "prefix_length"]
    merged = examples.merge(oracle, on=key, how="outer", indicator=True)
    assert len(examples) > 15_000
    assert (merged._merge == "both").all(), merged[merged._merge != "both"].head()
    assert not oracle.duplicated(key).any()
    sums = oracle.probs.map(sum)
    assert ((sums > 0) & (sums <= 1 + 1e-12)).all()


def test_the_ranking_depends_on_the_prefix_only(synthetic: Path) -> None:
    """Each written ranking is rebuilt from the session's events before the target and a view of
    an unknown product in place of the target: the same list, whatever the target was."""
    examples, ev, catalog = next_item_examples(synthetic)
    oracle = pd.read_parquet(synthetic / NEXT_ITEM_ORACLE_FILE).set_index(
        ["session_id_hash", "prefix_length"]
    )
    cat = build_catalog(
        np.random.default_rng(np.random.SeedSequence(SEED).spawn(1)[0]), catalog_size(SESSIONS)
    )
    index = pd.Index(cat.sku_hash.to_numpy(zero_copy_only=False))
    assert list(index) == list(catalog.index)  # the generator's catalog, rebuilt from the seed
    ranker = NextViewRanker(cat)
    sessions = examples.session_id_hash.drop_duplicates().sample(120, random_state=0)
    by_session = dict(tuple(ev[ev.session_id_hash.isin(set(sessions))].groupby("session_id_hash")))
    checked = 0
    for row in examples[examples.session_id_hash.isin(set(sessions))].itertuples():
        prefix = by_session[row.session_id_hash].iloc[: row.prefix_length]
        actions = [*prefix.action, "detail"]  # the target: a view, nothing else about it
        times = [*prefix.ts, int(prefix.ts.iloc[-1]) + 1]
        skus = [*prefix.product_sku_hash.replace("", np.nan), np.nan]
        cats = [None if pd.isna(s) else catalog.category_hash[s] for s in skus]
        prices = [
            None if pd.isna(s) or catalog.price_bucket[s] == "" else float(catalog.price_bucket[s])
            for s in skus
        ]
        stay = next_view_stay_path(actions, times, cats, prices)[-1]
        written = oracle.loc[(row.session_id_hash, row.prefix_length)]
        assert stay == pytest.approx(written.p_stay, abs=1e-9)
        top, top_p = ranker.top(index.get_indexer([row.prev_sku]), np.array([stay]))
        assert list(written.skus) == list(cat.sku_hash.take(pa.array(top[0])).to_pylist())
        np.testing.assert_allclose(written.probs, top_p[0], rtol=1e-9)
        checked += 1
    assert checked > 150


def test_the_ceiling_is_honest_and_beats_prefix_recommenders(synthetic: Path) -> None:
    """On held-out sessions: the ceiling's MRR@20 and HR@20 match what the law expects (a list
    that peeked at the target would score far above its expectation), and every recommender
    that reads only the prefix scores no higher. For each example the expected reciprocal rank
    of the law's sorted list is the largest any list can have (rearrangement inequality), so the
    mean per-example difference to any prefix-only recommender is >= 0 in expectation; it is
    held to > 0 with three standard errors to spare."""
    examples, ev, catalog = next_item_examples(synthetic)
    test = examples.session_id_hash.str[0].isin(list("cdef")).to_numpy()
    tr, te = examples[~test], examples[test]
    ex = NextItemExamples(
        session=np.zeros(len(te), np.int64),
        session_id=te.session_id_hash.to_numpy(),
        prefix_length=te.prefix_length.to_numpy().astype(np.int32),
        n_prior=np.ones(len(te), np.int32),
        target=np.zeros(len(te), np.int64),
        target_sku=te.target_sku.to_numpy(),
    )
    ceiling = oracle_ceiling(synthetic, ex)
    assert ceiling["coverage"] == 1.0 and ceiling["n"] == len(te) > 3_000
    n = len(te)
    for key in ("mrr", "hr"):
        se = 0.5 / np.sqrt(n)  # a mean of values in [0, 1]
        assert abs(ceiling[key] - ceiling[f"expected_{key}"]) < 4 * se, ceiling

    # Recommenders fitted on the other sessions: popularity, popularity in the last SKU's leaf,
    # and the empirical next view after the same SKU (what a sequence model learns), backed by
    # popularity in the leaf.
    views = ev[ev.action == "detail"]
    popular = views[~views.session_id_hash.isin(set(te.session_id_hash))].product_sku_hash
    by_pop = popular.value_counts()
    leaf = catalog.category_hash
    in_leaf = {c: list(g.index[:20]) for c, g in by_pop.groupby(leaf[by_pop.index].to_numpy())}
    follow = tr.groupby(["prev_sku", "target_sku"]).size().sort_values(ascending=False)
    after = {p: list(g.index.get_level_values(1)[:20]) for p, g in follow.groupby(level=0)}

    def fill(first: list[str], rest: list[str]) -> list[str]:
        out = list(dict.fromkeys(first + rest))
        return out[:20]

    lists = {
        "popularity": [list(by_pop.index[:20])] * n,
        "popularity_category": [
            fill(in_leaf.get(leaf[p], []), list(by_pop.index[:20])) for p in te.prev_sku
        ],
        "transitions": [
            fill(after.get(p, []), fill(in_leaf.get(leaf[p], []), list(by_pop.index[:20])))
            for p in te.prev_sku
        ],
    }
    names = {s: i for i, s in enumerate(catalog.index)}
    target = np.array([names[s] for s in te.target_sku])
    from smallboat.model.next_item.oracle import read_next_item_oracle

    top, _, oracle_target, _ = read_next_item_oracle(synthetic / NEXT_ITEM_ORACLE_FILE, ex)
    rr_oracle = np.where((r := hit_ranks(top, oracle_target)) > 0, 1.0 / np.maximum(r, 1), 0.0)
    assert rr_oracle.mean() == pytest.approx(ceiling["mrr"])
    for name, ranked in lists.items():
        ids = np.array([[names[s] for s in row] + [-1] * (20 - len(row)) for row in ranked])
        ranks = hit_ranks(ids, target)
        rr = np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0)
        diff = rr_oracle - rr
        assert diff.mean() > 3 * diff.std() / np.sqrt(n), (name, rr.mean(), ceiling["mrr"])


def test_no_ceiling_without_a_complete_oracle(synthetic: Path, tmp_path: Path) -> None:
    """Data synthesized before the file existed: no ceiling and where it was looked for; a file
    that misses a test example: no ceiling (a partial one is not one), and its coverage."""
    from smallboat.model.next_item.evaluate import ceiling_metrics

    examples, _, _ = next_item_examples(synthetic)
    part = examples.iloc[:200]
    ex = NextItemExamples(
        session=np.zeros(len(part), np.int64),
        session_id=np.array([*part.session_id_hash[:-1], "not-a-session"], dtype=object),
        prefix_length=part.prefix_length.to_numpy().astype(np.int32),
        n_prior=np.ones(len(part), np.int32),
        target=np.zeros(len(part), np.int64),
        target_sku=part.target_sku.to_numpy(),
    )
    missing = oracle_ceiling(tmp_path / "oracle_intent.parquet", ex)
    assert missing["mrr"] is None and missing["missing"] == str(tmp_path / NEXT_ITEM_ORACLE_FILE)
    partial = oracle_ceiling(synthetic, ex)
    assert partial["mrr"] is None and partial["coverage"] == pytest.approx(199 / 200)
    report = {"k": 20, "chosen": "a", "test": {"a": {"mrr": 0.1, "hr": 0.3}}, "oracle": partial}
    assert ceiling_metrics(report) == {}
    report["oracle"] = {"mrr": 0.4, "hr": 0.6}
    assert ceiling_metrics(report) == pytest.approx(
        {
            "next_item_oracle_mrr_at_20": 0.4,
            "next_item_oracle_hr_at_20": 0.6,
            "next_item_oracle_gap_mrr_at_20": 0.3,
            "next_item_oracle_gap_hr_at_20": 0.3,
            "next_item_oracle_ratio_mrr_at_20": 0.25,
            "next_item_oracle_ratio_hr_at_20": 0.5,
        }
    )


def test_the_card_and_the_table_show_the_ceiling() -> None:
    from rich.console import Console

    from smallboat.model.report import next_item_ceiling_text, next_item_rows
    from smallboat.pipeline.render import next_item_table

    model = {
        "mrr": 0.25,
        "hr": 0.6,
        "exclude_seen": {"mrr": 0.2, "hr": 0.5},
        "coverage": 0.8,
        "popularity_bias": {"percentile": 0.9, "arp": 12.0},
    }
    ceiling = {"mrr": 0.32, "hr": 0.8, "expected_mrr": 0.33, "expected_hr": 0.79}
    report = {"k": 20, "chosen": "sequence", "test": {"sequence": model}, "valid_mrr": {}}
    rows = next_item_rows({**report, "oracle": ceiling})
    assert rows[-1][:3] == ["ceiling: Bayes-optimal ranking (synthetic only)", "0.3200", "0.8000"]
    assert "reaches **0.781** of its MRR@20" in next_item_ceiling_text(
        {**report, "oracle": ceiling}
    )
    assert next_item_ceiling_text(report) == ""
    summary = {
        "next_item_sequence_mrr_at_20": 0.25,
        "next_item_sequence_hr_at_20": 0.6,
        "next_item_oracle_mrr_at_20": 0.32,
        "next_item_oracle_hr_at_20": 0.8,
    }
    console = Console(width=200, record=True)
    console.print(next_item_table(summary))
    text = console.export_text()
    assert "0.2500" in text and "0.781" in text and "0.3200" in text and "1.000" in text
