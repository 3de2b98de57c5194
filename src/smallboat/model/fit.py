"""Fit the intent ensemble: each member trained by the shared loop (`model.loop`) with early
stopping on validation ROC-AUC, then their probabilities averaged."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from smallboat.features import ModelInputs
from smallboat.metrics.intent import log_loss, roc_auc
from smallboat.model.intent import (
    IntentConfig,
    IntentEnsemble,
    IntentModel,
    Sizes,
    predict_proba,
    to_tensors,
)
from smallboat.model.loop import Batch, Epoch, LoopConfig, LoopResult, train_loop


@dataclass
class EpochLog:
    member: int
    epoch: int
    train_loss: float
    valid_auc: float
    valid_loss: float
    seconds: float


@dataclass
class TrainResult:
    model: IntentEnsemble
    best_epochs: list[int]  # per member
    best_valid_auc: float  # of the ensemble
    history: list[EpochLog] = field(default_factory=list)
    sequences_per_s: float = 0.0
    seconds: float = 0.0

    def summary(self) -> dict[str, float]:
        return {
            "best_epoch": float(np.mean(self.best_epochs)),
            "best_valid_auc": self.best_valid_auc,
            "epochs": float(len(self.history)),
            "members": float(len(self.best_epochs)),
            "sequences_per_s": self.sequences_per_s,
            "train_seconds": self.seconds,
        }


def _auc(label: np.ndarray, prob: np.ndarray) -> float:
    """ROC-AUC, NaN (which never counts as a gain) when the labels hold one class."""
    auc = roc_auc(prob, label)
    return math.nan if auc is None else auc


def train_intent_model(
    config: IntentConfig,
    sizes: Sizes,
    train: tuple[ModelInputs, np.ndarray],
    valid: tuple[ModelInputs, np.ndarray],
    *,
    sku_vectors: np.ndarray | None = None,
    threads: int = 2,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> TrainResult:
    """Train `config.members` models (seeds seed, seed+1, ...), each until its validation AUC
    stops improving for `config.patience` epochs, keeping its best epoch; return their ensemble."""
    torch.set_num_threads(threads)
    t_start = time.perf_counter()
    members: list[IntentModel] = []
    best_epochs: list[int] = []
    history: list[EpochLog] = []
    seen, t_train = 0, 0.0
    for member in range(config.members):
        result = _train_member(
            replace(config, seed=config.seed + member),
            sizes,
            train,
            valid,
            member=member,
            sku_vectors=sku_vectors,
            on_epoch=on_epoch,
        )
        members.append(result.model)
        best_epochs.append(result.best_epoch)
        history += [_epoch_log(member, e) for e in result.history]
        seen += result.examples_seen
        t_train += result.train_seconds
    ensemble = IntentEnsemble.of(members)
    ensemble.eval()
    return TrainResult(
        model=ensemble,
        best_epochs=best_epochs,
        best_valid_auc=_auc(valid[1], predict_proba(ensemble, valid[0])),
        history=history,
        sequences_per_s=seen / t_train if t_train else 0.0,
        seconds=time.perf_counter() - t_start,
    )


def _train_member(
    config: IntentConfig,
    sizes: Sizes,
    train: tuple[ModelInputs, np.ndarray],
    valid: tuple[ModelInputs, np.ndarray],
    *,
    member: int,
    sku_vectors: np.ndarray | None,
    on_epoch: Callable[[EpochLog], None] | None,
) -> LoopResult[IntentModel]:
    """One member, at its best epoch: binary cross-entropy on purchase, stopped on valid AUC."""
    x_train, y_train = train
    x_valid, y_valid = valid
    y_tensor = torch.from_numpy(y_train.astype(np.float32))
    order_rng = np.random.default_rng(config.seed)

    def batches() -> Iterator[Batch]:
        order = order_rng.permutation(len(x_train))
        for start in range(0, len(order), config.batch_size):
            rows = np.sort(order[start : start + config.batch_size])
            yield to_tensors(x_train, rows), y_tensor[rows]  # target (B,)

    def evaluate(model: IntentModel) -> dict[str, float]:
        prob = predict_proba(model, x_valid)
        loss = log_loss(prob, y_valid)
        return {"valid_auc": _auc(y_valid, prob), "valid_loss": math.nan if loss is None else loss}

    def report(epoch: Epoch) -> None:
        if on_epoch is not None:
            on_epoch(_epoch_log(member, epoch))

    return train_loop(
        LoopConfig.of(config, lr_decay=config.lr_decay),
        lambda: IntentModel(config, sizes, sku_vectors),
        batches,
        nn.BCEWithLogitsLoss(),
        evaluate,
        score="valid_auc",
        name=f"member {member}",
        on_epoch=report,
    )


def _epoch_log(member: int, epoch: Epoch) -> EpochLog:
    return EpochLog(
        member=member,
        epoch=epoch.epoch,
        train_loss=epoch.train_loss,
        valid_auc=epoch.metrics["valid_auc"],
        valid_loss=epoch.metrics["valid_loss"],
        seconds=epoch.seconds,
    )
