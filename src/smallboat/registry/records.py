"""What the registry hands back and what its challenger gate records: plain, frozen values.

A run (`RunInfo`), a registered version (`ModelVersionInfo`), the champion (`ChampionInfo`), the
gate's verdict (`GateDecision`, which also words its summary and its `gate.*` tags) and the lot of
one publication (`Publication`). Nothing here talks to MLflow, so these can be built and read
anywhere (the dashboard, the card, tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from smallboat.errors import SmallboatError

CHAMPION = "champion"
"""The registered-model alias of the version that serves."""
BUNDLE_ARTIFACT = "bundle"
"""Artifact folder of a run holding the model bundle; model versions point at it."""
GATE_PREFIX = "gate."
"""Tags the challenger gate writes on the model version and on its run."""


class RegistryError(SmallboatError):
    """The MLflow store is unreachable or refused a request, or a model or version is missing."""


@dataclass(frozen=True)
class RunInfo:
    """A logged training run: where it is and how to find it again."""

    run_id: str
    experiment_id: str
    experiment: str
    run_name: str
    artifact_uri: str
    tracking_uri: str

    @property
    def bundle_uri(self) -> str:
        return f"runs:/{self.run_id}/{BUNDLE_ARTIFACT}"


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered version, with what the dashboard and the card show about it."""

    model_name: str
    version: int
    run_id: str
    source: str
    created_at: datetime
    aliases: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_champion(self) -> bool:
        return CHAMPION in self.aliases

    @property
    def gate_decision(self) -> str | None:
        """`promoted`, `rejected`, or None for a version that never went through the gate."""
        return self.tags.get(f"{GATE_PREFIX}decision")

    @property
    def gate_metric(self) -> str | None:
        return self.tags.get(f"{GATE_PREFIX}metric")

    @property
    def score(self) -> float | None:
        """This version's gate metric on its own test set."""
        return _float_tag(self.tags, "challenger")

    @property
    def champion_score(self) -> float | None:
        """The champion's score on the same test set when this version was gated."""
        return _float_tag(self.tags, "champion")

    @property
    def p_value(self) -> float | None:
        """The gate's paired-test p-value (None without a test or a champion)."""
        return _float_tag(self.tags, "p_value")


@dataclass(frozen=True)
class ChampionInfo:
    """The version serving now, and the metrics its training run logged."""

    model_name: str
    version: int
    run_id: str
    metrics: Mapping[str, float]
    created_at: datetime


