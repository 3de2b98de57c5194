"""The gradient-boosted-trees intent candidate: LightGBM on the session prefix's tabular features.

A grid entry with `"kind": "lightgbm"` trains one of these instead of a GRU ensemble; the sweep
picks between them by validation ROC-AUC like between GRUs. The features are
`features.tabular.tabular_features` of the same encoded prefixes the GRU reads, plus the run's
prod2vec vectors, which the model carries (in its bytes and in the bundle's GBM_DIR), so serving
computes the same row from the same events. Serving runs it with LightGBM's own predictor.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from smallboat.features import ModelInputs
from smallboat.features.tabular import TABULAR_FEATURES, tabular_features, tabular_rows, unit_rows
from smallboat.metrics.intent import roc_auc

KIND = "lightgbm"
"""The grid entry's and the bundle's `kind` of a LightGBM intent model."""
MODEL_FILE = "model.txt"
VECTORS_FILE = "sku_vectors.npy"


@dataclass(frozen=True)
class GbmConfig:
    """LightGBM's knobs the grid may set; the rest are fixed for determinism (`params`)."""

    # Small trees, strong L2 and half the features per tree, with early stopping: at 20k
    # sessions (3,000 training prefixes) this scored validation ROC-AUC 0.903 against 0.890 for
    # 15 leaves and L2 1 (synthetic seed 5); deeper trees fit noise.
    num_leaves: int = 8
    learning_rate: float = 0.03
    min_data_in_leaf: int = 20
    feature_fraction: float = 0.5
    bagging_fraction: float = 0.8
    lambda_l2: float = 10.0
    max_rounds: int = 3000  # an upper bound: early stopping on validation log-loss ends sooner
    # Rounds without a validation log-loss gain before stopping. Log-loss, not ROC-AUC: on a few
    # hundred validation prefixes AUC jumps from round to round (at 20k sessions it peaked at
    # round 6, test AUC 0.848), log-loss falls smoothly to its minimum (round 171, test 0.874).
    patience: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_leaves", "min_data_in_leaf", "max_rounds", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_leaves < 2:
            raise ValueError(f"num_leaves must be >= 2, got {self.num_leaves}")
        for name in ("feature_fraction", "bagging_fraction"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.learning_rate <= 0.0 or self.lambda_l2 < 0.0:
            raise ValueError(
                f"learning_rate must be > 0 and lambda_l2 >= 0, got {self.learning_rate}, "
                f"{self.lambda_l2}"
            )

    def params(self, threads: int) -> dict[str, Any]:
        """LightGBM's parameters: deterministic given the seed and the data (same verdict on a
        re-run), whatever the thread count."""
        return {
            "objective": "binary",
            "metric": "binary_logloss",
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1 if self.bagging_fraction < 1.0 else 0,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed,
            "deterministic": True,
            "force_col_wise": True,
            "num_threads": threads,
            "verbosity": -1,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GbmConfig:
        return cls(**{k: v for k, v in data.items() if k != "kind"})

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


class GbmIntent:
    """A trained LightGBM booster and the prod2vec vectors its features need."""

    def __init__(self, config: GbmConfig, booster: Any, sku_vectors: np.ndarray) -> None:
        self.config = config
        self.booster = booster
        self.sku_vectors = np.asarray(sku_vectors, dtype=np.float32)
        self.unit = unit_rows(self.sku_vectors)  # normalised once, not on every call
        self.columns = _feature_columns(list(booster.feature_name()))

    def predict(self, inputs: ModelInputs) -> np.ndarray:
        """P(purchase) for every prefix, (N,) float64."""
        if len(inputs) == 0:
            return np.zeros(0, dtype=np.float64)
        features = tabular_rows(inputs, self.unit)
        if self.columns is not None:
            features = features[:, self.columns]
        prob = self.booster.predict(features, num_threads=1)
        return np.asarray(prob, dtype=np.float64)

    def model_text(self) -> str:
        text: str = self.booster.model_to_string()
        return text

    def to_bytes(self) -> bytes:
        """The model as one blob (a Metaflow artifact): the booster's text and the vectors."""
        buffer = io.BytesIO()
        np.savez(
            buffer,
            model=np.frombuffer(self.model_text().encode("utf-8"), dtype=np.uint8),
            sku_vectors=self.sku_vectors,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, config: GbmConfig, blob: bytes) -> GbmIntent:
        import lightgbm

        with np.load(io.BytesIO(blob)) as arrays:
            text = arrays["model"].tobytes().decode("utf-8")
            vectors = arrays["sku_vectors"]
        return cls(config, lightgbm.Booster(model_str=text), vectors)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MODEL_FILE).write_text(self.model_text())
        np.save(folder / VECTORS_FILE, self.sku_vectors)

    @classmethod
    def load(cls, config: GbmConfig, folder: Path) -> GbmIntent:
        import lightgbm

        try:
            booster = lightgbm.Booster(model_str=(folder / MODEL_FILE).read_text())
        except lightgbm.basic.LightGBMError as exc:
            raise ValueError(f"{folder / MODEL_FILE}: {exc}") from None
        return cls(config, booster, np.load(folder / VECTORS_FILE))


def _feature_columns(names: list[str]) -> np.ndarray | None:
    """Where a booster's features are among TABULAR_FEATURES (None: all of them, in order).

    A booster trained before later columns were added to the tabular features names fewer of
    them; it keeps predicting from exactly the columns it was trained on."""
    if names == list(TABULAR_FEATURES):
        return None
    unknown = [name for name in names if name not in TABULAR_FEATURES]
    if unknown:
        raise ValueError(
            f"the LightGBM model uses feature(s) {unknown[:5]} that features.tabular does not "
            f"compute (it computes {len(TABULAR_FEATURES)}: {list(TABULAR_FEATURES[:3])}, ...); "
            "it was trained by another smallboat version"
        )
    return np.array([TABULAR_FEATURES.index(name) for name in names], dtype=np.int64)


@dataclass
class GbmResult:
    model: GbmIntent
    best_rounds: int
    best_valid_auc: float
    seconds: float

    def summary(self) -> dict[str, float]:
        return {
            "best_epoch": float(self.best_rounds),  # boosting rounds kept
            "best_valid_auc": self.best_valid_auc,
            "epochs": float(self.best_rounds),
            "members": 1.0,
            "sequences_per_s": 0.0,
            "train_seconds": self.seconds,
        }


def train_gbm(
    config: GbmConfig,
    train: tuple[ModelInputs, np.ndarray],
    valid: tuple[ModelInputs, np.ndarray],
    *,
    sku_vectors: np.ndarray,
    threads: int = 2,
) -> GbmResult:
    """Boost until validation log-loss stops improving for `config.patience` rounds; keep the
    best round. The sweep compares the result's validation ROC-AUC with the other candidates'."""
    import lightgbm

    started = time.perf_counter()
    x_train = tabular_features(train[0], sku_vectors)
    x_valid = tabular_features(valid[0], sku_vectors)
    names = list(TABULAR_FEATURES)
    train_set = lightgbm.Dataset(x_train, label=train[1], feature_name=names, free_raw_data=True)
    valid_set = lightgbm.Dataset(x_valid, label=valid[1], reference=train_set)
    booster = lightgbm.train(
        config.params(threads),
        train_set,
        num_boost_round=config.max_rounds,
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=[lightgbm.early_stopping(config.patience, verbose=False)],
    )
    best = int(booster.best_iteration) or config.max_rounds
    # keep only the rounds up to the best one, so the saved model predicts what was validated
    trimmed = lightgbm.Booster(model_str=booster.model_to_string(num_iteration=best))
    model = GbmIntent(config, trimmed, sku_vectors)
    auc = roc_auc(model.predict(valid[0]), valid[1])
    return GbmResult(
        model=model,
        best_rounds=best,
        best_valid_auc=math.nan if auc is None else auc,
        seconds=time.perf_counter() - started,
    )
