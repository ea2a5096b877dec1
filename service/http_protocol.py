"""The HTTP/1.1 protocol the service runs under uvicorn: uvicorn's httptools protocol, except that
a request its parser refuses is answered in the one JSON error shape instead of plain text.

Such requests never reach the application: a URL over httptools' limit (its URL parser keeps
offsets in 16 bits, so 65,535 bytes) or bytes that are not HTTP/1.1.
`docbits serve` passes this class to uvicorn; the image runs `uvicorn --http` with its path.
"""

from __future__ import annotations

import http
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_URL_BYTES = 65_535
HTTP_PROTOCOL = "docbits.service.http_protocol:JSONErrorsHttpToolsProtocol"


def refusal(url_bytes: int) -> tuple[int, dict[str, object]]:
    """Status and error body for a request the HTTP parser gave up on."""
    if url_bytes > MAX_URL_BYTES:
        message = (
            f"the URL has {url_bytes} bytes; the limit is {MAX_URL_BYTES}: send long queries "
            "in the body of POST /v1/search"
        )
        error = {"code": "uri_too_long", "message": message, "details": {"limit": MAX_URL_BYTES}}
        return 414, {"error": error}
    message = "the request is not valid HTTP/1.1 and cannot be read"
    return 400, {"error": {"code": "bad_request", "message": message, "details": {}}}


class JSONErrorsHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` whose parser refusals are JSON errors (then the connection closes)."""

    def send_400_response(self, msg: str) -> None:
        status, error = refusal(len(getattr(self, "url", b"")))
        body = json.dumps(error).encode()
        phrase = http.HTTPStatus(status).phrase
        content = [f"HTTP/1.1 {status} {phrase}\r\n".encode()]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