@dataclass(frozen=True)
class GateDecision:
    """The challenger gate's verdict on one version; `summary` is the line people read.

    With `alpha`, the challenger must also beat the champion by a paired test on the same test
    set: `p_value` is the one-sided p of "the challenger scores higher" (None when the test is
    undefined, which keeps the champion). A `champion_invalid` reason (its bundle no longer fits
    the data) promotes without a comparison.
    """

    model_name: str
    version: int
    promoted: bool
    metric: str
    challenger_score: float
    champion_score: float | None
    previous_version: int | None
    min_improvement: float
    higher_is_better: bool = True
    p_value: float | None = None
    alpha: float | None = None
    test: str | None = None
    champion_invalid: str | None = None

    @property
    def decision(self) -> str:
        return "promoted" if self.promoted else "rejected"

    @property
    def champion_version(self) -> int | None:
        """The version holding the alias after the decision."""
        return self.version if self.promoted else self.previous_version

    @property
    def summary(self) -> str:
        name, metric = self.model_name, self.metric
        ours = f"{self.challenger_score:.4f}"
        if self.previous_version is None or (
            self.champion_score is None and self.champion_invalid is None
        ):
            return f"promoted {name} v{self.version} to champion: no champion yet ({metric} {ours})"
        if self.champion_invalid is not None:
            return (
                f"promoted {name} v{self.version} to champion ({metric} {ours}): champion "
                f"v{self.previous_version} is invalid: {self.champion_invalid}"
            )
        assert self.champion_score is not None  # an invalid champion returned above
        theirs = f"{self.champion_score:.4f}"
        need = "above" if self.higher_is_better else "below"
        bar = f"{need} v{self.previous_version}'s {theirs} by more than {self.min_improvement:g}"
        test = "" if self.alpha is None else f" ({self._test_text()})"
        if self.promoted:
            return f"promoted {name} v{self.version} to champion: {metric} {ours} is {bar}{test}"
        kept = f"kept {name} v{self.previous_version} as champion"
        if self.alpha is not None and beats(
            self.challenger_score,
            self.champion_score,
            min_improvement=self.min_improvement,
            higher_is_better=self.higher_is_better,
        ):
            ours = f"v{self.version}'s {metric} {ours}"
            return f"{kept}: {ours} is {bar}, but not significantly{test}"
        return f"{kept}: v{self.version}'s {metric} {ours} is not {bar}{test}"

    def _test_text(self) -> str:
        test = self.test or "paired test"
        if self.p_value is None:
            return f"{test}: undefined on this test set, alpha {self.alpha:g}"
        sign = "<" if self.p_value < (self.alpha or 0.0) else ">="
        return f"{test} p = {self.p_value:.3g} {sign} alpha {self.alpha:g}"

    def tags(self) -> dict[str, str]:
        """What the gate records on the version and on the run."""
        return {
            f"{GATE_PREFIX}decision": self.decision,
            f"{GATE_PREFIX}metric": self.metric,
            f"{GATE_PREFIX}challenger": repr(self.challenger_score),
            f"{GATE_PREFIX}champion": _text(self.champion_score),
            f"{GATE_PREFIX}previous_version": _text(self.previous_version),
            f"{GATE_PREFIX}min_improvement": repr(self.min_improvement),
            f"{GATE_PREFIX}higher_is_better": str(self.higher_is_better).lower(),
            f"{GATE_PREFIX}p_value": _text(self.p_value),
            f"{GATE_PREFIX}alpha": _text(self.alpha),
            f"{GATE_PREFIX}test": _text(self.test),
            f"{GATE_PREFIX}champion_invalid": _text(self.champion_invalid),
            f"{GATE_PREFIX}summary": self.summary,
        }


def beats(
    challenger: float, champion: float, *, min_improvement: float, higher_is_better: bool
) -> bool:
    """The challenger's score is better than the champion's by more than `min_improvement`."""
    gain = challenger - champion
    return (gain if higher_is_better else -gain) > min_improvement


def gate_promotes(
    *,
    challenger_score: float,
    champion_score: float | None,
    has_champion: bool,
    min_improvement: float = 0.0,
    higher_is_better: bool = True,
    p_value: float | None = None,
    alpha: float | None = None,
    champion_invalid: str | None = None,
) -> bool:
    """The gate's rule, in one place (the gate applies it; the card states it in advance).

    Promote when there is no champion or it is invalid; otherwise when the challenger beats the
    champion's score by more than `min_improvement` and, with `alpha`, the paired test's one-sided
    p-value is below `alpha` (an undefined test, p None, keeps the champion).
    """
    if not has_champion or champion_invalid is not None:
        return True
    if champion_score is None:
        raise RegistryError("the gate needs the champion's score (or why the champion is invalid)")
    better = beats(
        challenger_score,
        champion_score,
        min_improvement=min_improvement,
        higher_is_better=higher_is_better,
    )
    if alpha is None:
        return better
    return better and p_value is not None and p_value < alpha


def _text(value: object) -> str:
    # MLflow tag values are text; "none" reads better than an empty string
    if value is None:
        return "none"
    return repr(value) if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Publication:
    """What the flow's `register` step did: the run, the new version, the gate's decision."""

    run: RunInfo
    version: ModelVersionInfo
    decision: GateDecision


def _float_tag(tags: Mapping[str, str], name: str) -> float | None:
    text = tags.get(f"{GATE_PREFIX}{name}")
    if text is None or text == "none":
        return None
    try:
        return float(text)
    except ValueError:
        return None
