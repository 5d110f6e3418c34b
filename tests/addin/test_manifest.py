"""The add-in manifests: what Microsoft's tools accept and what their schemas cannot check.

The npm tests run Microsoft's own tools offline (``npm ci`` installs them): the XML manifest
must convert with office-addin-manifest-converter, and the unified JSON manifest (and the
converter's output) must validate against the schemas bundled with office-addin-manifest.
Its XML validation calls a web service, so the XML is checked here in Python instead: well
formed, every resid defined, every URL https under an AppDomain, every icon the right size.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
from flask import Flask

from server.addin import manifest as m
from server.i18n import translate

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / "node_modules"
SCHEMA_DIR = NODE_MODULES / "@microsoft" / "app-manifest" / "build" / "json-schemas" / "teams"
ICON_DIR = ROOT / "static" / "icons"

BASE = "https://crm.example.com/regarding"
CLIENT_ID = "0b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d"
SSO = m.ManifestSettings(sso_client_id=CLIENT_ID)
NO_SSO = m.ManifestSettings()

NS = {
    "o": "http://schemas.microsoft.com/office/appforoffice/1.1",
    "bt": "http://schemas.microsoft.com/office/officeappbasictypes/1.0",
    "v10": "http://schemas.microsoft.com/office/mailappversionoverrides",
    "v11": "http://schemas.microsoft.com/office/mailappversionoverrides/1.1",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}
XSI_TYPE = f"{{{NS['xsi']}}}type"


# ----------------------------------------------------------------- helpers

def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def xml_root(settings=NO_SSO, base=BASE) -> ET.Element:
    return ET.fromstring(m.render_xml(base, settings).encode("utf-8"))


def json_manifest(settings=NO_SSO, base=BASE) -> dict:
    return json.loads(m.render_json(base, settings))


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def icon_file(url: str) -> Path:
    prefix = BASE + m.ICON_PATH
    assert url.startswith(prefix), f"{url} is not under {prefix}"
    return ICON_DIR / url[len(prefix):]


def version_overrides(root: ET.Element) -> tuple[ET.Element, ET.Element]:
    outer = root.find("v10:VersionOverrides", NS)
    inner = outer.find("v11:VersionOverrides", NS)
    return outer, inner


def own_elements(vo: ET.Element):
    """Elements of a VersionOverrides, not descending into a nested VersionOverrides."""
    for child in vo:
        if local(child.tag) == "VersionOverrides":
            continue
        yield child
        yield from own_elements(child)


def xml_urls(root: ET.Element) -> list[tuple[str, str]]:
    """(where, url) for every URL-looking attribute value or text in the XML manifest."""
    found = []
    for el in root.iter():
        for name, value in el.attrib.items():
            if "://" in value:
                found.append((f"{local(el.tag)}@{local(name)}", value))
        if el.text and "://" in el.text:
            found.append((local(el.tag), el.text.strip()))
    return found


def json_strings(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from json_strings(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from json_strings(value, f"{path}/{i}")
    elif isinstance(node, str):
        yield path, node


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# ------------------------------------------------------------ XML manifest

@pytest.mark.parametrize("settings", [NO_SSO, SSO], ids=["no-sso", "sso"])
def test_xml_is_well_formed_mail_app(settings):
    root = xml_root(settings)
    assert root.tag == f"{{{NS['o']}}}OfficeApp"
    assert root.get(XSI_TYPE) == "MailApp"
    assert root.findtext("o:Id", namespaces=NS) == m.DEFAULT_ADDIN_ID
    assert root.findtext("o:Version", namespaces=NS) == "1.0.0.0"
    assert root.findtext("o:ProviderName", namespaces=NS) == "Regarding"
    assert root.find("o:Requirements/o:Sets/o:Set", NS).attrib == {"Name": "Mailbox", "MinVersion": "1.5"}
    assert root.findtext("o:Permissions", namespaces=NS) == "ReadWriteMailbox"
    rules = {(r.get("ItemType"), r.get("FormType")) for r in root.find("o:Rule", NS)}
    assert rules == {("Message", "ReadOrEdit"), ("Appointment", "ReadOrEdit")}
    forms = {f.get(XSI_TYPE): f.findtext("o:DesktopSettings/o:SourceLocation[@DefaultValue]", namespaces=NS)
             for f in root.find("o:FormSettings", NS)}
    assert set(forms) == {"ItemRead", "ItemEdit"}
    for form in root.find("o:FormSettings", NS):
        assert form.find("o:DesktopSettings/o:SourceLocation", NS).get("DefaultValue") == (
            BASE + "/addin/taskpane.html")


def test_xml_command_surfaces_show_the_pane_with_pinning_in_1_1():
    outer, inner = version_overrides(xml_root())
    assert outer.get(XSI_TYPE) == "VersionOverridesV1_0"
    assert inner.get(XSI_TYPE) == "VersionOverridesV1_1"
    desktop = {"MessageReadCommandSurface", "MessageComposeCommandSurface",
               "AppointmentOrganizerCommandSurface", "AppointmentAttendeeCommandSurface"}
    for vo, ns, pinning in ((outer, "v10", False), (inner, "v11", True)):
        points = vo.findall(f"{ns}:Hosts/{ns}:Host/{ns}:DesktopFormFactor/{ns}:ExtensionPoint", NS)
        assert {p.get(XSI_TYPE) for p in points} == desktop
        for point in points:
            action = point.find(f".//{ns}:Control/{ns}:Action", NS)
            assert action.get(XSI_TYPE) == "ShowTaskpane"
            assert action.find(f"{ns}:SourceLocation", NS).get("resid") == "Regarding.Taskpane.Url"
            pin = action.findtext(f"{ns}:SupportsPinning", namespaces=NS)
            assert pin == ("true" if pinning else None)
        # Shared folders (delegates) and shared mailboxes: declared where the schema has it.
        shared = vo.findtext(f"{ns}:Hosts/{ns}:Host/{ns}:DesktopFormFactor/{ns}:SupportsSharedFolders", namespaces=NS)
        assert shared == ("true" if pinning else None)
    mobile = inner.findall("v11:Hosts/v11:Host/v11:MobileFormFactor/v11:ExtensionPoint", NS)
    assert [p.get(XSI_TYPE) for p in mobile] == [
        "MobileMessageReadCommandSurface", "MobileLogEventAppointmentAttendee"]
    for point in mobile:
        control = point.find(".//v11:Control", NS)
        assert control.get(XSI_TYPE) == "MobileButton"
        assert control.find("v11:Icon", NS).get(XSI_TYPE) == "bt:MobileIconList"
        assert control.find("v11:Action", NS).get(XSI_TYPE) == "ShowTaskpane"


@pytest.mark.parametrize("settings", [NO_SSO, SSO], ids=["no-sso", "sso"])
def test_xml_every_resid_is_defined_in_its_own_version_override(settings):
    kinds = {"Image": "Images", "SourceLocation": "Urls", "Label": "ShortStrings",
             "Title": "ShortStrings", "Description": "LongStrings"}
    for vo in version_overrides(xml_root(settings)):
        resources = next(el for el in vo if local(el.tag) == "Resources")
        defined = {local(group.tag): {item.get("id") for item in group} for group in resources}
        used = [(local(el.tag), el.get("resid")) for el in own_elements(vo) if el.get("resid")]
        assert used, "no resid found: the walk is broken"
        for tag, resid in used:
            assert len(resid) <= 32, f"resid {resid} is longer than 32 characters"
            assert resid in defined[kinds[tag]], f"{tag} resid={resid} not in bt:{kinds[tag]}"
        for ids in defined.values():
            assert all(len(i) <= 32 for i in ids)


def test_xml_control_and_group_ids_are_unique():
    ids = [el.get("id") for el in xml_root(SSO).iter()
           if local(el.tag) in ("Control", "Group") and el.get("id")]
    assert len(ids) == len(set(ids)) == 2 * 4 * 2 + 3


@pytest.mark.parametrize("settings", [NO_SSO, SSO], ids=["no-sso", "sso"])
def test_xml_every_url_is_https_under_an_app_domain(settings):
    root = xml_root(settings)
    domains = [d.text for d in root.find("o:AppDomains", NS)]
    assert domains[0] == "https://crm.example.com"
    for where, url in xml_urls(root):
        if where == "Resource":  # the SSO Application ID URI, not a web address
            assert url.startswith("api://")
            continue
        assert url.startswith("https://"), f"{where}: {url}"
        assert origin(url) in domains, f"{where}: {url} is outside the AppDomains {domains}"


def test_xml_icons_exist_at_the_sizes_declared():
    root = xml_root(SSO)
    checked = 0
    for tag, size in (("IconUrl", 64), ("HighResolutionIconUrl", 128)):
        path = icon_file(root.find(f"o:{tag}", NS).get("DefaultValue"))
        assert png_size(path) == (size, size), tag
        checked += 1
    for vo in version_overrides(root):
        images = {img.get("id"): img.get("DefaultValue")
                  for img in vo.iter(f"{{{NS['bt']}}}Image") if img.get("DefaultValue")}
        for use in (el for el in own_elements(vo) if local(el.tag) == "Image" and el.get("resid")):
            pixels = int(use.get("size")) * int(use.get("scale", "1"))
            path = icon_file(images[use.get("resid")])
            assert path.exists(), path
            assert png_size(path) == (pixels, pixels), f"{path.name} for {use.attrib}"
            checked += 1
    assert checked == 2 + 4 * 3 + 4 * 3 + 2 * 9


def test_xml_sizes_match_the_schema_requirements():
    _, inner = version_overrides(xml_root())
    for icon in inner.iter(f"{{{NS['v11']}}}Icon"):
        sizes = sorted((int(i.get("size")), int(i.get("scale", "1"))) for i in icon)
        if icon.get(XSI_TYPE) == "bt:MobileIconList":
            assert sizes == [(s, k) for s in (25, 32, 48) for k in (1, 2, 3)]
        else:
            assert sizes == [(16, 1), (32, 1), (80, 1)]


def test_xml_sso_block_only_when_configured():
    root = xml_root(NO_SSO)
    assert not list(root.iter(f"{{{NS['v11']}}}WebApplicationInfo"))
    assert "https://login.microsoftonline.com" not in [d.text for d in root.find("o:AppDomains", NS)]

    root = xml_root(SSO)
    outer, inner = version_overrides(root)
    assert outer.find("v10:WebApplicationInfo", NS) is None  # one place only
    info = inner.find("v11:WebApplicationInfo", NS)
    assert info.findtext("v11:Id", namespaces=NS) == CLIENT_ID
    assert info.findtext("v11:Resource", namespaces=NS) == f"api://crm.example.com/{CLIENT_ID}"
    scopes = [s.text for s in info.find("v11:Scopes", NS)]
    assert scopes == ["openid", "profile", "offline_access", "User.Read"]
    assert "https://login.microsoftonline.com" in [d.text for d in root.find("o:AppDomains", NS)]
    # WebApplicationInfo comes after Resources in VersionOverrides 1.1.
    order = [local(child.tag) for child in inner]
    assert order.index("WebApplicationInfo") > order.index("Resources")


def test_xml_sso_resource_override():
    settings = m.ManifestSettings(sso_client_id=CLIENT_ID, sso_resource="api://sso.example.com/x")
    info = next(xml_root(settings).iter(f"{{{NS['v11']}}}WebApplicationInfo"))
    assert info.findtext("v11:Resource", namespaces=NS) == "api://sso.example.com/x"


def test_settings_are_escaped_not_injected():
    settings = m.ManifestSettings(display_name='R&D "CRM" <b>\'x\'', sso_client_id=CLIENT_ID)
    root = xml_root(settings)
    assert root.find("o:DisplayName", NS).get("DefaultValue") == 'R&D "CRM" <b>\'x\''
    data = json_manifest(settings)
    assert data["name"]["short"] == 'R&D "CRM" <b>\'x\''
    assert data["extensions"][0]["ribbons"][0]["tabs"][0]["groups"][0]["label"] == settings.display_name


# ----------------------------------------------------------- JSON manifest

@pytest.mark.parametrize("settings", [NO_SSO, SSO], ids=["no-sso", "sso"])
def test_json_describes_the_same_add_in(settings):
    data = json_manifest(settings)
    assert data["manifestVersion"] == m.JSON_MANIFEST_VERSION
    assert data["$schema"].endswith(f"/v{m.JSON_MANIFEST_VERSION}/MicrosoftTeams.schema.json")
    assert data["id"] == m.DEFAULT_ADDIN_ID and data["version"] == "1.0.0"
    assert data["authorization"]["permissions"]["resourceSpecific"] == [
        {"name": "Mailbox.ReadWrite.User", "type": "Delegated"},
        {"name": "Mailbox.AccessSharedFolders.User", "type": "Delegated"}]
    ext = data["extensions"][0]
    assert ext["requirements"] == {"scopes": ["mail"],
                                   "capabilities": [{"name": "Mailbox", "minVersion": "1.5"}]}
    (runtime,) = ext["runtimes"]
    assert runtime["code"]["page"] == BASE + "/addin/taskpane.html"
    actions = {a["id"] for a in runtime["actions"]}
    contexts = set()
    for ribbon in ext["ribbons"]:
        contexts.update(ribbon["contexts"])
        for tab in ribbon["tabs"]:
            for group in tab.get("groups", []) + tab.get("customMobileRibbonGroups", []):
                for control in group["controls"]:
                    assert control["actionId"] in actions
    assert contexts == {"mailRead", "mailCompose", "meetingDetailsOrganizer",
                        "meetingDetailsAttendee", "logEventMeetingDetailsAttendee"}
    assert ("webApplicationInfo" in data) == settings.sso_enabled
    if settings.sso_enabled:
        assert data["webApplicationInfo"] == {
            "id": CLIENT_ID, "resource": f"api://crm.example.com/{CLIENT_ID}"}


@pytest.mark.parametrize("settings", [NO_SSO, SSO], ids=["no-sso", "sso"])
def test_json_every_url_is_https_under_a_valid_domain(settings):
    data = json_manifest(settings)
    domains = data["validDomains"]
    assert domains[0] == "https://crm.example.com"
    assert ("https://login.microsoftonline.com" in domains) == settings.sso_enabled
    checked = 0
    for path, value in json_strings(data):
        if "://" not in value or path in ("/$schema", "/webApplicationInfo/resource"):
            continue
        if path.startswith("/validDomains/"):
            continue
        assert value.startswith("https://"), f"{path}: {value}"
        assert origin(value) in domains, f"{path}: {value}"
        checked += 1
    assert checked == 3 + 1 + 3 + 3 + 9 + 9 + 2  # developer, page, icons


def test_json_icons_exist_at_the_sizes_declared():
    data = json_manifest()
    assert png_size(ICON_DIR / data["icons"]["color"]) == (192, 192)
    assert png_size(ICON_DIR / data["icons"]["outline"]) == (32, 32)
    outline = (ICON_DIR / data["icons"]["outline"]).read_bytes()
    assert outline[25] == 6, "the outline icon needs an alpha channel (transparent background)"
    checked = 0
    for path, value in json_strings(data):
        if not path.endswith("/url"):
            continue
        node = data
        for key in path.split("/")[1:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        pixels = node["size"] * node.get("scale", 1)
        if path.endswith("alternateIcons/highResolutionIcon/url"):
            pixels = 128  # the schema caps sizes at 80, so it is declared 64 (see template)
        assert png_size(icon_file(value)) == (pixels, pixels), path
        checked += 1
    assert checked == 3 + 3 + 9 + 9 + 2


def test_json_lengths_fit_the_schema_limits():
    long_description = "x" * 250
    data = json_manifest(m.ManifestSettings(description=long_description))
    assert len(data["description"]["short"]) <= 80
    assert data["description"]["full"] == long_description


# ------------------------------------------------------------- base URLs

def test_base_url_with_path_prefix_and_trailing_slash():
    assert m.render_xml(BASE + "/", SSO) == m.render_xml(BASE, SSO)
    assert m.render_json(BASE + "//", SSO) == m.render_json(BASE, SSO)
    root = xml_root(SSO)
    assert root.find("o:IconUrl", NS).get("DefaultValue") == BASE + "/static/icons/icon-64.png"
    assert root.find("o:SupportUrl", NS).get("DefaultValue") == BASE + "/"


def test_base_url_at_the_root_and_with_a_port():
    assert m.normalize_base_url("https://CRM.Example.com/") == "https://crm.example.com"
    assert m.normalize_base_url("https://crm.example.com:443") == "https://crm.example.com"
    assert m.normalize_base_url("https://crm.example.com:8443/r/") == "https://crm.example.com:8443/r"
    data = json.loads(m.render_json("https://crm.example.com:8443", SSO))
    assert data["validDomains"][0] == "https://crm.example.com:8443"
    assert data["webApplicationInfo"]["resource"] == f"api://crm.example.com:8443/{CLIENT_ID}"


@pytest.mark.parametrize("url", [
    "http://crm.example.com",
    "http://localhost:5000",
    "crm.example.com",
    "ftp://crm.example.com",
    "https://",
    "https://crm.example.com/?x=1",
    "https://crm.example.com/#top",
    "https://user:pw@crm.example.com",
    "https://crm.example.com/a b",
    'https://crm.example.com/"><x',
    "https://crm.example.com:99999",
])
def test_bad_base_urls_are_rejected(url):
    with pytest.raises(ValueError):
        m.render_xml(url, NO_SSO)
    with pytest.raises(ValueError):
        m.render_json(url, NO_SSO)


def test_http_is_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="must use https"):
        m.render_xml("http://crm.example.com", NO_SSO)


# -------------------------------------------------------------- settings

@pytest.mark.parametrize("kwargs, message", [
    ({"addin_id": "not-a-guid"}, "GUID"),
    ({"version": "1.0"}, "version"),
    ({"version": "1.0.70000"}, "version"),
    ({"sso_client_id": "abc"}, "GUID"),
    ({"sso_resource": "api://x/y"}, "without an SSO client id"),
    ({"display_name": ""}, "display name"),
    ({"display_name": "x" * 31}, "display name"),
    ({"support_url": "http://help.example.com"}, "https"),
])
def test_bad_settings_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        m.ManifestSettings(**kwargs)


def test_settings_from_config():
    assert m.ManifestSettings.from_config({}) == m.ManifestSettings()
    assert m.ManifestSettings.from_config({"REGARDING_SSO_CLIENT_ID": "  "}).sso_enabled is False
    settings = m.ManifestSettings.from_config({
        "REGARDING_ADDIN_ID": "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
        "REGARDING_SSO_CLIENT_ID": CLIENT_ID,
        "REGARDING_SSO_RESOURCE": "api://crm.example.com/custom",
        "REGARDING_ADDIN_VERSION": "2.3.4",
    })
    assert settings.addin_id == "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
    assert settings.sso_client_id == CLIENT_ID and settings.sso_enabled
    assert settings.sso_resource == "api://crm.example.com/custom"
    assert xml_root(settings).findtext("o:Version", namespaces=NS) == "2.3.4.0"
    assert json_manifest(settings)["version"] == "2.3.4"


# ------------------------------------------------------------------- CLI

@pytest.fixture
def cli_app():
    app = Flask(__name__)
    app.config["REGARDING_SSO_CLIENT_ID"] = CLIENT_ID
    app.cli.add_command(m.manifest_cli)
    return app


def test_cli_renders_xml_and_json(cli_app):
    runner = cli_app.test_cli_runner()
    result = runner.invoke(args=["manifest", "render", "--base-url", BASE])
    assert result.exit_code == 0, result.output
    assert result.output == m.render_xml(BASE, SSO)
    result = runner.invoke(args=["manifest", "render", "--base-url", BASE, "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["webApplicationInfo"]["id"] == CLIENT_ID


def test_cli_writes_files_and_the_app_package(cli_app, tmp_path):
    runner = cli_app.test_cli_runner()
    out = tmp_path / "regarding.xml"
    result = runner.invoke(args=["manifest", "render", "--base-url", BASE, "-o", str(out)])
    assert result.exit_code == 0, result.output
    ET.parse(out)
    package = tmp_path / "regarding.zip"
    result = runner.invoke(args=["manifest", "render", "--base-url", BASE, "--format", "zip",
                                 "--output", str(package)])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(package) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        languages = [f["file"] for f in manifest["localizationInfo"]["additionalLanguages"]]
        assert sorted(archive.namelist()) == sorted(
            ["color-192.png", "manifest.json", "outline-32.png", *languages])
        assert len(languages) == len(m.MANIFEST_LOCALES)
        assert archive.read(manifest["icons"]["color"]) == (ICON_DIR / "color-192.png").read_bytes()


def test_cli_uses_the_configured_base_url_and_rejects_http(cli_app):
    runner = cli_app.test_cli_runner()
    result = runner.invoke(args=["manifest", "render"])
    assert result.exit_code != 0 and "REGARDING_BASE_URL" in result.output
    cli_app.config["REGARDING_BASE_URL"] = BASE
    result = runner.invoke(args=["manifest", "render", "--format", "json"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["manifest", "render", "--base-url", "http://crm.example.com"])
    assert result.exit_code == 1
    assert "must use https" in result.output
    result = runner.invoke(args=["manifest", "render", "--format", "zip"])
    assert result.exit_code != 0 and "--output" in result.output


def test_cli_reports_bad_configuration(cli_app):
    cli_app.config["REGARDING_ADDIN_ID"] = "nope"
    result = cli_app.test_cli_runner().invoke(args=["manifest", "render", "--base-url", BASE])
    assert result.exit_code == 1 and "GUID" in result.output


# ----------------------------------------------------------------- icons

def _make_icons():
    spec = importlib.util.spec_from_file_location("make_icons", ROOT / "manifest" / "make_icons.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_icons_are_what_the_script_draws():
    make_icons = _make_icons()
    plan = make_icons.icon_plan()
    assert sorted(plan) == sorted(p.name for p in ICON_DIR.glob("*.png"))
    for name, (size, _) in plan.items():
        assert png_size(ICON_DIR / name) == (size, size), name
    for name in ("icon-16.png", "outline-32.png", "mono-25.png"):  # small ones: fast to draw
        size, painter = plan[name]
        assert make_icons.render(size, painter) == (ICON_DIR / name).read_bytes(), name


# ---------------------------------------------- Microsoft's tools (npm, offline)

needs_npm_tools = pytest.mark.skipif(
    not (NODE_MODULES / ".bin" / "office-addin-manifest").exists() or shutil.which("node") is None,
    reason="node_modules is absent: run `npm ci` at the repository root to install "
           "office-addin-manifest and office-addin-manifest-converter",
)


def run_node(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"}
    return subprocess.run(["node", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)


def validate_json(path: Path) -> subprocess.CompletedProcess:
    cli = NODE_MODULES / "office-addin-manifest" / "cli.js"
    return run_node(str(cli), "validate", str(path))


def latest_bundled_schema() -> str:
    versions = [d.name[1:] for d in SCHEMA_DIR.iterdir() if re.fullmatch(r"v1\.\d+", d.name)]
    return max(versions, key=lambda v: int(v.split(".")[1]))


@needs_npm_tools
@pytest.mark.parametrize("settings", [NO_SSO, SSO], ids=["no-sso", "sso"])
def test_xml_converts_with_microsofts_converter(settings, tmp_path):
    xml_path = tmp_path / "regarding.xml"
    xml_path.write_text(m.render_xml(BASE, settings), encoding="utf-8")
    out = tmp_path / "converted"
    result = run_node("manifest/convert-xml.js", str(xml_path), str(out))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    converted = json.loads((out / "manifest.json").read_text())
    assert converted["id"] == m.DEFAULT_ADDIN_ID
    assert [r["name"] for r in converted["authorization"]["permissions"]["resourceSpecific"]] == [
        "Mailbox.ReadWrite.User", "Mailbox.AccessSharedFolders.User"]  # as our JSON says
    assert ("webApplicationInfo" in converted) == settings.sso_enabled
    # What the converter made of our XML must itself be a valid unified manifest.
    result = validate_json(out / "manifest.json")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_npm_tools
@pytest.mark.parametrize("settings", [NO_SSO, SSO], ids=["no-sso", "sso"])
def test_json_validates_against_the_bundled_schema(settings, tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(m.render_json(BASE, settings), encoding="utf-8")
    result = validate_json(path)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_npm_tools
def test_json_also_validates_against_the_newest_bundled_schema(tmp_path):
    version = latest_bundled_schema()
    path = tmp_path / "manifest.json"
    path.write_text(m.render_json(BASE, SSO, manifest_version=version), encoding="utf-8")
    result = validate_json(path)
    assert result.returncode == 0, f"manifestVersion {version}: {result.stdout}{result.stderr}"


# ----------------------------------------------------------------- languages

def _translations(language: str) -> dict[str, str]:
    return {key: translate(language, text) for key, text in
            (("description", m.DEFAULT_DESCRIPTION), ("tip", m.OPEN_TIP),
             ("meeting", m.TRACK_MEETING), ("open", m.OPEN_TITLE))}


@pytest.mark.parametrize("language", sorted(m.MANIFEST_LOCALES))
def test_xml_speaks_every_language_from_the_catalogs(language):
    """Outlook shows the Override of its display language: each is the catalog's text, and
    each fits the XML manifest's limits (250 characters a description, 125 a short string)."""
    words = _translations(language)
    assert all(words[k] != translate("en", t) for k, t in (("description", m.DEFAULT_DESCRIPTION),
                                                         ("tip", m.OPEN_TIP)))
    root = ET.fromstring(m.render_xml(BASE, SSO).encode())
    locale = m.MANIFEST_LOCALES[language]
    description = root.find(f"{{{NS['o']}}}Description/{{{NS['o']}}}Override[@Locale='{locale}']")
    assert description.get("Value") == words["description"] and len(words["description"]) <= 250
    overrides = {s.get("id"): s.find(f"{{{NS['bt']}}}Override[@Locale='{locale}']").get("Value")
                 for s in root.iter(f"{{{NS['bt']}}}String")
                 if s.get("id") in ("Regarding.Open.Title", "Regarding.Open.Tip", "Regarding.Log.Label")}
    assert overrides["Regarding.Open.Title"] == words["open"] % {"name": "Regarding"}
    assert overrides["Regarding.Open.Tip"] == words["tip"]
    assert overrides["Regarding.Log.Label"] == words["meeting"] and len(words["meeting"]) <= 125


