"""The MLflow registry wrapper against real MLflow: SQLite stores under the test's home, and one
real `mlflow server` on 127.0.0.1. Bundles are small real directories written here."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from smallboat import registry
from smallboat.bundle import BUNDLE_FORMAT, CARD_FILE, META_FILE, VOCAB_DIR, WEIGHTS_FILE
from smallboat.config import Settings
from smallboat.registry import RegistryError

MODEL = "intent"
EXPERIMENT = "smallboat intent"


@pytest.fixture(autouse=True)
def _no_configured_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from the default store unless it configures one itself."""
    monkeypatch.delenv("SMALLBOAT_MLFLOW_URI", raising=False)


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store, created (migrated) once: copying it saves each test the
    ~1.5 s of migrations. The fresh-home test does not use it."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(settings: Settings, migrated_db: Path) -> Settings:
    """`settings` whose default store already exists (a copy of the migrated template)."""
    settings.mlflow_dir.mkdir(parents=True)
    shutil.copyfile(migrated_db, settings.mlflow_dir / "mlflow.db")
    return settings


def write_bundle(folder: Path, *, seed: int) -> Path:
    """A small bundle laid out like a real one: bundle.json, weights, a vocabulary, a card."""
    folder.mkdir(parents=True)
    meta = {
        "format": BUNDLE_FORMAT,
        "model_name": MODEL,
        "feature_spec": {"max_events": 20, "seed": seed},
        "model_config": {"hidden": 8},
        "metrics": {"auc": 0.5 + seed / 100},
    }
    (folder / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
    (folder / WEIGHTS_FILE).write_bytes(os.urandom(4096) + bytes([seed]))
    (folder / VOCAB_DIR).mkdir()
    (folder / VOCAB_DIR / "sku.json").write_text(json.dumps([f"sku{i}" for i in range(seed + 3)]))
    (folder / CARD_FILE).write_text(f"<html><body>bundle {seed}</body></html>")
    return folder


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def publish(
    settings: Settings,
    tmp_path: Path,
    *,
    seed: int,
    auc: float,
    champion_score: float | None,
    champion_version: int | None = None,
    min_improvement: float = 0.0,
    **gate: Any,
) -> registry.Publication:
    bundle = write_bundle(tmp_path / f"bundle{seed}", seed=seed)
    card = tmp_path / f"card{seed}.html"
    card.write_text(f"<html><body>flow card {seed}</body></html>")
    return registry.publish(
        settings,
        experiment=EXPERIMENT,
        model_name=MODEL,
        run_name=f"run-{seed}",
        params={"lr": 0.01, "grid": [{"hidden": 8}, {"hidden": 16}], "max_events": 20},
        metrics={"auc": auc, "log_loss": 0.4},
        bundle_dir=bundle,
        card_path=card,
        tags={"metaflow.pathspec": f"TrainFlow/{seed}"},
        gate_metric="auc",
        champion_score=champion_score,
        champion_version=champion_version,
        min_improvement=min_improvement,
        **gate,
    )


def run_of(settings: Settings, run_id: str):  # an mlflow Run
    from mlflow.tracking import MlflowClient

    uri = settings.mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri).get_run(run_id)


def test_with_a_level_only_a_significant_gain_or_an_invalid_champion_promotes(
    store: Settings, tmp_path: Path
) -> None:
    level: dict[str, Any] = {"alpha": 0.05, "test": "DeLong one-sided"}
    publish(store, tmp_path, seed=1, auc=0.80, champion_score=None, **level)
    noise = publish(store, tmp_path, seed=2, auc=0.81, champion_score=0.80, p_value=0.3, **level)
    assert not noise.decision.promoted
    assert "but not significantly (DeLong one-sided p = 0.3 >= alpha 0.05)" in (
        noise.decision.summary
    )
    undefined = publish(store, tmp_path, seed=3, auc=0.9, champion_score=0.8, **level)
    assert not undefined.decision.promoted  # no p-value: no evidence
    with pytest.raises(RegistryError, match="has champion v1 but no champion_score"):
        publish(store, tmp_path, seed=9, auc=0.9, champion_score=None, **level)
    real = publish(store, tmp_path, seed=4, auc=0.83, champion_score=0.80, p_value=0.01, **level)
    assert real.decision.promoted and real.decision.previous_version == 1
    invalid = publish(
        store,
        tmp_path,
        seed=5,
        auc=0.70,
        champion_score=None,
        champion_invalid="its vocabulary does not know 80.0% of the test set's SKU events",
        **level,
    )
    assert invalid.decision.promoted and invalid.decision.previous_version == 4
    champ = registry.champion(store, model_name=MODEL)
    assert champ is not None and champ.version == 5

    history = {v.version: v for v in registry.model_versions(store, model_name=MODEL)}
    assert {n: (v.gate_decision, v.p_value) for n, v in history.items()} == {
        5: ("promoted", None),
        4: ("promoted", 0.01),
        3: ("rejected", None),
        2: ("rejected", 0.3),
        1: ("promoted", None),
    }
    assert history[4].tags["gate.alpha"] == "0.05"
    assert history[5].tags["gate.champion_invalid"].startswith("its vocabulary")
    run = run_of(store, noise.run.run_id)
    assert (run.data.tags["gate.p_value"], run.data.tags["gate.champion"]) == ("0.3", "0.8")


