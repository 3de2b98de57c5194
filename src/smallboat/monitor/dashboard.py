"""The monitoring dashboard: one page, its packaged assets, and the snapshot it draws.

`smallboat monitor check` writes `<home>/monitor/snapshot.json` (traffic, latency, live quality
per model version, drift, alerts, version history, champion); this router serves it to the page
under `/dashboard`. Everything the page loads comes from this router: no CDN, no web font, the
charts are inline SVG drawn by `static/dashboard.js`. The prediction service mounts the router
(`app.include_router(dashboard_router(settings))`); `smallboat monitor serve` runs it alone
(`create_dashboard_app`).

Errors are `{"error": <code>, "detail": <what was wrong>}`: 404 no snapshot yet, no champion card,
or an unknown asset; 503 a snapshot that is not JSON.

The dashboard has no login: what it answers names no path of the machine. The snapshot's home,
card and report paths are shown relative to the home, and errors name files the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import FileResponse, JSONResponse

from smallboat.config import Settings
from smallboat.web.errors import install_error_handlers

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE = "dashboard.html"
# The assets the page may load, by name: nothing else under static/ (or outside it) is served.
ASSETS: dict[str, str] = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
NO_SNAPSHOT = "no monitoring snapshot yet: run `smallboat monitor check`"
# The page polls every 30 s: an answer cached by the browser would hide a fresh snapshot.
NO_STORE = {"Cache-Control": "no-store"}
# The browser itself enforces "nothing from the internet": the page may load only from this
# origin, and the champion's card (self-contained HTML with inline script) nothing beyond it.
PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'self'",
}
CARD_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'self' 'unsafe-inline' 'unsafe-eval' data: blob:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'",
}


def snapshot_path(settings: Settings) -> Path:
    """Where the monitoring job writes the snapshot the dashboard draws."""
    return settings.home_dir / "monitor" / "snapshot.json"


def read_snapshot(settings: Settings) -> dict[str, Any]:
    """The current snapshot; 404 when the monitoring job has not written one, 503 when the file
    is not a JSON object (the job writes it atomically, so this means it was edited by hand)."""
    path = snapshot_path(settings)
    shown = _shown(settings, path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HTTPException(404, NO_SNAPSHOT) from None
    try:
        # Python writes an undefined metric (an AUC of one class) as NaN, which is not JSON:
        # browsers reject it, so it is answered as null, as the page expects of a missing value.
        snapshot = json.loads(text, parse_constant=lambda _: None)
    except json.JSONDecodeError as exc:
        raise HTTPException(
            503, f"{shown} is not valid JSON ({exc}): rerun `smallboat monitor check`"
        ) from None
    if not isinstance(snapshot, dict):
        raise HTTPException(
            503,
            f"{shown} holds a {type(snapshot).__name__}, not a JSON object: rerun "
            "`smallboat monitor check`",
        )
    return snapshot


def champion_card_path(settings: Settings, snapshot: dict[str, Any]) -> Path:
    """The champion's card named by the snapshot (relative paths are under the home); 404 when
    there is no champion, it has no card, or the file is gone."""
    champion = snapshot.get("champion")
    card = champion.get("card_path") if isinstance(champion, dict) else None
    if not card:
        raise HTTPException(404, "the current champion has no model card in the snapshot")
    path = Path(card)
    if not path.is_absolute():
        path = settings.home_dir / path
    if not path.is_file():
        raise HTTPException(
            404, f"the champion's model card {_shown(settings, path)} does not exist"
        )
    return path


def _shown(settings: Settings, path: Path | str) -> str:
    """`path` as an outsider may see it: relative to the home, else its name only."""
    path = Path(path)
    try:
        return path.relative_to(settings.home_dir).as_posix()
    except ValueError:
        return path.name


def public_snapshot(settings: Settings, snapshot: dict[str, Any]) -> dict[str, Any]:
    """The snapshot without the machine's paths (the home, the card's and report's)."""
    public = dict(snapshot)
    if isinstance(public.get("home"), str):
        public["home"] = Path(public["home"]).name
    for key, field in (("champion", "card_path"), ("drift", "report_path")):
        part = public.get(key)
        if isinstance(part, dict) and isinstance(part.get(field), str) and part[field]:
            public[key] = {**part, field: _shown(settings, part[field])}
    return public


def dashboard_router(settings: Settings) -> APIRouter:
    """`/dashboard` (the page), `/dashboard/static/{name}` (its script and style),
    `/dashboard/api/snapshot` (the monitoring snapshot) and `/dashboard/card` (the champion's
    model card)."""
    router = APIRouter(prefix="/dashboard", tags=["dashboard"])

    @router.get("", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / PAGE, media_type="text/html", headers=PAGE_HEADERS)

    @router.get("/static/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise HTTPException(
                404, f"no dashboard asset named {name!r}: the assets are {', '.join(ASSETS)}"
            )
        return FileResponse(STATIC_DIR / name, media_type=media_type, headers=NO_STORE)

    # The two routes that read files are plain functions: FastAPI runs them in its thread pool,
    # off the event loop that the prediction service's requests share.
    @router.get(
        "/api/snapshot",
        responses={
            404: {"description": "No snapshot yet: run `smallboat monitor check`."},
            503: {"description": "The snapshot file is not a JSON object."},
        },
    )
    def snapshot() -> JSONResponse:
        """The latest monitoring snapshot, as `smallboat monitor check` wrote it. Its contract
        belongs to the monitoring job; the page treats every field as possibly missing."""
        return JSONResponse(public_snapshot(settings, read_snapshot(settings)), headers=NO_STORE)

    @router.get("/card", include_in_schema=False)
    def card() -> FileResponse:
        path = champion_card_path(settings, read_snapshot(settings))
        return FileResponse(path, media_type="text/html", headers=CARD_HEADERS)

    return router


def create_dashboard_app(settings: Settings | None = None) -> FastAPI:
    """The dashboard alone (`smallboat monitor serve`): the router and JSON error bodies."""
    settings = settings or Settings()
    app = FastAPI(title="smallboat monitoring dashboard")
    app.state.settings = settings
    app.include_router(dashboard_router(settings))
    install_error_handlers(app, invalid_status=422)
    return app
