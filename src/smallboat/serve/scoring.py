"""Scoring sessions for the prediction service: the loaded model and the micro-batcher.

`load_model` reads the registry's champion (or a bundle folder) into a `LoadedModel`: the bundle's
`IntentPredictor` for the feature code and vocabulary, and its ensemble fused into one network
(`model.fused`) so one forward pass runs every member.

`Scorer` batches concurrent requests into one forward pass. A request's sessions wait in a queue;
the drainer takes everything queued, encodes it with `smallboat.features` (the code training
used; a small batch by its per-event twin, `features.small_batch`, equal to it bit for bit) and
runs the model once. When nothing is draining, the request itself is the drainer of its
batch: it yields once (requests already parsed join it) and scores, with no task to start and
wake (at one client the scorer then costs one loop turn); what arrives meanwhile is left to a
drainer task. Under light load a batch is one request and nothing waits; under heavy load batches
grow and the cost per prediction falls. A small batch (about 1 ms of work) runs
on the event loop itself: handing it to a thread cost more than it saved, because the thread then
waits for the GIL between PyTorch ops while the loop parses requests (measured with
bench/serve.py: p99 at 600 requests/s 11.5 ms with a thread, 7.8 ms inline). A large batch runs on
one worker thread, so the loop keeps accepting requests meanwhile. Each batch holds the model it
started with, so a reload swaps models between batches without failing a request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from smallboat.bundle import MODEL_NAME
from smallboat.config import Settings
from smallboat.features import ModelInputs
from smallboat.features.incremental import SessionPrefix
from smallboat.features.small_batch import encode_small_batch
from smallboat.features.summary import summary_rows
from smallboat.model.fused import FusedIntent
from smallboat.model.onnx_intent import OnnxIntent
from smallboat.model.predictor import IntentPredictor
from smallboat.serve.models import DEFAULT_K, NextItem, Prediction

log = logging.getLogger(__name__)

MAX_BATCH_SESSIONS = 256
"""Most sessions one forward pass takes; a longer queue is served in several passes."""
FUSED_MAX_BATCH = 24
"""Up to this many sessions the fused network is faster (one session: 0.5 ms against 1.9 ms);
past it, its zero blocks cost more than the dispatch saved and the members run one by one
(batch 32: about even; 128: 11 ms fused against 6.5 ms; see `model.fused`)."""


@dataclass(frozen=True)
class LoadedModel:
    """A bundle ready to score: the predictor (features, vocabulary), its fused network, and
    the serving graph on ONNX Runtime (None when SMALLBOAT_SERVE_RUNTIME is torch). For a
    LightGBM or blend champion the graph holds what is neural (a blend's GRU half, the
    recommender) and LightGBM's own predictor scores the same encoded inputs beside it."""

    predictor: IntentPredictor
    fused: FusedIntent | None  # the GRU ensemble's (a blend's GRU half's); None for LightGBM
    version: str
    source: str
    onnx: OnnxIntent | None = None

    @classmethod
    def from_bundle(
        cls, folder: Path, *, version: str | None = None, runtime: str = "onnx"
    ) -> LoadedModel:
        predictor = IntentPredictor.load(folder)
        # The per-event encoder's SKU table and the next items' names, built now rather than on
        # the first request.
        predictor.vocab.sku_attributes  # noqa: B018
        if predictor.next_item is not None:
            predictor.sku_name_list  # noqa: B018
        gru = predictor.gru
        fused = None if gru is None else FusedIntent.from_ensemble(gru)
        graph = None
        if runtime == "onnx" and predictor.has_serving_graph:
            graph = predictor.onnx(folder, fused)
        return cls(predictor, fused, version or predictor.version, str(folder), graph)


def load_model(settings: Settings, bundle: Path | None = None) -> LoadedModel:
    """The given bundle folder, else the registry's current champion (downloaded once)."""
    runtime = settings.serve_runtime
    if bundle is not None:
        return LoadedModel.from_bundle(bundle, runtime=runtime)
    from smallboat import registry

    folder, version = registry.champion_bundle(
        settings, model_name=MODEL_NAME, hint="serve a bundle folder with --bundle PATH"
    )
    loaded = LoadedModel.from_bundle(folder, version=str(version), runtime=runtime)
    return replace(loaded, source=f"registry v{version}")


