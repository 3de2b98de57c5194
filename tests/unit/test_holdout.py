"""The demo's live hold-out and its planted shift, and the live-traffic driver's failure report."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from smallboat.data.synth.generate import SynthConfig, synthesize
from smallboat.data.synth.holdout import (
    new_sku,
    plant_new_product_line,
    session_starts,
    split_release,
)
from smallboat.demo.traffic import drive
from smallboat.errors import DataError, SmallboatError
from smallboat.schema import BROWSING_EVENTS
from smallboat.web.process import free_port
from tests.landing_data import browsing_row


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("release")
    synthesize(SynthConfig(sessions=1_500, seed=5), folder)
    return folder


def test_split_keeps_every_session_once_on_its_side_of_the_cut(
    release: Path, tmp_path: Path
) -> None:
    held = split_release(release, tmp_path, live_fraction=0.2)
    con = duckdb.connect()
    starts = dict(
        con.execute(
            "select session_id_hash, min(cast(server_timestamp_epoch_ms as bigint)) from "
            "read_csv(?, header=true, all_varchar=true) group by 1",
            [str(release / "browsing_train.csv")],
        ).fetchall()
    )
    history = con.execute(
        "select session_id_hash, count(*) from read_csv(?, header=true, all_varchar=true) "
        "group by 1",
        [str(held.history / "browsing_train.csv")],
    ).fetchall()
    live = pq.read_table(held.live)
    live_sessions = set(live.column("session_id_hash").to_pylist())
    history_sessions = {s for s, _ in history}
    assert history_sessions.isdisjoint(live_sessions)
    assert history_sessions | live_sessions == set(starts)
    assert all(starts[s] < held.cut_ms for s in history_sessions)
    assert all(starts[s] >= held.cut_ms for s in live_sessions)
    assert 0.15 < len(live_sessions) / len(starts) < 0.25
    total = con.execute(
        "select count(*) from read_csv(?, header=true, all_varchar=true)",
        [str(release / "browsing_train.csv")],
    ).fetchone()
    assert total is not None and sum(n for _, n in history) + live.num_rows == total[0]
    assert live.schema == BROWSING_EVENTS.arrow_schema
    assert held.live_sessions == len(live_sessions) and held.history_sessions == len(history)
    for name in ("sku_to_content.csv", "oracle_intent.parquet"):
        assert (held.history / name).is_file()
    searches = con.execute(
        "select distinct session_id_hash from read_csv(?, header=true, all_varchar=true)",
        [str(held.history / "search_train.csv")],
    ).fetchall()
    assert not {s for (s,) in searches} & live_sessions


def test_split_refuses_a_bad_fraction_or_folder(release: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="live_fraction"):
        split_release(release, tmp_path, live_fraction=1.0)
    with pytest.raises(DataError, match="not a Coveo-format release"):
        split_release(tmp_path, tmp_path / "out", live_fraction=0.1)


def test_the_new_product_line_replaces_skus_of_later_sessions_only() -> None:
    rows = [
        ("early", "event_product", "detail", "A", 100),
        ("early", "pageview", None, None, 150),
        ("late", "event_product", "add", "A", 200),
        ("late", "pageview", None, None, 210),
        ("late", "event_product", "purchase", "B", 220),
    ]
    events = pa.table(
        {
            name: list(values)
            for name, values in zip(
                BROWSING_EVENTS.column_names[:5], zip(*rows, strict=True), strict=True
            )
        }
        | {"hashed_url": [None] * len(rows)},
        schema=BROWSING_EVENTS.arrow_schema,
    )
    shifted, n = plant_new_product_line(events, from_ms=200)
    assert n == 1
    assert shifted.column("product_sku_hash").to_pylist() == [
        "A",
        None,
        new_sku("A"),
        None,
        new_sku("B"),
    ]
    assert new_sku("A") != "A" and new_sku("A") == new_sku("A")
    for name in ("session_id_hash", "product_action", "server_timestamp_epoch_ms"):
        assert shifted.column(name).equals(events.column(name))
    assert session_starts(events) == {"early": 100, "late": 200}


def test_traffic_that_cannot_be_delivered_is_reported() -> None:
    events = pa.Table.from_pylist([browsing_row("s", 1)], schema=BROWSING_EVENTS.arrow_schema)
    nobody = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SmallboatError, match="1 of 1 clicks were not delivered"):
        drive(events, collector_url=nobody, service_url=nobody, concurrency=1)
