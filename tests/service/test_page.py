"""The search page at `/` in a real headless Chromium against a real `docbits serve` on
127.0.0.1: search, open a hit, follow a similar document, open a bucket, errors, escaping,
shareable links, the keyboard, a phone-sized screen, a deployment that needs a key (with a
training job's live progress), and the API docs with every outside request blocked."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.browser import chromium_context, missing_chromium_message
from tests.reliability.conftest import Server, serving, train_tiny_model
from tests.synthetic import topical_documents

READ_KEY, WRITE_KEY = "page-read-key-5c1e", "page-write-key-93ad"
HOSTILE_TEXT = '<img src=x onerror="window.pwned=1"> orbit shuttle <script>window.pwned=2</script>'
HOSTILE_DOC = {
    "id": "space/<b>bold</b>",
    "text": HOSTILE_TEXT,
    "metadata": {"topic": "space", "<i>key</i>": "<svg onload=window.pwned=3>"},
}


def corpus() -> list[dict[str, Any]]:
    """160 synthetic documents with ids like `space/12` (a slash, as 20 Newsgroups ids have)."""
    docs = topical_documents(160, seed=5, length=30)
    for doc in docs:
        doc["id"] = doc["id"].replace("-", "/")
    return docs


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module; fails (never skips) when it cannot start."""
    problem = missing_chromium_message()
    if problem:
        pytest.fail(f"the page tests need headless Chromium: {problem}")
    with chromium_context() as context:
        yield context


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [doc["text"] for doc in corpus()]
    return train_tiny_model(tmp_path_factory.mktemp("page-model"), texts)


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory, model: Path) -> Iterator[Server]:
    """An open service with the tiny model and the corpus (plus one hostile document)."""
    with serving(tmp_path_factory.mktemp("page") / "data", model_dir=model) as server:
        with server.client() as client:
            ingested = client.post("/v1/documents", json={"documents": [*corpus(), HOSTILE_DOC]})
            assert ingested.status_code == 200, ingested.text
        yield server


def new_page(browser: Any, server: Server, path: str = "/", **viewport: int) -> Any:
    """A fresh tab on `path`, with page errors collected in `page.errors`."""
    page = browser.new_page()
    if viewport:
        page.set_viewport_size(viewport)
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto(server.url + path)
    return page


