"""The synthetic generator: release formats, determinism, calibration and an exact oracle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from smallboat.data.synth.generate import (
    TARGETS,
    SynthConfig,
    SynthReport,
    challenge_score,
    synthesize,
)
from smallboat.data.synth.oracle import posterior_path
from smallboat.schema import COVEO_FILES, ORACLE_FILE, TABLES


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthReport]:
    out = tmp_path_factory.mktemp("synth") / "medium"
    return out, synthesize(SynthConfig(sessions=120_000, seed=7), out)


def read_release_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def collapsed_events(browsing: pd.DataFrame) -> pd.DataFrame:
    """session_events' rule, written independently in pandas: drop the pageview of a detail pair."""
    detail_keys = set(
        zip(
            browsing.session_id_hash[browsing.product_action == "detail"],
            browsing.server_timestamp_epoch_ms[browsing.product_action == "detail"],
            strict=True,
        )
    )
    keys = list(zip(browsing.session_id_hash, browsing.server_timestamp_epoch_ms, strict=True))
    paired = (
        np.array([k in detail_keys for k in keys]) & (browsing.event_type == "pageview").to_numpy()
    )
    ev = browsing[~paired].copy()
    ev["action"] = np.where(ev.event_type == "pageview", "pageview", ev.product_action)
    ev["ts"] = ev.server_timestamp_epoch_ms.astype(np.int64)
    return ev.sort_values(["session_id_hash", "ts"], kind="stable")


def test_writes_the_release_files_and_formats(tmp_path: Path) -> None:
    synthesize(SynthConfig(sessions=2_000, seed=1), tmp_path)
    for table, name in COVEO_FILES.items():
        header = (tmp_path / name).read_text().splitlines()[0]
        assert header.split(",") == TABLES[table].column_names
    browsing = read_release_csv(tmp_path / COVEO_FILES["browsing_events"])
    assert set(browsing.event_type) == {"pageview", "event_product"}
    assert set(browsing.product_action) <= {"", "detail", "add", "remove", "purchase"}
    assert (browsing.product_sku_hash[browsing.event_type == "pageview"] == "").all()
    ts = browsing.server_timestamp_epoch_ms.astype(np.int64).to_numpy()
    assert (np.diff(ts) < 0).any(), "rows must not be sorted, as in the release"
    pairs = browsing.groupby(["session_id_hash", "server_timestamp_epoch_ms"]).event_type.nunique()
    assert (pairs == 2).mean() > 0.05, "product views log a detail and a pageview at the same time"
    catalog = read_release_csv(tmp_path / COVEO_FILES["catalog"])
    assert set(catalog.price_bucket) == {""} | {f"{b}.0" for b in range(1, 11)}
    present = catalog.description_vector[catalog.description_vector != ""]
    assert present.str.match(r"^\[-?\d").all() and present.str.endswith("]").all()
    assert present.str.count(",").eq(49).all()
    assert (catalog.image_vector == "").any() and (catalog.category_hash.str.count("/") == 2).all()
    search = read_release_csv(tmp_path / COVEO_FILES["search_events"])
    clicked = search.clicked_skus_hash[search.clicked_skus_hash != ""]
    assert clicked.str.match(r"^\['[0-9a-f]{64}'(, '[0-9a-f]{64}')*\]$").all()
    assert search.product_skus_hash.str.count("'").eq(20).all()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a, b, c = (tmp_path / x for x in "abc")
    synthesize(SynthConfig(sessions=1_500, seed=3), a)
    synthesize(SynthConfig(sessions=1_500, seed=3), b)
    synthesize(SynthConfig(sessions=1_500, seed=4), c)
    for name in [*COVEO_FILES.values(), ORACLE_FILE]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "browsing_train.csv").read_bytes() != (c / "browsing_train.csv").read_bytes()


@pytest.mark.parametrize(
    ("figure", "tolerance"),
    [
        ("share of sessions with an add", 0.12),
        ("share of sessions with a purchase", 0.2),
        ("session length p90", 0.15),
        ("session length p95", 0.15),
        ("pageview share of rows", 0.05),
        ("detail share of rows", 0.1),
        ("add share of rows", 0.2),
        ("remove share of rows", 0.4),
        ("purchase share of rows", 0.4),
        ("rows per session", 0.1),
        ("share of sessions with a search", 0.1),
        ("search rows per searching session", 0.1),
        ("catalog share with description", 0.1),
        ("catalog share with no price", 0.1),
    ],
)
def test_calibrated_to_the_release(
    medium: tuple[Path, SynthReport], figure: str, tolerance: float
) -> None:
    _, report = medium
    generated, target = report.figures[figure], TARGETS[figure]
    assert abs(generated - target) <= tolerance * target, f"{figure}: {generated} vs {target}"


def test_median_session_length_is_three(medium: tuple[Path, SynthReport]) -> None:
    assert medium[1].figures["session length median"] == 3


