"""Headless Chromium for the add-in tests, driven by Playwright's sync API.

Debian's /usr/bin/chromium is used (never a Playwright browser download). Every context
made here reaches only loopback: any request to another host is aborted, so the tests
never touch the internet, and `route_office_js()` answers Microsoft's Office.js CDN URL
with a stand-in script given by the test.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

CHROMIUM = os.environ.get("REGARDING_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OFFICE_JS_URL = "https://appsforoffice.microsoft.com/lib/1/hosted/office.js"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
LOCAL_SCHEMES = {"data", "blob", "about"}


def is_local_url(url: str) -> bool:
    """True for loopback http(s)/ws(s) URLs and for data:, blob:, about: URLs."""
    parts = urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return True
    return parts.hostname in LOOPBACK_HOSTS


class BrowserSession:
    """A running Playwright + Chromium; make isolated contexts/pages from it.

    new_context()/new_page() mirror Playwright's Browser methods but add the
    loopback-only route; other attributes are passed through to the Browser.
    """

    def __init__(self, *, headless: bool = True, extra_args: list[str] | None = None):
        from playwright.sync_api import sync_playwright

        if not os.path.exists(CHROMIUM):
            raise RuntimeError(f"{CHROMIUM} not found: run `bash scripts/test.sh` once")
        self._playwright = sync_playwright().start()
        try:
            self.browser = self._playwright.chromium.launch(
                executable_path=CHROMIUM,
                headless=headless,
                args=CHROMIUM_ARGS + list(extra_args or []),
                chromium_sandbox=False,
            )
        except Exception:
            self._playwright.stop()
            raise
        # URLs aborted because they were not loopback, per context (for assertions).
        self.blocked: dict[int, list[str]] = {}

    def new_context(self, **options):
        """A fresh context (own cookies and storage) that can reach only loopback."""
        options.setdefault("service_workers", "block")  # so every request meets the route
        context = self.browser.new_context(**options)
        blocked = self.blocked.setdefault(id(context), [])
        block_non_loopback(context, blocked)
        context.on("close", lambda _: self.blocked.pop(id(context), None))
        return context

    def new_page(self, **context_options):
        """A page in its own fresh context; closing the page's context cleans up both."""
        return self.new_context(**context_options).new_page()

    def blocked_urls(self, page_or_context) -> list[str]:
        """Non-loopback URLs this page's context tried and was refused."""
        context = getattr(page_or_context, "context", page_or_context)
        return list(self.blocked.get(id(context), []))

    def __getattr__(self, name):
        # Anything else (version, contexts, ...) is the Playwright Browser's.
        if name in ("browser", "_playwright"):
            raise AttributeError(name)
        return getattr(self.browser, name)

    def close(self) -> None:
        try:
            self.browser.close()
        finally:
            self._playwright.stop()

    def __enter__(self) -> BrowserSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def block_non_loopback(context_or_page, blocked: list[str] | None = None) -> None:
    """Abort every request whose host is not loopback (routes on page or context)."""

    def handle(route):
        url = route.request.url
        if is_local_url(url):
            route.fallback()
        else:
            if blocked is not None:
                blocked.append(url)
            route.abort("blockedbyclient")

    context_or_page.route("**/*", handle)


def route_office_js(page, stub_js_text: str, url: str = OFFICE_JS_URL) -> None:
    """Answer the Office.js CDN URL (or `url`, a Playwright URL pattern) with
    `stub_js_text`, a stand-in for Office.js.

    Registered on the page (or context), so it wins over the context's loopback-only route.
    """

    def fulfill(route):
        route.fulfill(
            status=200,
            content_type="application/javascript; charset=utf-8",
            headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"},
            body=stub_js_text,
        )

    page.route(url, fulfill)
