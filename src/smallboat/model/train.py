"""The training loop: mini-batches, AdamW, gradient clipping, early stopping on validation AUC."""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from smallboat.features import ModelInputs
from smallboat.model.intent import IntentConfig, IntentModel, Sizes, predict_proba, to_tensors

log = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    """The one place seeds are set: Python, NumPy and PyTorch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    valid_auc: float
    valid_loss: float
    seconds: float


@dataclass
class TrainResult:
    model: IntentModel
    best_epoch: int
    best_valid_auc: float
    history: list[EpochLog] = field(default_factory=list)
    sequences_per_s: float = 0.0
    seconds: float = 0.0

    def summary(self) -> dict[str, float]:
        return {
            "best_epoch": float(self.best_epoch),
            "best_valid_auc": self.best_valid_auc,
            "epochs": float(len(self.history)),
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
    """Train until validation AUC stops improving for `config.patience` epochs; keep the best."""
    torch.set_num_threads(threads)
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
    seen, t_train, t_start = 0, 0.0, time.perf_counter()
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
            epoch=epoch,
            train_loss=total / max(batches, 1),
            valid_auc=_auc(y_valid, prob),
            valid_loss=_log_loss(y_valid, prob),
            seconds=time.perf_counter() - t0,
        )
        history.append(entry)
        log.info(
            "epoch %d: train loss %.4f, valid AUC %.4f, valid loss %.4f (%.1f s)",
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
    return TrainResult(
        model=model,
        best_epoch=best_epoch,
        best_valid_auc=best_auc,
        history=history,
        sequences_per_s=seen / t_train if t_train else 0.0,
        seconds=time.perf_counter() - t_start,
    )
