"""The model bundle's contract (DESIGN.md section 5): its file names and its metadata, no torch.

A bundle is one directory that carries everything needed to predict:

    bundle.json          `BundleMeta`: format, model name, feature spec, model config, metrics
    weights.pt           the PyTorch state dict (a GRU ensemble)
    gbm/                 instead of weights.pt, a LightGBM intent model (see GBM_DIR); a
                         blend (`model.blend`, model_config kind "blend") has both
    vocab/               the fitted vocabularies (features.Vocabulary)
    card.html            the training run's card, when there is one
    next_item/           the next-item recommender, when the run trained one (model.next_item.store)
    serving.onnx         the serving graph for ONNX Runtime (see ONNX_FILE), from publish on
    reference.parquet    the monitoring reference (see REFERENCE_FILE)

`model.predictor` writes and loads the torch side; the registry, the monitor and serving name the
files and read `bundle.json` through this module only, so none of them needs torch to do so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Strict, TypeAdapter, ValidationError

from smallboat.errors import SmallboatError

BUNDLE_FORMAT = 1
"""The bundle layout this version writes and reads."""
MODEL_NAME = "smallboat-intent"
"""The model a bundle holds: its `model_name` in bundle.json and its registered model's name."""
META_FILE = "bundle.json"
WEIGHTS_FILE = "weights.pt"
VOCAB_DIR = "vocab"
CARD_FILE = "card.html"
NEXT_ITEM_DIR = "next_item"
ONNX_FILE = "serving.onnx"
"""The serving graph (`model.onnx_intent`): the fused intent network and the sequence
recommender's scores as one ONNX graph. Written at publish time; serving derives it from the
weights for a bundle without one."""
GBM_DIR = "gbm"
"""A LightGBM intent model (`model.gbm`): the booster's text and the prod2vec vectors its
features need; such a bundle has no WEIGHTS_FILE and no ONNX_FILE (serving runs LightGBM)."""
REFERENCE_FILE = "reference.parquet"
"""The monitoring reference: the summaries (`features.summary`), predictions and labels of the
training run's held-out test examples; drift checks compare live traffic against it."""


class BundleError(SmallboatError):
    """A folder that is not a model bundle, or whose bundle.json this version cannot read."""


@dataclass(frozen=True)
class BundleMeta:
    """`bundle.json`: what a bundle is and how its weights were built.

    Every field but `format` may be missing from a file (a registry test's bundle has no sizes);
    whoever needs one asks `require`. Keys this version does not know are kept in `extra`.
    """

    format: Annotated[int, Strict()] | None = None  # "1" is not format 1
    model_name: str = ""
    created_at: str | None = None  # UTC, ISO 8601 to the second
    feature_spec: dict[str, Any] | None = None  # features.FeatureSpec.to_dict()
    model_config: dict[str, Any] | None = None  # model.intent.IntentConfig.to_dict()
    sizes: dict[str, int] | None = None  # model.intent.Sizes: n_sku, n_category, n_gap
    metrics: dict[str, Any] = field(default_factory=dict)  # the run's flat test summary
    run_pathspec: str | None = None  # the Metaflow run that trained it
    best: dict[str, Any] | None = None  # the sweep entry chosen
    model_version: str | int | None = None  # the registered version, when written after registering
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """The registered version when the bundle knows it, else the run that trained it."""
        return str(self.model_version or self.run_pathspec or "unregistered")

    def require(self, name: str, folder: Path) -> Any:
        """The field `name`, or a BundleError naming the bundle when its bundle.json lacks it."""
        value = getattr(self, name)
        if value is None:
            raise BundleError(
                f"{folder / META_FILE} has no {name}: the bundle is damaged or was written by an "
                "incompatible smallboat version"
            )
        return value

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: the fields in order, absent ones left out, then `extra`."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "extra" and value is not None:
                out[f.name] = value
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BundleMeta:
        """Checked against the field types (pydantic's ValidationError when one does not fit)."""
        known = {f.name for f in fields(cls)} - {"extra"}
        typed = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        return _adapter().validate_python({**typed, "extra": extra})


@cache
def _adapter() -> TypeAdapter[BundleMeta]:
    return TypeAdapter(BundleMeta)


def read_meta(folder: Path) -> BundleMeta:
    """The bundle.json of a bundle folder, checked to be a JSON object of the expected types."""
    path = folder / META_FILE
    if not folder.is_dir():
        raise BundleError(f"{folder} is not a model bundle: it is not a directory")
    if not path.is_file():
        raise BundleError(f"{folder} has no {META_FILE}: not a model bundle")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path} holds {type(data).__name__}, expected a JSON object")
    try:
        return BundleMeta.from_dict(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BundleError(f"{path}: {where}: {first['msg']}") from None


def read_current_meta(folder: Path) -> BundleMeta:
    """`read_meta`, and the format this version loads (serving and scoring need that much)."""
    meta = read_meta(folder)
    if meta.format != BUNDLE_FORMAT:
        raise BundleError(
            f"{folder / META_FILE}: bundle format {meta.format!r}; this version reads "
            f"{BUNDLE_FORMAT}"
        )
    return meta


def write_meta(folder: Path, meta: BundleMeta) -> Path:
    """Write `meta` as the folder's bundle.json (NumPy values as plain numbers); its path."""
    path = folder / META_FILE
    path.write_text(json.dumps(meta.to_dict(), indent=2, default=_json_default))
    return path


def _json_default(value: Any) -> Any:
    # NumPy scalars and arrays (in metrics) without importing NumPy: both have tolist()
    if callable(getattr(value, "tolist", None)):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in {META_FILE}")
