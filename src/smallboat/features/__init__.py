"""Session prefix -> model inputs: the feature code shared by training and serving.

Pure functions of (events, fitted vocabularies); nothing here touches the warehouse or Metaflow.
"""

from smallboat.features.encode import (
    TOKEN_COLUMNS,
    EventTable,
    EventTokens,
    ModelInputs,
    collapse_session,
    encode_collapsed,
    encode_sessions,
    event_table,
    tokenize,
    windows,
)
from smallboat.features.spec import ACTIONS, COUNT_FEATURES, FeatureSpec
from smallboat.features.vocab import Vocabulary, fit_vocabulary

__all__ = [
    "ACTIONS",
    "COUNT_FEATURES",
    "TOKEN_COLUMNS",
    "EventTable",
    "EventTokens",
    "FeatureSpec",
    "ModelInputs",
    "Vocabulary",
    "collapse_session",
    "encode_collapsed",
    "encode_sessions",
    "event_table",
    "fit_vocabulary",
    "tokenize",
    "windows",
]
