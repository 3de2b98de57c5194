"""The training loop: mini-batches, AdamW, gradient clipping, early stopping on validation AUC."""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from smallboat.features import ModelInputs
from smallboat.model.intent import (
    IntentConfig,
    IntentEnsemble,
    IntentModel,
    Sizes,
    predict_proba,
    to_tensors,
)

log = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    """The one place seeds are set: Python, NumPy and PyTorch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
    return float(roc_auc_score(label, prob)) if len(np.unique(label)) == 2 else float("nan")


def _log_loss(label: np.ndarray, prob: np.ndarray) -> float:
    p = np.clip(prob, 1e-7, 1 - 1e-7)
    return float(-np.mean(label * np.log(p) + (1 - label) * np.log(1 - p)))


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
        model, best_epoch, log_, n_seen, seconds = _train_member(
            replace(config, seed=config.seed + member),
            sizes,
            train,
            valid,
            member=member,
            sku_vectors=sku_vectors,
            on_epoch=on_epoch,
        )
        members.append(model)
        best_epochs.append(best_epoch)
        history += log_
        seen += n_seen
        t_train += seconds
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
) -> tuple[IntentModel, int, list[EpochLog], int, float]:
    """One member: (model at its best epoch, best epoch, history, sequences seen, seconds)."""
    set_seed(config.seed)
    model = IntentModel(config, sizes, sku_vectors)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.lr,
        weight_decay=config.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=config.lr_decay, patience=0
    )
    loss_fn = nn.BCEWithLogitsLoss()
    x_train, y_train = train
    x_valid, y_valid = valid
    y_tensor = torch.from_numpy(y_train.astype(np.float32))
    order_rng = np.random.default_rng(config.seed)

    best_auc, best_epoch, best_state = -1.0, 0, copy.deepcopy(model.state_dict())
    history: list[EpochLog] = []
    seen, t_train = 0, 0.0
    for epoch in range(1, config.max_epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = order_rng.permutation(len(x_train))
        total, batches = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            rows = np.sort(order[start : start + config.batch_size])
            batch = to_tensors(x_train, rows)
            logits = model(batch)  # (B,)
            loss = loss_fn(logits, y_tensor[rows])  # scalar
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            total += float(loss.detach())
            batches += 1
        seen += len(order)
        t_train += time.perf_counter() - t0
        prob = predict_proba(model, x_valid)
        entry = EpochLog(
            member=member,
            epoch=epoch,
            train_loss=total / max(batches, 1),
            valid_auc=_auc(y_valid, prob),
            valid_loss=_log_loss(y_valid, prob),
            seconds=time.perf_counter() - t0,
        )
        history.append(entry)
        log.info(
            "member %d epoch %d: train loss %.4f, valid AUC %.4f, valid loss %.4f (%.1f s)",
            member,
            epoch,
            entry.train_loss,
            entry.valid_auc,
            entry.valid_loss,
            entry.seconds,
        )
        if on_epoch is not None:
            on_epoch(entry)
        scheduler.step(entry.valid_auc)
        if entry.valid_auc > best_auc:
            best_auc, best_epoch = entry.valid_auc, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= config.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return model, best_epoch, history, seen, t_train