@dataclass(frozen=True)
class Outcome:
    """The model's answer for one session, as plain Python values, and what only the prediction
    log keeps. The API's `Prediction` (`prediction`, `answer`) is built from them only when a
    route answers through its response model: the plain lane (`serve.plainbody`) writes its JSON
    from these values, with no pydantic object per answer and per next item (~0.03 ms)."""

    purchase_probability: float | None
    model_version: str
    events_used: int
    events_in_session: int
    oov_skus: int
    note: str | None = None
    next_items: list[tuple[str, float]] | None = None
    """(SKU, score) pairs by descending score; None when unscored or without a recommender."""
    summary: dict[str, Any] | None = None
    """The prefix's summary for the prediction log (`features.summary`); None when unscored."""

    @cached_property
    def prediction(self) -> Prediction:
        """The answer as the API's model (its `session_id` is the route's to fill in)."""
        # Built from checked values: pydantic's validation of each answer cost more than the
        # answer (tests/unit/test_serve_scoring.py compares it with a validated one).
        return Prediction.model_construct(
            session_id=None,
            purchase_probability=self.purchase_probability,
            model_version=self.model_version,
            events_used=self.events_used,
            events_in_session=self.events_in_session,
            oov_skus=self.oov_skus,
            note=self.note,
            next_items=None
            if self.next_items is None
            else [NextItem.model_construct(sku=sku, score=score) for sku, score in self.next_items],
        )

    def answer(self, session_id: str | None) -> Prediction:
        """The prediction as the API answers it, echoing the request's session id."""
        return self.prediction.model_copy(update={"session_id": session_id})


@dataclass(frozen=True)
class NextItemOptions:
    """What a request asks of the next-item head."""

    k: int = DEFAULT_K
    exclude_seen: bool = False


ScoredSession = Sequence[Mapping[str, Any]] | SessionPrefix
"""What is scored: a session's raw rows, or a stored session's prefix (`features.incremental`)."""


@dataclass
class _Job:
    sessions: Sequence[ScoredSession]
    future: asyncio.Future[list[Outcome]]
    options: NextItemOptions = NextItemOptions()


@dataclass(frozen=True)
class Batch:
    """One forward pass: outcomes per request (per session), and the time the model took."""

    outcomes: list[list[Outcome]]
    sessions: int
    forward_seconds: float
    sections: dict[str, float] = field(default_factory=dict)
    """Seconds of each part of the batch (`SECTIONS`), for SMALLBOAT_SERVE_SECTIONS."""


SECTIONS = ("collapse", "encode", "summary", "forward", "next_items", "answers")
"""The parts of `score_batch`, in order: collapsing the raw rows, encoding them, the prediction
log's summary, the serving graph, the next items (top-k and their names), the answers' objects."""


