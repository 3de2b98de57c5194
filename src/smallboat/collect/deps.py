"""Request dependencies of the collection API: the store, the write key (the settings' alias is
`web.deps.SettingsDep`, shared with the prediction service)."""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from smallboat.collect.counters import HitCounters
from smallboat.collect.rejects import RejectsLog
from smallboat.collect.store import EventStore
from smallboat.web.deps import SettingsDep, app_state

StoreDep = Annotated[EventStore, app_state("store")]
CountersDep = Annotated[HitCounters, app_state("counters")]
"""The app's counters of ignored and refused hits (`app.state.counters`)."""
RejectsDep = Annotated[RejectsLog, app_state("rejects")]
"""The log of refused events (`app.state.rejects`)."""


async def require_write_key(request: Request, settings: SettingsDep) -> str:
    """The Segment write key from HTTP basic auth (user = key, empty password); 401 unless it is
    one of SMALLBOAT_WRITE_KEYS."""
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise _unauthorized("send the write key as the HTTP basic auth user (Authorization: Basic)")
    try:
        user = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        raise _unauthorized("the Authorization header is not valid basic auth") from None
    keys = settings.write_key_set
    if not keys:
        raise _unauthorized("this collector has no write keys: set SMALLBOAT_WRITE_KEYS")
    if not any(secrets.compare_digest(user.encode(), key.encode()) for key in keys):
        raise _unauthorized("the write key is not one of this collector's keys")
    return user


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": 'Basic realm="smallboat"'})


WriteKeyDep = Annotated[str, Depends(require_write_key)]
