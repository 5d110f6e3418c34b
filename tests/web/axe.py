"""axe-core, the accessibility engine (npm ``axe-core``, installed by scripts/test.sh), run
in a Playwright page: ``violations(page)`` lists what it finds of the given impacts."""
from __future__ import annotations

from pathlib import Path

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


def violations(page, impacts=("serious", "critical")) -> list[str]:
    """axe-core's violations of ``impacts`` on the page as it is now, one line each: the
    rule, its help text and the first offending elements."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())  # through DevTools: the page's CSP allows no inline script
    found = page.evaluate("() => axe.run(document).then(r => r.violations)")
    return [f"{v['id']} ({v['impact']}): {v['help']}: "
            + "; ".join(" ".join(n["target"]) for n in v["nodes"][:3])
            for v in found if v["impact"] in impacts]