class Scorer:
    """Scores sessions of raw browsing rows, batching concurrent calls into one forward pass."""

    def __init__(
        self, model: LoadedModel, *, on_batch: Callable[[Batch], None] | None = None
    ) -> None:
        self.model = model
        self.on_batch = on_batch
        self._drainer: asyncio.Task[None] | None = None  # held: the loop keeps weak references
        self._queue: list[_Job] = []
        self._draining = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smallboat-score")

    def swap(self, model: LoadedModel) -> LoadedModel:
        """Serve `model` from the next batch on; returns the one it replaces."""
        previous, self.model = self.model, model
        return previous

    async def score(
        self,
        sessions: Sequence[ScoredSession],
        options: NextItemOptions = NextItemOptions(),
    ) -> list[Outcome]:
        loop = asyncio.get_running_loop()
        job = _Job(sessions, loop.create_future(), options)
        self._queue.append(job)
        if self._draining:  # a batch is being formed or scored: this job joins the next one
            return await job.future
        # Nothing is draining: this request forms the batch itself (no drainer task to start
        # and wake up: at one client, a request's whole hop through the scorer is one yield).
        self._draining = True
        try:
            await asyncio.sleep(0)  # requests already parsed join this batch
            if self._small_batch_ahead():
                self._finish(self._take(), score=True)
        finally:  # what is left (a large batch, later arrivals, a cancelled caller's batch)
            self._hand_off(loop)
        return await job.future

    def _hand_off(self, loop: asyncio.AbstractEventLoop) -> None:
        """The drainer task takes what is queued; with nothing queued, draining stops."""
        if self._queue:
            self._drainer = loop.create_task(self._drain())
        else:
            self._draining = False

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                await asyncio.sleep(0)  # requests already parsed join this batch
                if self._small_batch_ahead():
                    # ~1 ms: a thread hop costs more
                    self._finish(self._take(), score=True)
                    continue
                jobs = self._take()
                model = self.model
                requests = [j.sessions for j in jobs]
                options = [j.options for j in jobs]
                try:
                    batch = await loop.run_in_executor(
                        self._executor, score_batch, model, requests, options
                    )
                except Exception as exc:
                    self._failed(jobs, exc)
                    continue
                self._finish(jobs, batch)
        finally:
            self._draining = False

    def _small_batch_ahead(self) -> bool:
        """The next batch (`_take`'s) holds at most FUSED_MAX_BATCH sessions: it is scored on
        the loop."""
        total = 0
        for taken, job in enumerate(self._queue):
            if taken and total + len(job.sessions) > MAX_BATCH_SESSIONS:
                break
            total += len(job.sessions)
            if total > FUSED_MAX_BATCH:
                return False
        return True

    def _finish(self, jobs: list[_Job], batch: Batch | None = None, *, score: bool = False) -> None:
        """Answer `jobs` with `batch`, or (`score`) with a batch scored here, on the loop."""
        if score:
            try:
                batch = score_batch(
                    self.model, [j.sessions for j in jobs], [j.options for j in jobs]
                )
            except Exception as exc:
                self._failed(jobs, exc)
                return
        assert batch is not None
        if self.on_batch is not None:
            try:
                self.on_batch(batch)
            except Exception:  # bookkeeping must never keep an answer from its request
                log.exception("the batch callback failed")
        for job, outcomes in zip(jobs, batch.outcomes, strict=True):
            if not job.future.done():  # a cancelled request (client gone) is skipped
                job.future.set_result(outcomes)

    @staticmethod
    def _failed(jobs: list[_Job], exc: Exception) -> None:
        log.exception("scoring a batch of %d requests failed", len(jobs))
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(exc)

    def _take(self) -> list[_Job]:
        """Queued jobs up to MAX_BATCH_SESSIONS sessions (always at least one job)."""
        taken, total = 0, 0
        for job in self._queue:
            if taken and total + len(job.sessions) > MAX_BATCH_SESSIONS:
                break
            taken += 1
            total += len(job.sessions)
        jobs, self._queue = self._queue[:taken], self._queue[taken:]
        return jobs

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def score_batch(
    model: LoadedModel,
    requests: Sequence[Sequence[ScoredSession]],
    options: Sequence[NextItemOptions] | None = None,
) -> Batch:
    """Outcomes per request, per session: one encode and one forward pass for all of them (the
    intent head's, and the next-item head's on the same inputs)."""
    flat = [session for sessions in requests for session in sessions]
    per_session = [
        opts
        for sessions, opts in zip(
            requests, options or [NextItemOptions()] * len(requests), strict=True
        )
        for _ in sessions
    ]
    next_items: dict[int, list[tuple[str, float]]] = {}
    clock = time.perf_counter
    marks = [clock()]
    prefixes = [s if isinstance(s, SessionPrefix) else SessionPrefix.of_rows(s) for s in flat]
    collapsed = [p.events for p in prefixes]  # a stored session's: its recent events only
    marks.append(clock())
    scored = [i for i, events in enumerate(collapsed) if events]
    # Python values per session (what the answers' JSON and the log take), converted once
    probability: list[float | None] = [None] * len(flat)
    used = [0] * len(flat)
    oov = [0] * len(flat)
    elapsed = 0.0
    summaries: dict[int, dict[str, Any]] = {}
    if scored:
        predictor = model.predictor
        carry = [prefixes[i].carry for i in scored]
        inputs = encode_small_batch(
            [collapsed[i] for i in scored],
            predictor.vocab,
            predictor.spec,
            carry if any(c is not None for c in carry) else None,
        )
        marks.append(clock())
        for i, summary in zip(scored, summary_rows(inputs, predictor.vocab), strict=True):
            summary["events_after_add"] = prefixes[i].events_after_first_add()
            summary["event_time_ms"] = collapsed[i][-1][2]
            summaries[i] = summary
        marks.append(clock())
        ks = [per_session[i].k for i in scored]
        exclude = [
            [sku for _, sku, _ in collapsed[i]] if per_session[i].exclude_seen else None
            for i in scored
        ]
        scored_probability, scores, top = _forward(
            model, inputs, predictor.top_k_wanted(ks, exclude)
        )
        marks.append(clock())
        recommended = predictor.recommend(inputs, ks, exclude=exclude, scores=scores, top=top)
        if recommended is not None:
            next_items = dict(zip(scored, recommended, strict=True))
        marks.append(clock())
        elapsed = marks[-1] - marks[-3]
        for i, p, n, k in zip(
            scored,
            np.asarray(scored_probability, dtype=np.float64).tolist(),
            inputs.events_used.tolist(),
            inputs.oov_skus.tolist(),
            strict=True,
        ):
            probability[i], used[i], oov[i] = p, n, k
    version = model.version
    outcomes = [
        Outcome(
            purchase_probability=probability[i],
            model_version=version,
            events_used=used[i],
            events_in_session=prefixes[i].n_events,
            oov_skus=oov[i],
            note=None if probability[i] is not None else _why_unscored(prefixes[i].has_rows),
            next_items=next_items.get(i),
            summary=summaries.get(i),
        )
        for i in range(len(flat))
    ]
    out: list[list[Outcome]] = []
    start = 0
    for sessions in requests:
        out.append(outcomes[start : start + len(sessions)])
        start += len(sessions)
    marks.append(clock())
    if len(marks) == len(SECTIONS) + 1:
        sections = {name: marks[k + 1] - marks[k] for k, name in enumerate(SECTIONS)}
    else:  # nothing to score: collapsing and the answers only
        sections = {"collapse": marks[1] - marks[0], "answers": marks[2] - marks[1]}
    return Batch(out, len(flat), elapsed, sections)


