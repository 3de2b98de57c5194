"""`tabular_small.small_rows` (serving's per-event tabular row) against `tabular.vectorised_rows`
(the NumPy path training uses): the same float32 values, on Hypothesis-generated windows, on
sessions encoded as serving encodes them (carries included) and on all prefixes of the synthetic
generator's sessions, encoded as training encodes them.

The generated windows have what the features are touchy about: empty windows (all padding), one
event, full windows, SKUs out of the vocabulary or without one (pageviews), known SKUs with a zero
prod2vec vector and two with the same direction, rows without an add, stage tokens saying an add
came before the window, unknown prices, and windows 1 to 20 events wide.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smallboat.data.synth.generate import SynthConfig, synthesize
from smallboat.features import (
    FeatureSpec,
    ModelInputs,
    collapse_session,
    encode_collapsed,
    event_table,
    fit_vocabulary,
    tokenize,
    windows,
)
from smallboat.features import tabular as tabular_module
from smallboat.features.spec import (
    COUNT_FEATURES,
    N_STAGE_TOKENS,
    PRICE_NONE,
    SKU_FIRST,
    SKU_NONE,
    SKU_OOV,
    STAGE_BEFORE_ADD,
)
from smallboat.features.tabular import TABULAR_FEATURES, tabular_rows, unit_rows, vectorised_rows
from smallboat.features.tabular_small import SMALL_ROWS, small_rows
from tests.unit.test_small_batch import SPECS, VOCABS, batches

N_SKU_TOKENS = 12  # SKU tokens of the generated windows: 0 pad, 1 none, 2 OOV, 3..11 known


def _unit(n_tokens: int, dim: int, seed: int) -> np.ndarray:
    """`unit_rows` of random vectors; token 5 has a zero vector, 6 and 7 the same direction."""
    vectors = np.random.default_rng(seed).normal(size=(n_tokens, dim)).astype(np.float32)
    vectors[5] = 0.0
    vectors[6] = 3.0 * vectors[7]
    return unit_rows(vectors)


UNITS = [_unit(N_SKU_TOKENS, dim, seed=dim) for dim in (2, 8, 32)]

event = st.tuples(
    st.sampled_from([1, 2, 2, 3, 3, 4, 5]),  # action: pageview, detail, add, remove, purchase
    st.sampled_from([SKU_NONE, SKU_OOV, *range(SKU_FIRST, N_SKU_TOKENS)]),
    st.one_of(st.just(0.0), st.floats(0.0, 1.5, width=32)),  # log_gap
    st.integers(PRICE_NONE, PRICE_NONE + 10),
    st.integers(1, 5),  # category
    st.integers(1, 4),  # move: n/a, unknown, same, other
    st.integers(STAGE_BEFORE_ADD, N_STAGE_TOKENS - 1),
)


@st.composite
def generated(draw: st.DrawFn) -> tuple[ModelInputs, np.ndarray]:
    """A batch of left-padded windows of one width, and a unit-vector table."""
    width = draw(st.sampled_from([1, 2, 3, 4, 20]))
    n = draw(st.integers(1, SMALL_ROWS + 4))
    columns = np.zeros((7, n, width), dtype=np.float64)  # action .. stage, padded with 0
    counts = np.zeros((n, len(COUNT_FEATURES)), dtype=np.float32)
    used = np.zeros(n, dtype=np.int64)
    for i in range(n):
        k = draw(st.one_of(st.sampled_from([0, 1, width]), st.integers(0, width)))
        events = draw(st.lists(event, min_size=k, max_size=k))
        if draw(st.booleans()):  # no add-to-cart in the window
            events = [(2 if e[0] == 3 else e[0], *e[1:]) for e in events]
        if events:
            columns[:, i, width - k :] = np.array(events, dtype=np.float64).T
        counts[i] = draw(st.tuples(*[st.integers(0, 30)] * 5, st.floats(0.0, 4_000.0, width=32)))
        used[i] = k
    action, sku, log_gap, price, category, move, stage = columns
    ints = {
        name: values.astype(np.int64)
        for name, values in zip(
            ("action", "sku", "price", "category", "move", "stage"),
            (action, sku, price, category, move, stage),
            strict=True,
        )
    }
    inputs = ModelInputs(
        **ints,
        gap=np.zeros((n, width), dtype=np.int64),
        log_gap=log_gap.astype(np.float32),
        counts=counts,
        events_used=used,
        oov_skus=(ints["sku"] == SKU_OOV).sum(axis=1),
    )
    return inputs, UNITS[draw(st.integers(0, len(UNITS) - 1))]


def assert_same_rows(got: np.ndarray, want: np.ndarray) -> None:
    """The same float32 values (NaN where NaN), naming the columns that differ."""
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
    if not np.array_equal(got, want, equal_nan=True):
        differ = ~((got == want) | (np.isnan(got) & np.isnan(want)))
        rows, cols = np.nonzero(differ)
        found = [
            (int(r), TABULAR_FEATURES[c], float(got[r, c]), float(want[r, c]))
            for r, c in zip(rows[:10], cols[:10], strict=True)
        ]
        raise AssertionError(f"(row, column, per event, vectorised): {found}")


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated())
def test_the_per_event_rows_equal_the_vectorised_ones(
    batch: tuple[ModelInputs, np.ndarray],
) -> None:
    inputs, unit = batch
    want = vectorised_rows(inputs, unit)
    assert_same_rows(small_rows(inputs, unit), want)
    for i in range(len(inputs)):  # alone: a row does not depend on the batch around it
        assert_same_rows(small_rows(inputs.take(np.array([i])), unit), want[i : i + 1])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_the_per_event_rows_equal_the_vectorised_ones_on_encoded_sessions(
    batch: tuple[int, list[Any], list[Any] | None],
) -> None:
    """Windows as serving encodes them, earlier events folded into carries or not."""
    which, sessions, carries = batch
    inputs = encode_collapsed(sessions, VOCABS[which], SPECS[which], carries)
    unit = _unit(VOCABS[which].n_sku_tokens, 8, seed=which)
    assert_same_rows(small_rows(inputs, unit), vectorised_rows(inputs, unit))


@pytest.fixture(scope="module")
def synthetic_prefixes(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelInputs, np.ndarray]:
    """Every prefix of 300 sessions of the synthetic generator, encoded as training encodes them
    (a vocabulary fitted on their SKU counts, the default window of 20 events)."""
    folder = tmp_path_factory.mktemp("synthetic")
    synthesize(SynthConfig(sessions=300, seed=3), folder)
    events = pd.read_csv(folder / "browsing_train.csv", dtype=str)
    events["server_timestamp_epoch_ms"] = events["server_timestamp_epoch_ms"].astype(np.int64)
    events = events.astype(object).where(events.notna(), None)
    collapsed = [
        events_before_purchase
        for _, rows in events.groupby("session_id_hash", sort=True)
        if (events_before_purchase := collapse_session(rows.to_dict("records")))
    ]
    catalog = pd.read_csv(folder / "sku_to_content.csv")
    counts = pd.Series([sku for s in collapsed for _, sku, _ in s if sku]).value_counts()
    spec = FeatureSpec()
    vocab = fit_vocabulary(counts.to_dict(), catalog, spec)
    tokens = tokenize(event_table(collapsed), vocab, spec)
    lengths = np.array([len(s) for s in collapsed])
    session = np.repeat(np.arange(len(collapsed)), lengths)
    prefix = np.concatenate([np.arange(1, n + 1) for n in lengths])
    return windows(tokens, session, prefix, spec), _unit(vocab.n_sku_tokens, 32, seed=11)


def test_the_per_event_rows_equal_the_vectorised_ones_on_synthetic_sessions(
    synthetic_prefixes: tuple[ModelInputs, np.ndarray],
) -> None:
    inputs, unit = synthetic_prefixes
    assert len(inputs) > 1_000 and inputs.events_used.max() == 20
    want = vectorised_rows(inputs, unit)
    for size in (1, SMALL_ROWS):
        got = [
            small_rows(inputs.take(np.arange(start, min(start + size, len(inputs)))), unit)
            for start in range(0, len(inputs), size)
        ]
        assert_same_rows(np.concatenate(got), want)


def test_small_batches_take_the_per_event_path(
    synthetic_prefixes: tuple[ModelInputs, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tabular_rows` sends up to SMALL_ROWS prefixes to `small_rows` (else the properties above
    would not cover what serving runs), more to `vectorised_rows`, and an empty batch gives an
    empty (0, n_columns) array."""
    inputs, unit = synthetic_prefixes
    calls: list[str] = []

    def counted(name: str) -> Any:
        real = getattr(tabular_module, name)

        def call(*args: Any) -> np.ndarray:
            calls.append(name)
            return np.asarray(real(*args))

        return call

    for name in ("small_rows", "vectorised_rows"):
        monkeypatch.setattr(tabular_module, name, counted(name))
    for n in (1, SMALL_ROWS, SMALL_ROWS + 1):
        rows = tabular_rows(inputs.take(np.arange(n)), unit)
        assert rows.shape == (n, len(TABULAR_FEATURES))
    assert calls == ["small_rows", "small_rows", "vectorised_rows"]
    assert tabular_rows(inputs.take(np.arange(0)), unit).shape == (0, len(TABULAR_FEATURES))