def url_params(page: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def test_search_open_a_hit_follow_similar_and_open_the_bucket(
    browser: Any, open_server: Server
) -> None:
    page = new_page(browser, open_server)
    page.locator("#model .histogram tbody tr").first.wait_for()
    with open_server.client() as client:
        info = client.get("/v1/info").json()
    facts = page.locator("#model .facts").inner_text()
    assert f"{info['documents']}" in facts and f"{info['buckets']}" in facts
    assert info["model_fingerprint"][:12] in facts and "16" in facts
    histogram_buckets = sum(
        int(cell.replace(",", ""))
        for cell in page.locator("#model .histogram tbody td:nth-child(2)").all_inner_texts()
    )
    assert histogram_buckets == info["buckets"]

    page.fill("#q", "orbit shuttle launch rocket")
    page.check("#nearest")
    page.fill("#limit", "5")
    page.press("#q", "Enter")
    hits = page.locator("#results .hit")
    hits.first.wait_for()
    assert hits.count() == 5
    assert url_params(page) == {"q": ["orbit shuttle launch rocket"], "nearest": ["true"]} | {
        "limit": ["5"]
    }
    with open_server.client() as client:
        expected = client.post(
            "/v1/search", json={"q": "orbit shuttle launch rocket", "nearest": True, "limit": 5}
        ).json()
    shown_ids = page.locator("#results .hit-link").all_inner_texts()
    assert shown_ids == [hit["id"] for hit in expected["hits"]]
    first = hits.first.inner_text()
    top = expected["hits"][0]
    assert f"distance {top['distance']}" in first and f"score {top['score']:.3f}" in first
    assert f"rescored {top['form_score']:.3f}" in first
    assert top["snippet"][:30] in first and "topic" in first

    page.locator("#results .hit-link").first.click()
    detail = page.locator("#detail")
    detail.locator(".doc-id").wait_for()
    assert detail.locator(".doc-id").inner_text() == top["id"]
    assert url_params(page)["doc"] == [top["id"]]
    with open_server.client() as client:
        stored = client.get(f"/v1/documents/{top['id']}").json()
    assert detail.locator(".bucket-link").inner_text() == stored["code"]
    assert detail.locator(".text").inner_text() == stored["text"]

    similar = detail.locator(".similar-link")
    similar.first.wait_for()
    neighbour = similar.first.inner_text()
    assert neighbour != top["id"]
    similar.first.click()
    page.wait_for_function(
        "id => document.querySelector('#detail .doc-id')?.textContent === id", arg=neighbour
    )
    assert url_params(page)["doc"] == [neighbour]

    code = detail.locator(".bucket-link").inner_text()
    detail.locator(".bucket-link").click()
    detail.locator(".bucket-size").wait_for()
    with open_server.client() as client:
        bucket = client.get(f"/v1/buckets/{code}").json()
    assert (
        bucket["size"] >= 1 and str(bucket["size"]) in detail.locator(".bucket-size").inner_text()
    )
    members = detail.locator(".member-link").all_inner_texts()
    assert members == [member["id"] for member in bucket["documents"]] and neighbour in members
    assert url_params(page)["bucket"] == [code] and "doc" not in url_params(page)

    page.go_back()  # history: back to the neighbour, then to the first hit
    page.wait_for_function(
        "id => document.querySelector('#detail .doc-id')?.textContent === id", arg=neighbour
    )
    assert page.errors == []


def test_a_bad_query_shows_the_services_error(browser: Any, open_server: Server) -> None:
    page = new_page(browser, open_server)
    page.fill("#q", "orbit")
    page.fill("#radius", "7")
    page.click("#search-form button[type=submit]")
    error = page.locator("#error")
    error.wait_for()
    assert "radius_too_large" in error.inner_text() and "cap of 3" in error.inner_text()
    assert page.locator("#results .hit").count() == 0

    page.fill("#radius", "0")
    page.fill("#filter", "topic")  # neither key=value nor JSON
    page.click("#search-form button[type=submit]")
    page.wait_for_function("() => document.querySelector('#error').textContent.includes('key=')")
    assert page.errors == []


def test_document_text_and_metadata_are_shown_as_text(browser: Any, open_server: Server) -> None:
    page = new_page(browser, open_server, f"/?doc={HOSTILE_DOC['id']}")
    detail = page.locator("#detail")
    detail.locator(".text").wait_for()
    assert detail.locator(".doc-id").inner_text() == HOSTILE_DOC["id"]
    assert detail.locator(".text").inner_text() == HOSTILE_TEXT
    assert "<svg onload=window.pwned=3>" in detail.locator(".meta").inner_text()
    assert detail.locator("img, script, svg, b, i").count() == 0
    page.fill("#q", HOSTILE_TEXT)
    page.check("#nearest")
    page.press("#q", "Enter")
    page.locator("#results .hit").first.wait_for()
    assert page.locator("#results img, #results script, #results svg").count() == 0
    assert page.evaluate("window.pwned") is None
    assert page.errors == []


def test_a_shared_link_restores_the_view_and_the_keyboard_drives_it(
    browser: Any, open_server: Server
) -> None:
    first = new_page(browser, open_server, "/?q=goal+puck+rink&nearest=true&limit=3")
    first.locator("#results .hit-link").first.wait_for()
    first.keyboard.press("Tab")  # focus starts in the page; tab to the links
    first.locator("#results .hit-link").first.focus()
    first.keyboard.press("Enter")
    first.locator("#detail .doc-id").wait_for()
    shared = first.url

    second = new_page(browser, open_server, shared.removeprefix(open_server.url))
    second.locator("#detail .doc-id").wait_for()
    assert second.locator("#q").input_value() == "goal puck rink"
    assert second.locator("#nearest").is_checked() and second.locator("#limit").input_value() == "3"
    assert (
        second.locator("#results .hit-link").all_inner_texts()
        == first.locator("#results .hit-link").all_inner_texts()
    )
    assert (
        second.locator("#detail .doc-id").inner_text()
        == first.locator("#detail .doc-id").inner_text()
    )

    second.keyboard.press("Escape")
    second.wait_for_function("() => document.querySelector('#detail').hidden")
    assert "doc" not in url_params(second)
    second.locator("body").click(position={"x": 5, "y": 300})
    second.keyboard.press("/")
    assert second.evaluate("document.activeElement.id") == "q"
    assert first.errors == [] and second.errors == []


def test_a_phone_sized_screen_needs_no_sideways_scrolling(
    browser: Any, open_server: Server
) -> None:
    page = new_page(
        browser,
        open_server,
        "/?q=patient+doctor&nearest=true&doc=medicine/2",
        width=390,
        height=844,
    )
    page.locator("#results .hit").first.wait_for()
    page.locator("#detail .similar-link").first.wait_for()
    page.locator("#model .histogram").wait_for()
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], widths
    box = page.locator("#q").bounding_box()
    assert box is not None and box["width"] > 200


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory, model: Path) -> Iterator[Server]:
    """A service whose reads need a key, with the corpus and a running training job."""
    env = {"DOCBITS_API_KEY": WRITE_KEY, "DOCBITS_READ_API_KEY": READ_KEY}
    args = ["--train-variant", "undercomplete", "--train-bits", "16"]
    with serving(
        tmp_path_factory.mktemp("keyed") / "data", model_dir=model, env=env, args=args
    ) as server:
        with server.client(WRITE_KEY) as client:
            assert client.post("/v1/documents", json={"documents": corpus()}).status_code == 200
        yield server


