"""Request dependencies both servers share: the objects an app keeps in `app.state`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from smallboat.config import Settings


def app_state(name: str) -> Any:
    """`Depends` on `request.app.state.<name>`, an object the app (or its lifespan) keeps there.
    Give it the object's type in an alias: `ScorerDep = Annotated[Scorer, app_state("scorer")]`."""

    async def get(request: Request) -> Any:
        return getattr(request.app.state, name)

    return Depends(get)


SettingsDep = Annotated[Settings, app_state("settings")]
"""The app's settings (`create_app` keeps them as `app.state.settings`)."""
