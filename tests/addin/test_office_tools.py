"""Microsoft's own tools over the task pane, in the suite (so in the README's test command):

* TypeScript (`tsc -p tsconfig.json`: checkJs, noEmit) against @types/office-js: every Office
  API the pane calls exists with that signature, and both stand-ins for Office.js (the
  preview's and the tests') hold only members Office.js has, with its signatures; a stand-in
  that drifts fails the check (shown with a drifted copy);
* eslint-plugin-office-addins' recommended rules (eslint.config.js) over addin/;
* the real @microsoft/office-js package, served in place of Microsoft's CDN, loading the
  real task pane outside Outlook in Chromium: the pane starts, says it belongs in Outlook,
  offers the preview, and logs no error.
"""
from __future__ import annotations

import json
import mimetypes
import shutil
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.addin.test_pane_browser import live  # noqa: F401 - fixture
from tests.servers.browser import OFFICE_JS_URL

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "node_modules" / ".bin"
OFFICE_DIST = ROOT / "node_modules" / "@microsoft" / "office-js" / "dist"

needs_node_tools = pytest.mark.skipif(
    not (BIN / "tsc").exists() or not (BIN / "eslint").exists(),
    reason="npm dev tools missing: run `bash scripts/test.sh` (it runs `npm ci`)")


def run(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)


@needs_node_tools
def test_the_pane_and_both_stand_ins_type_check_against_office_js():
    result = run(str(BIN / "tsc"), "-p", "tsconfig.json")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_node_tools
def test_a_stand_in_that_drifts_from_office_js_fails_the_type_check(tmp_path):
    """A copy of the tests' stand-in with a member Office.js does not have (and one it
    misnames): the same check refuses it, naming the member."""
    stub = (ROOT / "tests" / "addin" / "officejs_stub.js").read_text(encoding="utf-8")
    drifted = stub.replace("removeAsync: function (names)", "removeItemsAsync: function (names)", 1) \
        .replace("var dialog = /** @satisfies {Stand<Office.Dialog>} */ ({", "var dialog = /** @satisfies {Stand<Office.Dialog>} */ ({ closeAll: function () {},", 1)
    assert drifted != stub
    (tmp_path / "stub.js").write_text(drifted, encoding="utf-8")
    shutil.copy(ROOT / "addin" / "office-standin.d.ts", tmp_path / "office-standin.d.ts")
    config = json.loads((ROOT / "tsconfig.json").read_text(encoding="utf-8"))
    config["compilerOptions"]["typeRoots"] = [str(ROOT / "node_modules" / "@types")]
    config["include"] = ["office-standin.d.ts", "stub.js"]
    (tmp_path / "tsconfig.json").write_text(json.dumps(config), encoding="utf-8")
    result = run(str(BIN / "tsc"), "-p", str(tmp_path / "tsconfig.json"), cwd=tmp_path)
    assert result.returncode != 0
    assert "'removeItemsAsync' does not exist in type 'Stand<Categories>'" in result.stdout, result.stdout
    assert "'closeAll' does not exist in type 'Stand<Dialog>'" in result.stdout, result.stdout


@needs_node_tools
def test_microsofts_office_addin_lint_rules_pass():
    result = run(str(BIN / "eslint"), "--max-warnings", "0", "addin")
    assert result.returncode == 0, result.stdout + result.stderr
    # The rules are Microsoft's: the configuration really applies them to the pane.
    config = run(str(BIN / "eslint"), "--print-config", "addin/js/main.js")
    rules = json.loads(config.stdout)["rules"]
    assert rules["office-addins/load-object-before-read"][0] == 2


def route_real_office_js(context) -> list[str]:
    """Answer Microsoft's CDN (office.js and what it loads beside it) from the npm package;
    returns the files it served."""
    served: list[str] = []
    prefix = OFFICE_JS_URL.rsplit("/", 1)[0] + "/"

    def fulfill(route):
        name = route.request.url.split("?", 1)[0][len(prefix):]
        path = (OFFICE_DIST / name).resolve()
        if not path.is_file() or OFFICE_DIST.resolve() not in path.parents:
            route.fulfill(status=404, body="")
            return
        served.append(name)
        route.fulfill(status=200, body=path.read_bytes(),
                      content_type=mimetypes.guess_type(path.name)[0] or "application/javascript",
                      headers={"Access-Control-Allow-Origin": "*"})

    context.route(prefix + "**", fulfill)
    return served


def test_the_real_office_js_outside_outlook(browser, live):
    context = browser.new_context(viewport={"width": 360, "height": 800})
    problems: list[str] = []
    try:
        served = route_real_office_js(context)
        page = context.new_page()
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "assert") else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.goto(live.url + "/addin/taskpane.html")
        expect(page.get_by_role("heading", name="Open Regarding from Outlook")).to_be_visible(timeout=20000)
        preview = page.get_by_role("link", name="Try it in the add-in preview")
        assert preview.get_attribute("href") == live.url + "/addin/preview"
        assert "office.js" in served  # Microsoft's script, not a stand-in
        assert page.evaluate("typeof Office.onReady") == "function"
        page.wait_for_timeout(500)  # anything Office.js does after onReady
        assert problems == [], problems
        assert browser.blocked_urls(page) == []
    finally:
        context.close()
