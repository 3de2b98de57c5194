"""The reference project's wire formats ("you don't need a bigger boat": a SageMaker model behind a
Lambda), translated to the raw browsing rows the scorer takes.

Intent form: `{"instances": [session, ...]}`, a session being rows of 7 one-hot columns in the
order `start, end, add, remove, purchase, detail, view` (the Lambda's "feature store"); the Lambda
wraps every session in `start` ... `end`, and sends an all-zero row for an action it does not know.
`start` and `end` carry no event and are dropped; an all-zero row is dropped and counted, as the
reference's model saw an empty step there. The same action names serve the Lambda's GET forms
(`?session=` / `?x=`).

Recommendation form: `{"instances": [[token id, ...], ...], "mask": id}` over the vocabulary a
bundle publishes (`export_vocabulary`): 0 pads, 1 is a plain pageview, 2 a SKU the model does not
know, 3.. the trained SKUs, and the last id is `mask`, the position whose next item is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from smallboat.features.spec import PAD, SKU_FIRST, SKU_NONE, SKU_OOV

ONE_HOT_ACTIONS: tuple[str, ...] = ("start", "end", "add", "remove", "purchase", "detail", "view")
"""The reference Lambda's one-hot columns, in its order."""
WRAPPER_ACTIONS = frozenset({"start", "end"})
"""Tokens that mark a session's ends and carry no event."""
ACTION_EVENTS: dict[str, tuple[str, str | None]] = {
    "pageview": ("pageview", None),
    "view": ("pageview", None),
    "detail": ("event_product", "detail"),
    "add": ("event_product", "add"),
    "remove": ("event_product", "remove"),
    "purchase": ("event_product", "purchase"),
}
"""Action names -> (event_type, product_action) of the event they stand for."""
ACTION_SPACING_MS = 10_000
"""The action-only forms have no times: their events are this far apart (a browsing pace)."""
UNKNOWN_SKU = "[UNK]"
"""The SKU of a recommendation-form event whose token is unknown (never in a vocabulary)."""
PAD_TOKEN, PAGEVIEW_TOKEN, MASK_TOKEN = "[PAD]", "[PAGEVIEW]", "mask"


class ReferenceFormatError(ValueError):
    """A body in the reference's format that cannot be read; the message names where."""


def action_rows(actions: Sequence[str]) -> list[dict[str, Any]]:
    """Raw browsing rows for action names (oldest first), ACTION_SPACING_MS apart; `start` and
    `end` are dropped. Names must be keys of ACTION_EVENTS or wrappers."""
    rows: list[dict[str, Any]] = []
    for action in actions:
        if action in WRAPPER_ACTIONS:
            continue
        event_type, product_action = ACTION_EVENTS[action]
        rows.append(_row(event_type, product_action, None, len(rows)))
    return rows


def _row(event_type: str, action: str | None, sku: str | None, i: int) -> dict[str, Any]:
    return {
        "session_id_hash": None,
        "event_type": event_type,
        "product_action": action,
        "product_sku_hash": sku,
        "server_timestamp_epoch_ms": i * ACTION_SPACING_MS,
        "hashed_url": None,
    }


@dataclass(frozen=True)
class IntentInstances:
    """The intent form read: raw rows per session, and the all-zero rows dropped per session."""

    sessions: list[list[dict[str, Any]]]
    unknown_rows: list[int]


def is_one_hot_form(instances: Sequence[Any]) -> bool:
    """The intent form: every instance a list of rows (lists); the recommendation form's
    instances are lists of token ids."""
    first = next((i for i in instances if isinstance(i, list) and i), None)
    return first is None or isinstance(first[0], list)