def test_first_version_becomes_champion_and_its_bundle_round_trips(
    store: Settings, tmp_path: Path
) -> None:
    assert registry.champion(store, model_name=MODEL) is None
    first = publish(store, tmp_path, seed=1, auc=0.71, champion_score=None)

    assert first.version.version == 1
    assert first.decision.promoted
    assert first.decision.previous_version is None
    assert first.decision.summary == "promoted intent v1 to champion: no champion yet (auc 0.7100)"
    champ = registry.champion(store, model_name=MODEL)
    assert champ is not None
    assert (champ.version, champ.run_id) == (1, first.run.run_id)
    assert champ.metrics == {"auc": 0.71, "log_loss": 0.4}

    run = run_of(store, first.run.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["grid"] == '[{"hidden": 8}, {"hidden": 16}]'
    assert run.data.tags["metaflow.pathspec"] == "TrainFlow/1"
    assert run.data.tags["smallboat.bundle.format"] == "1"
    assert run.data.tags["gate.decision"] == "promoted"
    assert run.data.tags["gate.champion"] == "none"

    downloaded = registry.download_bundle(store, model_name=MODEL)
    assert downloaded.is_relative_to(store.model_cache_dir)
    assert files_of(downloaded) == files_of(tmp_path / "bundle1")
    card = Path(run.info.artifact_uri.removeprefix("file://")) / "card.html"
    assert card.read_text() == "<html><body>flow card 1</body></html>"

    # A second request reuses the download: it no longer needs the store's copy at all.
    shutil.rmtree(Path(run.info.artifact_uri.removeprefix("file://")) / "bundle")
    assert registry.download_bundle(store, model_name=MODEL, version=1) == downloaded


def test_gate_promotes_only_a_better_challenger_and_records_every_decision(
    store: Settings, tmp_path: Path
) -> None:
    publish(store, tmp_path, seed=1, auc=0.80, champion_score=None)

    with pytest.raises(RegistryError, match="has champion v1 but no champion_score"):
        publish(store, tmp_path, seed=9, auc=0.90, champion_score=None)
    assert [v.version for v in registry.model_versions(store, model_name=MODEL)] == [1]

    worse = publish(store, tmp_path, seed=2, auc=0.78, champion_score=0.79)
    assert not worse.decision.promoted
    assert worse.decision.summary == (
        "kept intent v1 as champion: v2's auc 0.7800 is not above v1's 0.7900 by more than 0"
    )
    champ = registry.champion(store, model_name=MODEL)
    assert champ is not None and champ.version == 1
    below_margin = publish(
        store, tmp_path, seed=3, auc=0.795, champion_score=0.79, min_improvement=0.01
    )
    assert not below_margin.decision.promoted
    tie = publish(store, tmp_path, seed=4, auc=0.79, champion_score=0.79)
    assert not tie.decision.promoted

    better = publish(store, tmp_path, seed=5, auc=0.83, champion_score=0.791, champion_version=1)
    assert better.decision.promoted
    assert better.decision.previous_version == 1
    assert better.decision.summary == (
        "promoted intent v5 to champion: auc 0.8300 is above v1's 0.7910 by more than 0"
    )
    champ = registry.champion(store, model_name=MODEL)
    assert champ is not None and champ.version == 5

    # A score of the old champion no longer counts once another version took over.
    with pytest.raises(RegistryError, match="champion of intent is v5, not the v1 that was scored"):
        publish(store, tmp_path, seed=6, auc=0.99, champion_score=0.79, champion_version=1)

    history = {v.version: v for v in registry.model_versions(store, model_name=MODEL)}
    assert list(history) == [5, 4, 3, 2, 1]
    assert [v.version for v in history.values() if v.is_champion] == [5]
    assert history[5].aliases == ("champion",)
    gate = {n: (v.gate_decision, v.score, v.champion_score) for n, v in history.items()}
    assert gate == {
        5: ("promoted", 0.83, 0.791),
        4: ("rejected", 0.79, 0.79),
        3: ("rejected", 0.795, 0.79),
        2: ("rejected", 0.78, 0.79),
        1: ("promoted", 0.80, None),
    }
    assert history[5].tags["gate.previous_version"] == "1"
    assert history[3].tags["gate.min_improvement"] == "0.01"
    assert history[2].gate_metric == "auc"
    assert history[5].created_at >= history[1].created_at

    rejected_run = run_of(store, worse.run.run_id)
    assert rejected_run.data.tags["gate.decision"] == "rejected"
    assert rejected_run.data.tags["gate.champion"] == "0.79"
    assert rejected_run.data.tags["gate.model_version"] == "intent/2"

    # The old champion's bundle stays reachable by version; the alias now serves v5.
    assert files_of(registry.download_bundle(store, model_name=MODEL)) == files_of(
        tmp_path / "bundle5"
    )
    assert files_of(registry.download_bundle(store, model_name=MODEL, version=1)) == files_of(
        tmp_path / "bundle1"
    )


def test_lower_is_better_metric(store: Settings, tmp_path: Path) -> None:
    v1 = publish(store, tmp_path, seed=1, auc=0.7, champion_score=None).version.version
    v2 = registry.register_version(
        store,
        model_name=MODEL,
        run_id=registry.champion(store, model_name=MODEL).run_id,  # type: ignore[union-attr]
    ).version
    for challenger, promoted, holder in [(0.41, False, v1), (0.40, False, v1), (0.39, True, v2)]:
        decision = registry.gate_and_promote(
            store,
            model_name=MODEL,
            version=v2,
            challenger_score=challenger,
            champion_score=0.40,
            metric="log_loss",
            higher_is_better=False,
        )
        assert (decision.promoted, decision.champion_version) == (promoted, holder), challenger


def test_default_store_lives_under_home_and_nothing_lands_in_the_cwd(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    home_before = {p.name for p in settings.home_dir.iterdir()}
    import mlflow

    global_uri = mlflow.get_tracking_uri()
    started = time.perf_counter()
    result = publish(settings, tmp_path, seed=1, auc=0.7, champion_score=None)
    elapsed = time.perf_counter() - started

    assert list(cwd.iterdir()) == []
    assert mlflow.get_tracking_uri() == global_uri  # no global state was set
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert settings.mlflow_tracking_uri == f"sqlite:///{settings.home_dir}/mlflow/mlflow.db"
    assert (settings.home_dir / "mlflow" / "mlflow.db").is_file()
    artifacts = settings.home_dir / "mlflow" / "artifacts" / "smallboat-intent"
    assert result.run.artifact_uri == (artifacts / result.run.run_id / "artifacts").as_uri()
    assert (artifacts / result.run.run_id / "artifacts" / "bundle" / "bundle.json").is_file()
    assert {p.name for p in settings.home_dir.iterdir()} == home_before | {"mlflow"}
    assert {p.name for p in settings.mlflow_dir.iterdir()} == {"mlflow.db", "artifacts"}
    assert not any(p.name == "mlruns" for p in settings.home_dir.rglob("*"))
    assert elapsed < 30, f"log+register+gate on a fresh store took {elapsed:.1f} s"


def test_a_configured_database_uri_is_honoured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: Settings, migrated_db: Path
) -> None:
    elsewhere = tmp_path / "team" / "registry.db"
    elsewhere.parent.mkdir()
    shutil.copyfile(migrated_db, elsewhere)
    monkeypatch.setenv("SMALLBOAT_MLFLOW_URI", f"sqlite:///{elsewhere}")
    configured = Settings()
    publish(configured, tmp_path, seed=1, auc=0.7, champion_score=None)

    assert elsewhere.is_file()
    assert registry.champion(configured, model_name=MODEL) is not None
    assert registry.champion(store, model_name=MODEL) is None  # the default store is separate
    # A database store has no server to hold artifacts: they still go under the home.
    assert (configured.mlflow_artifacts_dir / "smallboat-intent").is_dir()


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real `mlflow server` on a free 127.0.0.1 port, its artifacts in its own folder."""
    folder = tmp_path / "server"
    folder.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder / 'server.db'}",
        "--artifacts-destination",
        str(folder / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = (folder / "server.log").open("wb")
    proc = subprocess.Popen(
        command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server did not start: {(folder / 'server.log').read_text()}"
                )
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.mark.slow
def test_a_tracking_server_is_honoured(
    mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.setenv("SMALLBOAT_MLFLOW_URI", mlflow_server)
    remote = Settings()
    first = publish(remote, tmp_path, seed=1, auc=0.7, champion_score=None)
    second = publish(remote, tmp_path, seed=2, auc=0.6, champion_score=0.69)

    assert first.decision.promoted and not second.decision.promoted
    assert first.run.artifact_uri.startswith("mlflow-artifacts:/")
    stored = tmp_path / "server" / "artifacts"
    assert any(p.name == "bundle.json" for p in stored.rglob("*"))
    assert not remote.mlflow_dir.exists()  # the server chose where artifacts live
    assert [(v.version, v.aliases) for v in registry.model_versions(remote, model_name=MODEL)] == [
        (2, ()),
        (1, ("champion",)),
    ]
    assert files_of(registry.download_bundle(remote, model_name=MODEL)) == files_of(
        tmp_path / "bundle1"
    )


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("nonsense://store", r"nonsense://store \(SMALLBOAT_MLFLOW_URI\) could not .*unsupported"),
        ("postgresql://ann:s3cret@127.0.0.1:1/mlflow", r"ann:\*\*\*@127\.0\.0\.1:1.*driver"),
        (
            "http://127.0.0.1:{closed}",
            r"127\.0\.0\.1:\d+ \(SMALLBOAT_MLFLOW_URI\) is not reachable",
        ),
        ("sqlite:///{file}/mlflow.db", r"could not .*File exists"),
    ],
)
def test_a_bad_tracking_uri_is_one_clear_error(
    uri: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("SMALLBOAT_MLFLOW_URI", uri.format(closed=closed, file=a_file))
    started = time.perf_counter()
    with pytest.raises(RegistryError, match=expected) as caught:
        registry.champion(Settings(), model_name=MODEL)
    assert "s3cret" not in str(caught.value)
    assert time.perf_counter() - started < 15


def test_missing_models_bundles_and_names_are_clear_errors(store: Settings, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no registered model named 'intent' at sqlite:///"):
        registry.download_bundle(store, model_name=MODEL)
    with pytest.raises(RegistryError, match="no registered model named 'intent'"):
        registry.model_versions(store, model_name=MODEL)
    with pytest.raises(RegistryError, match=r"has no bundle\.json: not a model bundle"):
        registry.log_training_run(
            store,
            experiment=EXPERIMENT,
            run_name="r",
            params={},
            metrics={},
            bundle_dir=tmp_path,
            card_path=None,
            tags={},
        )
    with pytest.raises(RegistryError, match="model name 'my model' must be"):
        registry.champion(store, model_name="my model")

    publish(store, tmp_path, seed=1, auc=0.7, champion_score=None)
    with pytest.raises(RegistryError, match="intent has no version 7"):
        registry.download_bundle(store, model_name=MODEL, version=7)
    with pytest.raises(RegistryError, match="no version with alias 'staging'"):
        registry.download_bundle(store, model_name=MODEL, alias="staging")
    with pytest.raises(RegistryError, match="no run 0123abc at"):
        registry.register_version(store, model_name=MODEL, run_id="0123abc")
    with pytest.raises(RegistryError, match="challenger_score for intent v1 is nan"):
        registry.gate_and_promote(
            store,
            model_name=MODEL,
            version=1,
            challenger_score=float("nan"),
            champion_score=None,
            metric="auc",
        )
