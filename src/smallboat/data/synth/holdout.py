"""Hold out the latest sessions of a Coveo-format release as "live" traffic, and plant a shift.

The closed-loop demo and its end-to-end test train on the history and then replay the held-out
sessions through the collector and the prediction service as if they were happening now:

- `split_release(folder, out, live_fraction)` writes `out/history/` (a Coveo-format folder with
  the sessions that started before the cut, their searches, the whole catalog and the oracle file)
  and `out/live.parquet` (the browsing rows of the later sessions, canonical columns);
- `plant_new_product_line(events, from_ms)` is the planted shift: sessions that start at or after
  `from_ms` browse a product line the model has never seen (every SKU replaced by a new one, with
  no catalog entry), as when a shop launches a new range. Actions and times are untouched.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from smallboat.errors import DataError
from smallboat.schema import BROWSING_EVENTS, COVEO_FILES, ORACLE_FILE

HISTORY_DIR = "history"
LIVE_FILE = "live.parquet"


@dataclass(frozen=True)
class HeldOut:
    history: Path
    live: Path
    cut_ms: int
    history_sessions: int
    live_sessions: int
    live_events: int


def split_release(folder: Path, out: Path, *, live_fraction: float) -> HeldOut:
    """Split the release in `folder` by session start time (see the module docstring)."""
    if not 0.0 < live_fraction < 1.0:
        raise DataError(f"live_fraction must be in (0, 1), got {live_fraction}")
    browsing = folder / COVEO_FILES["browsing_events"]
    if not browsing.is_file():
        raise DataError(f"{folder} has no {browsing.name}: not a Coveo-format release")
    history = out / HISTORY_DIR
    shutil.rmtree(history, ignore_errors=True)
    history.mkdir(parents=True)
    con = duckdb.connect()
    try:
        con.execute(
            "create table b as select * from read_csv(?, header=true, all_varchar=true)",
            [str(browsing)],
        )
        con.execute(
            "create table starts as select session_id_hash, "
            "min(cast(server_timestamp_epoch_ms as bigint)) as start_ms from b group by 1"
        )
        [(cut,)] = con.execute(
            "select quantile_disc(start_ms, ?) from starts", [1.0 - live_fraction]
        ).fetchall()
        con.execute(
            "copy (select b.* from b join starts using (session_id_hash) where start_ms < ?) "
            "to ? (header true)",
            [cut, str(history / browsing.name)],
        )
        search = folder / COVEO_FILES["search_events"]
        if search.is_file():
            con.execute(
                "copy (select s.* from read_csv(?, header=true, all_varchar=true) s "
                "where session_id_hash not in (select session_id_hash from starts "
                "where start_ms >= ?)) to ? (header true)",
                [str(search), cut, str(history / search.name)],
            )
        live_rows = con.execute(
            "select b.session_id_hash, b.event_type, nullif(b.product_action, ''), "
            "nullif(b.product_sku_hash, ''), cast(b.server_timestamp_epoch_ms as bigint), "
            "nullif(b.hashed_url, '') from b join starts using (session_id_hash) "
            "where start_ms >= ? order by 5, 1",
            [cut],
        ).fetchall()
        [(n_history,)] = con.execute(
            "select count(*) from starts where start_ms < ?", [cut]
        ).fetchall()
    finally:
        con.close()
    for name in (COVEO_FILES["catalog"], ORACLE_FILE):
        if (folder / name).is_file():
            shutil.copy2(folder / name, history / name)
    columns: list[Any] = list(zip(*live_rows, strict=True)) if live_rows else [[]] * 6
    live = pa.table(
        {
            name: list(values)
            for name, values in zip(BROWSING_EVENTS.column_names, columns, strict=True)
        },
        schema=BROWSING_EVENTS.arrow_schema,
    )
    live_path = out / LIVE_FILE
    pq.write_table(live, live_path)
    return HeldOut(
        history=history,
        live=live_path,
        cut_ms=int(cut),
        history_sessions=int(n_history),
        live_sessions=len(set(live.column("session_id_hash").to_pylist())),
        live_events=live.num_rows,
    )


def session_starts(events: pa.Table) -> dict[str, int]:
    """First event time of each session in `events`."""
    grouped = events.group_by("session_id_hash").aggregate([("server_timestamp_epoch_ms", "min")])
    return dict(
        zip(
            grouped.column("session_id_hash").to_pylist(),
            grouped.column("server_timestamp_epoch_ms_min").to_pylist(),
            strict=True,
        )
    )


def new_sku(sku: str) -> str:
    """The planted product line's twin of `sku`: a new id of the same shape."""
    return hashlib.sha256(f"new-line:{sku}".encode()).hexdigest()[: max(len(sku), 16)]


def plant_new_product_line(events: pa.Table, from_ms: int) -> tuple[pa.Table, int]:
    """Replace every SKU of the sessions starting at or after `from_ms` by a never-seen one;
    returns the shifted events and how many sessions were shifted."""
    starts = session_starts(events)
    shifted = {s for s, start in starts.items() if start >= from_ms}
    sessions = events.column("session_id_hash").to_pylist()
    skus = events.column("product_sku_hash").to_pylist()
    mask = np.fromiter((s in shifted for s in sessions), dtype=bool, count=len(sessions))
    replaced = [
        new_sku(sku) if hit and sku is not None else sku
        for sku, hit in zip(skus, mask, strict=True)
    ]
    index = events.schema.get_field_index("product_sku_hash")
    out = events.set_column(index, "product_sku_hash", pa.array(replaced, pa.string()))
    return out, len(shifted)
