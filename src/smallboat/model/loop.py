"""The one training loop both models train with: the intent ensemble's members (`model.fit`) and
the next-item sequence model (`model.next_item.sequence`).

Each epoch reads top to bottom: batch -> forward -> loss -> backward -> clip -> step -> log; then
`evaluate` runs under `torch.no_grad()`, and early stopping keeps the weights of the epoch with
the best validation score. Seeds are set here, before the model is built, and nowhere else.
The callers bring what differs: how to build the model, how an epoch's batches are drawn, the
loss, and what the validation score is.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

M = TypeVar("M", bound=nn.Module)

Batch = tuple[dict[str, torch.Tensor], torch.Tensor]
"""One mini-batch: the model's input tensors and the loss's target, (B,)."""


def set_seed(seed: int) -> None:
    """The one place seeds are set: Python, NumPy and PyTorch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Knobs(Protocol):
    """What a model's config gives the loop (IntentConfig and NextItemConfig say why each value)."""

    @property
    def lr(self) -> float: ...
    @property
    def weight_decay(self) -> float: ...
    @property
    def grad_clip(self) -> float: ...
    @property
    def max_epochs(self) -> int: ...
    @property
    def patience(self) -> int: ...
    @property
    def seed(self) -> int: ...


@dataclass(frozen=True)
class LoopConfig:
    """The optimisation knobs the loop reads (each model's config says why its values)."""

    lr: float  # AdamW
    weight_decay: float
    grad_clip: float  # max gradient norm
    max_epochs: int
    patience: int  # epochs without a validation gain before stopping
    seed: int
    # Multiply the rate by this after an epoch without a validation gain; None keeps it fixed.
    lr_decay: float | None = None
    # Stop after the epoch that ends past this time.perf_counter() value.
    deadline: float = math.inf

    @classmethod
    def of(
        cls, knobs: Knobs, *, lr_decay: float | None = None, deadline: float = math.inf
    ) -> LoopConfig:
        """The loop's knobs read from a model's config."""
        return cls(
            lr=knobs.lr,
            weight_decay=knobs.weight_decay,
            grad_clip=knobs.grad_clip,
            max_epochs=knobs.max_epochs,
            patience=knobs.patience,
            seed=knobs.seed,
            lr_decay=lr_decay,
            deadline=deadline,
        )


@dataclass
class Epoch:
    """One epoch's record: mean training loss, the validation metrics, wall time."""

    epoch: int
    train_loss: float
    metrics: dict[str, float]  # evaluate's output; the early-stopping score is one of them
    seconds: float  # training and validation


@dataclass
class LoopResult(Generic[M]):
    model: M  # at its best epoch, in eval mode
    best_epoch: int  # 0 when no epoch scored above the start
    best_score: float
    history: list[Epoch]
    examples_seen: int
    train_seconds: float  # training passes only, without validation


def train_loop(
    config: LoopConfig,
    build: Callable[[], M],
    batches: Callable[[], Iterable[Batch]],
    loss_fn: nn.Module,
    evaluate: Callable[[M], dict[str, float]],
    *,
    score: str,
    name: str = "model",
    on_epoch: Callable[[Epoch], None] | None = None,
) -> LoopResult[M]:
    """Seed, `build()` the model, and train it with AdamW for up to `config.max_epochs` epochs.

    `batches()` yields an epoch's mini-batches (it owns the shuffling). After each epoch
    `evaluate(model)` gives the validation metrics; `metrics[score]` is maximised: the model
    keeps the weights of its best epoch, and training stops once `config.patience` epochs have
    passed without beating it (a NaN score never does) or the deadline has passed.
    """
    set_seed(config.seed)
    model = build()
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.lr,
        weight_decay=config.weight_decay,
    )
    scheduler = None
    if config.lr_decay is not None:
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=config.lr_decay, patience=0
        )

    # The scores (ROC-AUC, MRR) are at least 0, so the first defined one beats the start.
    best_score, best_epoch, best_state = -1.0, 0, copy.deepcopy(model.state_dict())
    history: list[Epoch] = []
    seen, t_train = 0, 0.0
    for epoch in range(1, config.max_epochs + 1):
        t0 = time.perf_counter()
        train_loss, n_examples = _train_epoch(model, batches(), loss_fn, optimizer, config)
        seen += n_examples
        t_train += time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            metrics = evaluate(model)
        entry = Epoch(
            epoch=epoch,
            train_loss=train_loss,
            metrics=metrics,
            seconds=time.perf_counter() - t0,
        )
        history.append(entry)
        log.info(
            "%s epoch %d: train loss %.4f, %s (%.1f s)",
            name,
            epoch,
            entry.train_loss,
            ", ".join(f"{key} {value:.4f}" for key, value in metrics.items()),
            entry.seconds,
        )
        if on_epoch is not None:
            on_epoch(entry)
        value = metrics[score]
        if scheduler is not None:
            scheduler.step(value)
        if value > best_score:
            best_score, best_epoch = value, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= config.patience:
            break
        if time.perf_counter() > config.deadline:
            break
    model.load_state_dict(best_state)
    model.eval()
    return LoopResult(
        model=model,
        best_epoch=best_epoch,
        best_score=best_score,
        history=history,
        examples_seen=seen,
        train_seconds=t_train,
    )


def _train_epoch(
    model: nn.Module,
    batches: Iterable[Batch],
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: LoopConfig,
) -> tuple[float, int]:
    """One pass over the batches; returns the mean batch loss and the examples seen."""
    model.train()
    total, n_batches, n_examples = 0.0, 0, 0
    for inputs, target in batches:
        loss = loss_fn(model(inputs), target)  # scalar
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        total += float(loss.detach())
        n_batches += 1
        n_examples += len(target)
    return total / max(n_batches, 1), n_examples
