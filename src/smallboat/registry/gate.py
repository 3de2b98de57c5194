"""The champion/challenger gate, and `publish`: a training run logged, registered and gated.

A new version takes the `champion` alias only through the gate, which compares two scores measured
on the same test set and records its decision on the version and the run whichever way it goes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path

from smallboat.config import Settings
from smallboat.registry import store
from smallboat.registry.records import (
    CHAMPION,
    GATE_PREFIX,
    GateDecision,
    Publication,
    RegistryError,
)
from smallboat.registry.runs import log_training_run
from smallboat.registry.versions import champion, register_version

log = logging.getLogger(__name__)


def publish(
    settings: Settings,
    *,
    experiment: str,
    model_name: str,
    run_name: str,
    params: Mapping[str, object],
    metrics: Mapping[str, float],
    bundle_dir: Path,
    card_path: Path | None,
    tags: Mapping[str, str] | None,
    gate_metric: str,
    champion_score: float | None,
    champion_version: int | None = None,
    min_improvement: float = 0.0,
    higher_is_better: bool = True,
) -> Publication:
    """Log the run, register its bundle, and gate it on `metrics[gate_metric]`.

    `champion_score` is the current champion's `gate_metric` on the SAME test set as `metrics`
    (None when `champion()` says there is none): score the champion's bundle before calling,
    and pass the `champion_version` scored so a champion promoted meanwhile is noticed.
    Both checks run before anything is logged; the gate repeats the champion check after
    registering, so a champion promoted in that window leaves the new version registered
    without gate tags (and not promoted), with a RegistryError saying why.
    """
    if gate_metric not in metrics:
        raise RegistryError(
            f"gate metric {gate_metric!r} is not among the run's metrics ({', '.join(metrics)})"
        )
    current = champion(settings, model_name=model_name)
    _check_scored_champion(
        model_name,
        current=None if current is None else current.version,
        scored=champion_version,
        champion_score=champion_score,
    )
    run = log_training_run(
        settings,
        experiment=experiment,
        run_name=run_name,
        params=params,
        metrics=metrics,
        bundle_dir=bundle_dir,
        card_path=card_path,
        tags=tags,
    )
    version = register_version(settings, model_name=model_name, run_id=run.run_id)
    decision = gate_and_promote(
        settings,
        model_name=model_name,
        version=version.version,
        challenger_score=float(metrics[gate_metric]),
        champion_score=champion_score,
        champion_version=champion_version,
        metric=gate_metric,
        min_improvement=min_improvement,
        higher_is_better=higher_is_better,
    )
    return Publication(run=run, version=version, decision=decision)


def gate_and_promote(
    settings: Settings,
    *,
    model_name: str,
    version: int,
    challenger_score: float,
    champion_score: float | None,
    metric: str,
    champion_version: int | None = None,
    min_improvement: float = 0.0,
    higher_is_better: bool = True,
) -> GateDecision:
    """The challenger gate: make `version` the champion only if it beats the current one.

    Both scores must come from the SAME test set: the caller scores the champion's bundle on the
    challenger's test set and passes the number. With no champion yet, the version is promoted;
    otherwise only when it beats `champion_score` by more than `min_improvement` (in the better
    direction of the metric). With `champion_version` (the version that was scored), a champion
    that changed meanwhile is an error rather than a comparison against the wrong model. The
    decision and both scores become `gate.*` tags on the version and its run either way.
    """
    store.check_model_name(model_name)
    for label, score in (
        ("challenger_score", challenger_score),
        ("champion_score", champion_score),
    ):
        if score is not None and not math.isfinite(score):
            raise RegistryError(
                f"{label} for {model_name} v{version} is {score}: gate on a finite {metric}"
            )
    client = store.client(settings)
    with store.mlflow_errors(settings, f"gate {model_name} v{version}"):
        model = store.registered_model(client, settings, model_name)
        target = store.model_version(client, settings, model_name, version)
        previous = store.alias_versions(model).get(CHAMPION)
        if previous == version:
            raise RegistryError(f"{model_name} v{version} is already the champion: nothing to gate")
        _check_scored_champion(
            model_name, current=previous, scored=champion_version, champion_score=champion_score
        )
        if previous is None or champion_score is None:
            if champion_score is not None:
                log.warning(
                    "%s has no champion: ignoring champion_score %s", model_name, champion_score
                )
            champion_score, promoted = None, True
        else:
            gain = challenger_score - champion_score
            promoted = (gain if higher_is_better else -gain) > min_improvement
        decision = GateDecision(
            model_name=model_name,
            version=version,
            promoted=promoted,
            metric=metric,
            challenger_score=float(challenger_score),
            champion_score=None if champion_score is None else float(champion_score),
            previous_version=previous,
            min_improvement=float(min_improvement),
            higher_is_better=higher_is_better,
        )
        if promoted:
            client.set_registered_model_alias(model_name, CHAMPION, str(version))
        tags = decision.tags()
        for key, value in tags.items():
            client.set_model_version_tag(model_name, str(version), key, value)
        from mlflow.entities import RunTag

        client.log_batch(
            store.version_run_id(target, settings),
            tags=[RunTag(k, v) for k, v in tags.items()]
            + [RunTag(f"{GATE_PREFIX}model_version", f"{model_name}/{version}")],
        )
    log.info("%s", decision.summary)
    return decision


def _check_scored_champion(
    model_name: str, *, current: int | None, scored: int | None, champion_score: float | None
) -> None:
    """The gate compares against the champion that was scored, or refuses."""
    if current is not None and champion_score is None:
        raise RegistryError(
            f"{model_name} has champion v{current} but no champion_score was given: score the "
            "champion's bundle on the challenger's test set and pass it"
        )
    if scored is not None and current != scored:
        now = "no champion" if current is None else f"v{current}"
        raise RegistryError(
            f"the champion of {model_name} is {now}, not the v{scored} that was scored: score "
            "the current champion on the same test set and gate again"
        )