def test_a_protected_deployment_asks_for_the_key_and_shows_training_live(
    browser: Any, keyed_server: Server
) -> None:
    with keyed_server.client(WRITE_KEY) as client:
        job = client.post("/v1/model/train", json={"epochs": 10}).json()
    page = browser.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    job_polls: list[str] = []
    page.on(
        "request",
        lambda request: job_polls.append(request.url) if job["id"] in request.url else None,
    )
    page.goto(keyed_server.url + "/?q=render+pixel+shader&nearest=true")
    key_form = page.locator("#key-form")
    key_form.wait_for()
    assert "needs an API key" in key_form.inner_text()
    assert page.evaluate("document.activeElement.id") == "key-input"

    page.fill("#key-input", "wrong-key")
    page.press("#key-input", "Enter")
    page.wait_for_function(
        "() => document.querySelector('#key-reason').textContent.includes('refused')"
    )
    assert key_form.is_visible()

    page.fill("#key-input", READ_KEY)
    page.press("#key-input", "Enter")
    page.locator("#results .hit").first.wait_for()
    page.locator("#model .facts").wait_for()
    assert not key_form.is_visible()

    # The panel follows the job (queued, training, switching: a few seconds each), then shows
    # the model it switched to.
    statuses: list[str] = []
    deadline = time.monotonic() + 180
    while "succeeded" not in statuses:
        assert time.monotonic() < deadline and "failed" not in statuses, statuses
        shown = page.locator("#model .job-status strong")
        status = shown.inner_text() if shown.count() else None
        if status and status not in statuses:
            statuses.append(status)
        time.sleep(0.1)
    assert len(statuses) >= 3 and len(job_polls) >= 2, (statuses, job_polls)
    with keyed_server.client(READ_KEY) as client:
        fingerprint = client.get(f"/v1/model/jobs/{job['id']}").json()["fingerprint"]
    page.wait_for_function(
        "fp => document.querySelector('#model .facts').textContent.includes(fp)",
        arg=fingerprint[:12],
    )

    assert READ_KEY not in page.url and "wrong-key" not in page.url
    stored = page.evaluate(
        "[JSON.stringify(localStorage), JSON.stringify(sessionStorage), document.cookie]"
    )
    assert all(READ_KEY not in item for item in stored), stored
    assert page.errors == []


def test_the_api_docs_render_with_nothing_from_outside(browser: Any, open_server: Server) -> None:
    outside: list[str] = []
    page = browser.new_page()

    def only_this_service(route: Any) -> None:
        if route.request.url.startswith(open_server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_service)
    page.goto(open_server.url + "/docs")
    page.locator(".swagger-ui .opblock-summary-path").first.wait_for()
    paths = page.locator(".swagger-ui .opblock-summary-path").all_inner_texts()
    assert "/v1/search" in paths
    page.goto(open_server.url + "/redoc")
    page.locator("h2", has_text="Search with one query").first.wait_for()
    page.goto(open_server.url + "/")
    page.locator("#model .facts").wait_for()
    assert page.locator("a[href='/docs']").count() == 1
    assert outside == []


def test_the_page_and_its_files_come_with_a_strict_content_policy(open_server: Server) -> None:
    with httpx.Client(base_url=open_server.url) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "connect-src 'self'" in policy
        for asset in re.findall(r'(?:src|href)="(/web/[^"]+)"', page.text):
            assert client.get(asset).status_code == 200, asset
        assert client.get("/web/missing.js").json()["error"]["code"] == "not_found"
