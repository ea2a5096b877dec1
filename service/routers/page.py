"""`/`: the search page, plain HTML, CSS and JavaScript from `service/web/` (no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
# The page runs only its own files and talks only to this service: no inline script, nothing
# from elsewhere, so document text that slipped into markup could not run either.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def search_page() -> HTMLResponse:
    """The page; its state (query, options, open document or bucket) lives in the query string."""
    return HTMLResponse((WEB_DIR / "index.html").read_text(encoding="utf-8"), headers=PAGE_HEADERS)
