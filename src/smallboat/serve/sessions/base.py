"""The session stores' shared interface (`SessionStore`), errors and byte estimate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from smallboat.errors import SmallboatError
from smallboat.features.incremental import SessionPrefix

ROW_OVERHEAD_BYTES = 400
"""What one stored row costs in the process besides its text: the dict, its keys' slots, the int
and the string objects' headers (sys.getsizeof of a 6-key browsing row's parts: ~380 bytes)."""


def row_bytes(row: Mapping[str, Any]) -> int:
    """The in-process store's estimate of one row's memory: its strings' lengths plus a fixed
    overhead (a 8 KiB `hashed_url` costs 8 KiB, however few events carry it)."""
    return ROW_OVERHEAD_BYTES + sum(len(v) for v in row.values() if isinstance(v, str))


class SessionStoreError(SmallboatError):
    """The session store cannot be reached or failed; the service answers 503."""


class SessionTooLarge(SmallboatError):
    """One append's rows are more than a session may hold; the service answers 413."""


class SessionStore(Protocol):
    """Raw browsing rows per session id, shared by the prediction service's requests."""

    async def append(
        self, session_id: str, rows: Sequence[Mapping[str, Any]], *, window: int
    ) -> SessionPrefix:
        """Add `rows` to the session; return the prefix to score (the state's, kept for a model
        window of `window` events)."""
        ...

    async def prefix(self, session_id: str, *, window: int) -> SessionPrefix:
        """The stored session's prefix to score, as `append` returns it, without appending."""
        ...

    async def get(self, session_id: str) -> list[dict[str, Any]]:
        """The session's current visit; [] for a session not stored (or expired)."""
        ...

    async def delete(self, session_id: str) -> bool:
        """Forget the session; True if it was stored."""
        ...

    async def ping(self) -> None:
        """Raise `SessionStoreError` if the store cannot be reached."""
        ...

    async def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...

    rebuilds: int
    """Appends whose state was rebuilt from the stored raw rows."""
    conflicts: int
    """Appends retried after another replica's write to the same session."""

    def describe(self) -> str:
        """One line for logs and health checks; never contains a password."""
        ...


def require_positive(name: str, env: str, value: float) -> None:
    if not value > 0:
        raise SmallboatError(
            f"session store: {name} must be positive, got {value!r}; set {env} to a value above 0"
        )
