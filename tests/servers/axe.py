"""Accessibility checks with axe-core (npm ``axe-core``, node_modules/axe-core/axe.min.js) in
Playwright's Chromium: ``violations(page)`` injects axe into the page (or a frame: check a
framed page's frames one by one) and returns the violations of the given impacts, each as
``{"id", "impact", "help", "targets"}``, so a test can ``assert violations(page) == []``
and read what is wrong from the assertion.

axe is evaluated through the DevTools protocol, so a page's Content-Security-Policy (the
pane's forbids inline scripts) does not stop it and is not loosened for it.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

AXE_JS = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.1 A and AA, and axe's best practices.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


@cache
def _source() -> str:
    if not AXE_JS.exists():
        raise RuntimeError(f"{AXE_JS} is missing: run `bash scripts/test.sh` (it runs `npm ci`)")
    return AXE_JS.read_text(encoding="utf-8")


def violations(page, impacts=("serious", "critical"), *, context=None) -> list[dict]:
    """axe's violations of ``impacts`` on ``page`` (a Page or a Frame) as it is now;
    ``context``: a CSS selector to check only part of it."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(_source() + "\n;true")
    found = page.evaluate("""async ([context, tags]) => {
        const result = await axe.run(context ? document.querySelector(context) : document,
                                     { runOnly: { type: "tag", values: tags }, resultTypes: ["violations"] });
        return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                                               targets: v.nodes.map((n) => n.target.join(" ")) }));
    }""", [context, TAGS])
    return [v for v in found if v["impact"] in impacts]
