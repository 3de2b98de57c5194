"""The champion/challenger gate, and `publish`: a training run logged, registered and gated.

A new version takes the `champion` alias only through the gate, which compares two scores measured
on the same test set (with a level, also a paired test: `paired_auc_test`, DeLong one-sided) and
records its decision on the version and the run whichever way it goes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy.typing as npt

from smallboat.config import Settings
from smallboat.metrics.uncertainty import delong_auc_difference
from smallboat.registry import store
from smallboat.registry.records import (
    CHAMPION,
    GATE_PREFIX,
    GateDecision,
    Publication,
    RegistryError,
    gate_promotes,
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
    p_value: float | None = None,
    alpha: float | None = None,
    test: str | None = None,
    champion_invalid: str | None = None,
) -> Publication:
    """Log the run, register its bundle, and gate it on `metrics[gate_metric]`.

    `champion_score` is the current champion's `gate_metric` on the SAME test set as `metrics`
    (None when `champion()` says there is none): score the champion's bundle before calling,
    and pass the `champion_version` scored so a champion promoted meanwhile is noticed. With
    `alpha`, pass the paired test's one-sided `p_value` too (`paired_auc_test`); with
    `champion_invalid` (why the champion's bundle no longer fits), no champion score is needed.
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
        champion_invalid=champion_invalid,
    )
    _check_test(p_value, alpha)
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
        p_value=p_value,
        alpha=alpha,
        test=test,
        champion_invalid=champion_invalid,
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
    p_value: float | None = None,
    alpha: float | None = None,
    test: str | None = None,
    champion_invalid: str | None = None,
) -> GateDecision:
    """The challenger gate: make `version` the champion only if it beats the current one.

    Both scores must come from the SAME test set: the caller scores the champion's bundle on the
    challenger's test set and passes the number. With no champion yet, the version is promoted;
    otherwise only when it beats `champion_score` by more than `min_improvement` (in the better
    direction of the metric) AND, when `alpha` is given, the paired test's one-sided `p_value`
    (challenger better than champion, e.g. `paired_auc_test`) is below `alpha`; an undefined test
    (p_value None) keeps the champion. A `champion_invalid` reason (the champion's bundle no longer
    fits the data) promotes without comparing. With `champion_version` (the version that was
    scored), a champion that changed meanwhile is an error rather than a comparison against the
    wrong model. The decision, both scores and the p-value become `gate.*` tags on the version and
    its run either way.
    """
    _check_test(p_value, alpha)
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
            model_name,
            current=previous,
            scored=champion_version,
            champion_score=champion_score,
            champion_invalid=champion_invalid,
        )
        if previous is None:
            if champion_score is not None:
                log.warning(
                    "%s has no champion: ignoring champion_score %s", model_name, champion_score
                )
            champion_score, p_value, champion_invalid = None, None, None
        promoted = gate_promotes(
            challenger_score=challenger_score,
            champion_score=champion_score,
            has_champion=previous is not None,
            min_improvement=min_improvement,
            higher_is_better=higher_is_better,
            p_value=p_value,
            alpha=alpha,
            champion_invalid=champion_invalid,
        )
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
            p_value=None if p_value is None else float(p_value),
            alpha=None if alpha is None else float(alpha),
            test=test if alpha is not None else None,
            champion_invalid=champion_invalid,
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


def _check_test(p_value: float | None, alpha: float | None) -> None:
    """A level in (0, 1) and a p-value in [0, 1], or refuse before anything is recorded."""
    if alpha is not None and not 0 < alpha < 1:
        raise RegistryError(f"the gate's alpha must be in (0, 1), got {alpha}")
    if p_value is not None and not 0 <= p_value <= 1:
        raise RegistryError(f"the gate's p_value must be in [0, 1], got {p_value}")
    if p_value is not None and alpha is None:
        raise RegistryError(f"a p_value ({p_value}) was given without the level alpha to test at")


def _check_scored_champion(
    model_name: str,
    *,
    current: int | None,
    scored: int | None,
    champion_score: float | None,
    champion_invalid: str | None = None,
) -> None:
    """The gate compares against the champion that was scored, or refuses."""
    if current is not None and champion_score is None and champion_invalid is None:
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


DELONG = "DeLong one-sided"
"""The gate's paired test of ROC-AUC (`paired_auc_test`), as its tags and summary name it."""


def paired_auc_test(
    challenger_prob: npt.ArrayLike, champion_prob: npt.ArrayLike | None, label: npt.ArrayLike
) -> dict[str, Any]:
    """DeLong's paired test that the challenger's ROC-AUC is higher than the champion's on the
    same examples (`metrics.uncertainty.delong_auc_difference`, made one-sided).

    Keys: test, challenger_roc_auc, champion_roc_auc, diff, se, p_value (the chance of a
    difference at least this far in the challenger's favour were both equally good; None when
    DeLong is undefined), undefined (why, or None). With no champion (`champion_prob` None) only
    the challenger's AUC is filled in.
    """
    if champion_prob is None:
        single = delong_auc_difference(challenger_prob, challenger_prob, label)
        return {
            "test": DELONG,
            "challenger_roc_auc": single["auc_a"],
            "champion_roc_auc": None,
            "diff": None,
            "se": None,
            "p_value": None,
            "undefined": single["undefined"],
        }
    d = delong_auc_difference(challenger_prob, champion_prob, label)
    p_value = None
    if d["undefined"] is None:
        diff, se = d["diff"], d["se"]
        # se is 0 when the two models' components differ by a constant: the sign then decides.
        p_value = NormalDist().cdf(-diff / se) if se > 0 else (0.0 if diff > 0 else 1.0)
    return {
        "test": DELONG,
        "challenger_roc_auc": d["auc_a"],
        "champion_roc_auc": d["auc_b"],
        "diff": d["diff"],
        "se": d["se"],
        "p_value": p_value,
        "undefined": d["undefined"],
    }
