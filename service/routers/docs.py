"""`/docs` (Swagger UI) and `/redoc`: the API reference pages, entirely from this service.

Their scripts and styles ship in the `fastapi-offline` package, which `create_app` mounts at
`ASSETS_URL`; a content policy keeps the pages from fetching anything elsewhere (ReDoc's logo
would come from its makers' site), so they work on machines without internet access.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

ASSETS_URL = "/docs-assets"
DOCS_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
        "connect-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(include_in_schema=False)


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    """The interactive reference: every route, with examples, and a "Try it out" button."""
    page = get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title="docbits API",
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url="/web/favicon.svg",
        swagger_ui_parameters={"validatorUrl": None},  # no badge from an online validator
    )
    page.headers.update(DOCS_HEADERS)
    return page


@router.get("/redoc", response_class=HTMLResponse)
def redoc(request: Request) -> HTMLResponse:
    """The same reference as one long readable page."""
    page = get_redoc_html(
        openapi_url=request.app.openapi_url,
        title="docbits API",
        redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url="/web/favicon.svg",
        with_google_fonts=False,
    )
    page.headers.update(DOCS_HEADERS)
    return page
