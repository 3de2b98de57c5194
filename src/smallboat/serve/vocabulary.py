"""Publishing a served model's next-item vocabulary in the reference project's token mapping shape
(`token_mapping.json`: `{"token2id": ..., "id2token": ...}`), so a client that sends token ids
(the reference's recommendation Lambda) can use a smallboat model. No torch: the vocabulary is a
Parquet file of the bundle."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from smallboat.bundle import MODEL_NAME, VOCAB_DIR, read_current_meta
from smallboat.config import Settings
from smallboat.features.vocab import Vocabulary
from smallboat.serve.reference import export_vocabulary


@dataclass(frozen=True)
class Exported:
    version: str
    tokens: int


def export_bundle_vocabulary(settings: Settings, out: Path, *, bundle: Path | None) -> Exported:
    """Write the token mapping of `bundle` (else the registry's champion) to `out`, atomically."""
    version: str | None = None
    if bundle is None:
        from smallboat import registry

        bundle, number = registry.champion_bundle(
            settings, model_name=MODEL_NAME, hint="name a bundle folder with --bundle PATH"
        )
        version = str(number)
    meta = read_current_meta(bundle)
    mapping = export_vocabulary(Vocabulary.load(bundle / VOCAB_DIR).trained_skus())
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(json.dumps(mapping))
    os.replace(partial, out)
    return Exported(version or meta.version, len(mapping["token2id"]))