def _forward(
    model: LoadedModel, inputs: ModelInputs, k: int
) -> tuple[np.ndarray, np.ndarray | None, tuple[np.ndarray, np.ndarray] | None]:
    """P(purchase) of `inputs`, (N,), and what their next items are ranked from: on a serving
    graph with TopK, its best `k` SKU tokens and scores per row (one run answers both heads); on
    a graph written before it had TopK, every SKU's score; else neither (the recommender scores
    them itself). The GRU ensemble's probability comes from the graph (or the fused network);
    the predictor adds LightGBM's for a LightGBM or blend champion."""
    graph = model.onnx
    gru: np.ndarray | None = None
    scores: np.ndarray | None = None
    top: tuple[np.ndarray, np.ndarray] | None = None
    if graph is not None and graph.has_top_k and model.predictor.next_item is not None:
        gru, tokens, values = graph.run_top_k(inputs, k)
        top = (tokens, values)
    elif graph is not None:
        gru, scores = graph.run(inputs)
    elif model.fused is not None and len(inputs) <= FUSED_MAX_BATCH:
        gru = model.fused.predict(inputs)
    return model.predictor.predict_inputs(inputs, gru_probability=gru), scores, top


def _why_unscored(has_rows: bool) -> str:
    if not has_rows:
        return "the session has no events: nothing to predict from"
    return "the session has no events before its first purchase: nothing to predict from"
