"""Field checks the collector's and the prediction service's request bodies share."""

from __future__ import annotations

from typing import Any


def utf8_text(value: Any) -> Any:
    """Refuse text holding a lone surrogate ("\\ud800" in the JSON): it cannot be written as
    UTF-8. For a pydantic BeforeValidator (the length constraints after it do not check this)."""
    if isinstance(value, str) and not value.isascii():  # ASCII is UTF-8: no encoding needed
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("is not valid Unicode text: it holds a lone surrogate") from None
    return value
