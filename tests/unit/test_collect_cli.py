"""The collector's verbs: help, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from smallboat.cli import app
from smallboat.config import Settings


@pytest.mark.parametrize(
    "verb",
    [["collect"], ["collect", "serve"], ["collect", "compact"], ["collect", "status"], ["replay"]],
    ids=" ".join,
)
def test_collect_verbs_have_help(verb: list[str]) -> None:
    result = CliRunner().invoke(app, [*verb, "--help"], terminal_width=120)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_compact_with_nothing_logged_says_so(settings: Settings) -> None:
    result = CliRunner().invoke(app, ["collect", "compact"])
    assert result.exit_code == 0, result.output
    assert "nothing to compact: no closed log segments" in result.output


def test_status_of_a_home_without_a_collector(settings: Settings) -> None:
    result = CliRunner().invoke(app, ["collect", "status"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "collector: not running",
        "log: 0 segment(s), 0 bytes; pending compaction: 0 segment(s), 0 bytes",
        "landed: 0 segment(s) compacted, 0 rows in 0 file(s), 0 duplicate(s) dropped",
        "quarantined: no corrupt log segment",
        "ignored hits: none",
        "refused hits: none",
    ]


def test_replay_to_an_https_url_is_a_one_line_error(tmp_path: Path) -> None:
    events = tmp_path / "browsing_train.csv"
    events.write_text(
        "session_id_hash,event_type,product_action,product_sku_hash,"
        "server_timestamp_epoch_ms,hashed_url\ns1,pageview,,,1600000000000,u1\n"
    )
    result = CliRunner().invoke(app, ["replay", str(events), "--url", "https://collector.test"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "must be http://host[:port]: this client speaks plain HTTP/1.1" in result.output


def test_replay_of_a_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    result = CliRunner().invoke(app, ["replay", str(missing), "--url", "http://127.0.0.1:1"])
    assert result.exit_code == 1
    assert f"{missing} is not a file; replay streams one browsing file" in result.output


def test_replay_of_a_search_file_says_it_needs_browsing_events(tmp_path: Path) -> None:
    search = tmp_path / "search_train.csv"
    search.write_text(
        "session_id_hash,query_vector,clicked_skus_hash,product_skus_hash,"
        "server_timestamp_epoch_ms\ns1,,,,1600000000000\n"
    )
    result = CliRunner().invoke(app, ["replay", str(search), "--url", "http://127.0.0.1:1"])
    assert result.exit_code == 1
    assert "holds search_events, not browsing events" in result.output


def test_replay_to_a_collector_that_is_not_there_stops_with_one_line(tmp_path: Path) -> None:
    from smallboat.web.process import free_port

    events = tmp_path / "browsing_train.csv"
    rows = "".join(f"s1,pageview,,,{1600000000000 + i},u{i}\n" for i in range(50))
    events.write_text(
        "session_id_hash,event_type,product_action,product_sku_hash,"
        "server_timestamp_epoch_ms,hashed_url\n" + rows
    )
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(
        app, ["replay", str(events), "--url", url, "--concurrency", "2"], terminal_width=200
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert f"cannot replay to {url}: no answer from the collector" in result.output
    assert "is it running?" in result.output
