"""The built-in dashboard: one self-contained page (no build step, no CDN) over /v1/router/stats."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

dashboard = APIRouter()
_PAGE = files("router.dashboard").joinpath("dashboard.html")


@dashboard.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    # Read per request: the file is small, and editing it needs no restart while developing.
    return HTMLResponse(_PAGE.read_text(encoding="utf-8"), headers={"cache-control": "no-cache"})
