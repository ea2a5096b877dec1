"""Headless Chromium for the page tests and the README screenshot: Debian's `chromium` package
driven by Playwright (Playwright's own browser downloads are never used).

`python -m tests.browser URL OUT.png [--open-first-hit]` screenshots a running service's page.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def missing_chromium_message() -> str | None:
    """Why the browser cannot start here, or None when it can."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is missing: pip install -e '.[dev]'"
    return None


@contextmanager
def chromium_context(width: int = 1280, height: int = 860) -> Iterator:
    """A Playwright browser context of a fresh headless Chromium with its own user-data-dir."""
    from playwright.sync_api import sync_playwright

    with (
        tempfile.TemporaryDirectory(prefix="docbits-chromium-") as profile,
        sync_playwright() as pw,
    ):
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height},
        )
        try:
            yield context
        finally:
            context.close()


def screenshot(url: str, out: Path, open_first_hit: bool = False, height: int = 1400) -> None:
    """Load `url` (a page link with a query), wait for its hits, optionally open the first one,
    and save a PNG of the top `height` pixels."""
    with chromium_context(height=height) as context:
        page = context.new_page()
        page.goto(url)
        page.locator(".hit-link").first.wait_for()
        page.locator("#model .histogram").wait_for()
        if open_first_hit:
            page.locator(".hit-link").first.click()
            page.locator("#detail .similar-link").first.wait_for()
        page.screenshot(path=str(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("out", type=Path)
    parser.add_argument("--open-first-hit", action="store_true")
    parser.add_argument("--height", type=int, default=1400, help="viewport height in pixels")
    args = parser.parse_args()
    problem = missing_chromium_message()
    if problem:
        raise SystemExit(problem)
    screenshot(args.url, args.out, args.open_first_hit, args.height)


if __name__ == "__main__":
    main()