def read_one_hot(instances: Sequence[Any], *, where: str = "instances") -> IntentInstances:
    """Sessions of one-hot action rows -> raw browsing rows (ReferenceFormatError naming the
    first bad row)."""
    width = len(ONE_HOT_ACTIONS)
    sessions: list[list[dict[str, Any]]] = []
    unknown: list[int] = []
    for s, instance in enumerate(instances):
        if not isinstance(instance, list):
            raise ReferenceFormatError(
                f"{where}[{s}] is {_kind(instance)}; expected a session: a list of one-hot rows"
            )
        actions: list[str] = []
        dropped = 0
        for r, row in enumerate(instance):
            at = f"{where}[{s}][{r}]"
            if not isinstance(row, list) or len(row) != width:
                raise ReferenceFormatError(
                    f"{at} is {_kind(row)}; expected {width} one-hot columns "
                    f"({', '.join(ONE_HOT_ACTIONS)})"
                )
            if any(isinstance(v, bool) or v not in (0, 1) for v in row):
                raise ReferenceFormatError(f"{at} {row} holds a value other than 0 or 1")
            ones = [ONE_HOT_ACTIONS[i] for i, v in enumerate(row) if v == 1]
            if len(ones) > 1:
                raise ReferenceFormatError(
                    f"{at} marks {', '.join(ones)}; a row is one action (or none)"
                )
            if ones:
                actions.append(ones[0])
            else:
                dropped += 1
        sessions.append(action_rows(actions))
        unknown.append(dropped)
    return IntentInstances(sessions, unknown)


@dataclass(frozen=True)
class TokenInstances:
    """The recommendation form read: raw rows of the prefix before each instance's mask, and
    where the mask stands in the instance (after appending it when the instance had none)."""

    sessions: list[list[dict[str, Any]]]
    mask_positions: list[int]
    lengths: list[int]


def read_tokens(
    instances: Sequence[Any], *, mask: int, names: Sequence[str], where: str = "instances"
) -> TokenInstances:
    """Sessions of token ids of the published vocabulary (`names[id]` is a SKU hash for ids >=
    SKU_FIRST) -> raw rows of detail views. Padding (0) is skipped; the session ends at the
    first `mask`; an instance without one gets it appended (as the reference's model input
    handler did)."""
    sessions: list[list[dict[str, Any]]] = []
    positions: list[int] = []
    lengths: list[int] = []
    for s, instance in enumerate(instances):
        if not isinstance(instance, list):
            raise ReferenceFormatError(
                f"{where}[{s}] is {_kind(instance)}; expected a list of token ids"
            )
        rows: list[dict[str, Any]] = []
        at_mask: int | None = None
        for p, token in enumerate(instance):
            if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token <= mask:
                raise ReferenceFormatError(
                    f"{where}[{s}][{p}] {token!r} is not a token id of this model's vocabulary "
                    f"(0 to {mask}; `smallboat export-vocab` writes it)"
                )
            if token == mask:
                at_mask = p
                break
            if token == PAD:
                continue
            if token == SKU_NONE:
                rows.append(_row("pageview", None, None, len(rows)))
            else:
                sku = names[token] if token >= SKU_FIRST else UNKNOWN_SKU
                rows.append(_row("event_product", "detail", sku, len(rows)))
        sessions.append(rows)
        positions.append(len(instance) if at_mask is None else at_mask)
        lengths.append(len(instance) + (1 if at_mask is None else 0))
    return TokenInstances(sessions, positions, lengths)


def export_vocabulary(trained_skus: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The bundle's next-item vocabulary in the reference's token mapping shape:
    `{"token2id": {token: id}, "id2token": {"id": token}}` (ids as JSON object keys are text)."""
    tokens = [PAD_TOKEN, PAGEVIEW_TOKEN, UNKNOWN_SKU, *trained_skus, MASK_TOKEN]
    assert (PAD, SKU_NONE, SKU_OOV, SKU_FIRST) == (0, 1, 2, 3), "token ids moved: update this"
    return {
        "token2id": {token: i for i, token in enumerate(tokens)},
        "id2token": {str(i): token for i, token in enumerate(tokens)},
    }


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return f"{type(value).__name__} {value!r}"[:80]