def test_oracle_matches_empirical_purchase_rates(medium: tuple[Path, SynthReport]) -> None:
    oracle = pd.read_parquet(medium[0] / ORACLE_FILE)
    assert len(oracle) > 15_000
    assert set(oracle.k) == {0, 2, 4, 6, 8, 10}
    assert oracle.groupby(["session_id_hash", "k"]).size().max() == 1
    bins = pd.cut(oracle.p_purchase, np.linspace(0, 1, 11), include_lowest=True)
    for interval, group in oracle.groupby(bins, observed=True):
        if len(group) < 100:
            continue
        expected, seen = group.p_purchase.mean(), group.label.mean()
        se = np.sqrt(max(expected * (1 - expected), 1e-4) / len(group))
        assert abs(seen - expected) < 4 * se + 0.01, f"bin {interval}: {seen:.3f} vs {expected:.3f}"
    # The oracle is informative: far better than chance and than the majority class.
    assert roc_auc_score(oracle.label, oracle.p_purchase) > 0.8
    majority = np.full(len(oracle), float(oracle.label.mean() >= 0.5))
    assert challenge_score(
        oracle.p_purchase.to_numpy(), oracle.label.to_numpy(), oracle.k.to_numpy()
    ) > (challenge_score(majority, oracle.label.to_numpy(), oracle.k.to_numpy()) + 0.1)


def test_oracle_uses_only_the_observed_prefix(tmp_path: Path) -> None:
    """Recomputing P(purchase | prefix) from the written files alone gives the oracle's numbers."""
    synthesize(SynthConfig(sessions=20_000, seed=11), tmp_path)
    oracle = pd.read_parquet(tmp_path / ORACLE_FILE)
    chosen = oracle.session_id_hash.drop_duplicates().sample(150, random_state=0)
    browsing = read_release_csv(tmp_path / COVEO_FILES["browsing_events"])
    browsing = browsing[browsing.session_id_hash.isin(set(chosen))]
    catalog = read_release_csv(tmp_path / COVEO_FILES["catalog"]).set_index("product_sku_hash")
    events = collapsed_events(browsing)
    checked = 0
    for session_id, ev in events.groupby("session_id_hash"):
        cut = ev[ev.action != "purchase"]
        first_purchase = np.flatnonzero(ev.action.to_numpy() == "purchase")
        if len(first_purchase):
            cut = ev.iloc[: first_purchase[0]]
        skus = cut.product_sku_hash.replace("", np.nan)
        cats = [None if pd.isna(s) else catalog.category_hash[s] for s in skus]
        prices = [
            None if pd.isna(s) or catalog.price_bucket[s] == "" else float(catalog.price_bucket[s])
            for s in skus
        ]
        path = posterior_path(list(cut.action), list(cut.ts), cats, prices)
        rows = oracle[oracle.session_id_hash == session_id]
        for row in rows.itertuples():
            assert path[row.prefix_length - 1] == pytest.approx(row.p_purchase, abs=1e-9)
            checked += 1
    assert checked > 300


def _example_features(out: Path) -> pd.DataFrame:
    """Per (session, k): count features, and sequence features a count model cannot see."""
    oracle = pd.read_parquet(out / ORACLE_FILE)
    browsing = read_release_csv(out / COVEO_FILES["browsing_events"])
    browsing = browsing[browsing.session_id_hash.isin(set(oracle.session_id_hash))]
    catalog = read_release_csv(out / COVEO_FILES["catalog"]).set_index("product_sku_hash")
    ev = collapsed_events(browsing)
    ev["idx"] = ev.groupby("session_id_hash").cumcount() + 1
    ev["log_gap"] = np.log1p(ev.groupby("session_id_hash").ts.diff().fillna(0) / 1000)
    ev["category"] = ev.product_sku_hash.map(catalog.category_hash)
    first_add = ev[ev.action == "add"].groupby("session_id_hash").idx.min().rename("first_add")
    added_cat = (
        ev[ev.action == "add"].sort_values("idx").groupby("session_id_hash").category.first()
    ).rename("added_category")
    ev = ev.join(first_add, on="session_id_hash").join(added_cat, on="session_id_hash")
    m = oracle.merge(ev, on="session_id_hash")
    m = m[m.idx <= m.prefix_length]
    m["after"] = m.idx > m.first_add
    m["after_gap"] = np.where(m.after, m.log_gap, np.nan)
    m["after_stay"] = np.where(
        m.after & (m.action == "detail"), (m.category == m.added_category).astype(float), np.nan
    )
    for action in ("pageview", "detail", "add", "remove"):
        m[f"n_{action}"] = (m.action == action).astype(int)
    g = m.groupby(["session_id_hash", "k"])
    feats = g.agg(
        n_pageview=("n_pageview", "sum"),
        n_detail=("n_detail", "sum"),
        n_add=("n_add", "sum"),
        n_remove=("n_remove", "sum"),
        length=("prefix_length", "first"),
        label=("label", "first"),
        after_gap=("after_gap", "mean"),
        last_gap=("log_gap", "last"),
        after_stay=("after_stay", "mean"),
    ).reset_index()
    return feats.fillna({"after_gap": 0.0, "after_stay": 0.5})


def test_purchase_depends_on_the_sequence_not_only_on_counts(
    medium: tuple[Path, SynthReport],
) -> None:
    """Time gaps and category moves after the add carry signal that action counts do not."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    feats = _example_features(medium[0])
    counts = ["n_pageview", "n_detail", "n_add", "n_remove", "length", "k"]
    sequence = [*counts, "after_gap", "last_gap", "after_stay"]
    train = feats.session_id_hash.str[0].isin(list("01234567"))
    aucs = {}
    for name, cols in (("counts", counts), ("sequence", sequence)):
        scaler = StandardScaler().fit(feats.loc[train, cols])
        model = LogisticRegression(max_iter=1_000).fit(
            scaler.transform(feats.loc[train, cols]), feats.label[train]
        )
        p = model.predict_proba(scaler.transform(feats.loc[~train, cols]))[:, 1]
        aucs[name] = roc_auc_score(feats.label[~train], p)
    assert aucs["sequence"] > aucs["counts"] + 0.05, aucs