def test_a_description_the_administrator_wrote_is_theirs_in_every_language():
    own = m.ManifestSettings(description="Our CRM, our words.")
    assert "<Override" not in m.render_xml(BASE, own).split("<Description", 1)[1].split("</Description>", 1)[0]
    for content in m.localization_files(BASE, own).values():
        assert json.loads(content)["description.full"] == "Our CRM, our words."


def test_localization_files_follow_microsofts_schema_and_name_real_paths():
    manifest = json_manifest(SSO)
    schema = json.loads((SCHEMA_DIR / f"v{m.JSON_MANIFEST_VERSION}" /
                         "MicrosoftTeams.Localization.schema.json").read_text())
    files = m.localization_files(BASE, SSO)
    assert sorted(files) == sorted(f["file"] for f in manifest["localizationInfo"]["additionalLanguages"])
    paths = dict(m._strings(manifest["extensions"], "extensions"))
    for language, tag in m.MANIFEST_LOCALES.items():
        strings = json.loads(files[f"{tag.lower()}.json"])
        jsonschema.validate(strings, schema)
        localized = {k: v for k, v in strings.items() if k.startswith("extensions")}
        assert localized and set(localized) <= set(paths)
        assert _translations(language)["meeting"] in localized.values()
        assert len(strings["description.short"]) <= 80


@needs_npm_tools
def test_microsofts_converter_carries_the_languages_over(tmp_path):
    """The converter turns the XML's Overrides into the unified manifest's localization
    files; they say what ours say."""
    xml_path = tmp_path / "regarding.xml"
    xml_path.write_text(m.render_xml(BASE, SSO), encoding="utf-8")
    out = tmp_path / "converted"
    result = run_node("manifest/convert-xml.js", str(xml_path), str(out))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for language, tag in m.MANIFEST_LOCALES.items():
        converted = json.loads((out / f"{tag.lower()}.json").read_text())
        assert converted["description.full"] == _translations(language)["description"]
        assert _translations(language)["meeting"] in converted.values()


@needs_npm_tools
def test_the_validator_does_reject_a_broken_manifest(tmp_path):
    """Guards the tests above: a validator that accepts anything proves nothing."""
    data = json_manifest(SSO)
    data["accentColor"] = "blue"
    data["extensions"][0]["ribbons"][1]["tabs"][0]["customMobileRibbonGroups"][0]["controls"][0][
        "icons"].pop()
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    result = validate_json(path)
    assert result.returncode == 1
    assert "accentColor" in result.stdout and "fewer than 9 items" in result.stdout
