"""Render the Outlook add-in manifests for one deployment of Regarding.

Two manifests describe the same add-in, and admins install whichever their Microsoft 365 or
Exchange set-up takes:

* the XML add-in-only manifest (``manifest/regarding.xml.j2``): every Outlook, including
  Exchange Server on premises, Outlook on Mac and Outlook mobile;
* the unified manifest for Microsoft 365 (``manifest/regarding.json.j2``), uploaded as an
  app package (a zip with the manifest and two icons, see :func:`app_package`).

Both are Jinja2 templates filled with the deployment's public base URL (``https`` only,
a path prefix such as ``https://crm.example.com/regarding`` is fine) and a few settings
(:class:`ManifestSettings`). ``flask --app server manifest render`` prints them.
"""
from __future__ import annotations

import functools
import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

import click
from flask import current_app
from flask.cli import AppGroup
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from server.i18n import N_, translate

ROOT = Path(__file__).resolve().parents[2]
MANIFEST_DIR = ROOT / "manifest"
ICON_DIR = ROOT / "static" / "icons"

# A stable identity: Outlook and the admin centre recognise updates by this id, so it must
# not change between releases. A deployment that wants its own (to install two Regarding
# servers side by side) sets REGARDING_ADDIN_ID.
DEFAULT_ADDIN_ID = "664b144e-b5c3-4d02-955f-7f0ef4f08cd4"
DEFAULT_VERSION = "1.0.0"
DEFAULT_DISPLAY_NAME = "Regarding"
DEFAULT_DESCRIPTION = N_(
    "See who the sender and recipients of an email or meeting are in the Regarding CRM, "
    "add them as contacts or leads, and track the item regarding an account, contact, "
    "lead, opportunity or case."
)
# The add-in's words beside its name, translated from the catalogs for each language the
# product speaks (the display name is a name: it stays as the administrator set it).
OPEN_TITLE = N_("Open %(name)s")
OPEN_TIP = N_("See who the sender and recipients are in the CRM and track this item "
              "regarding an account, contact, lead, opportunity or case.")
TRACK_MEETING = N_("Track meeting")
# Language -> the locale tag the XML manifest's Override and the unified manifest's
# localization files are written for.
MANIFEST_LOCALES = {"cs": "cs-CZ", "zh": "zh-CN", "sv": "sv-SE", "sl": "sl-SI", "hu": "hu-HU"}
PROVIDER_NAME = "Regarding"
BRAND_COLOR = "#0F6CBD"

# 1.17 is the version Microsoft's own XML-to-JSON converter emits and the first one Outlook
# documents for add-ins; every later schema the validator bundles accepts the same document
# (tests/addin checks the newest one too).
JSON_MANIFEST_VERSION = "1.17"
LOGIN_AUTHORITY = "https://login.microsoftonline.com"
# What the server's on-behalf-of exchange asks Microsoft Graph for: who the user is.
DEFAULT_SSO_SCOPES = ("openid", "profile", "offline_access", "User.Read")

TASKPANE_PATH = "/addin/taskpane.html"
ICON_PATH = "/static/icons/"
DESKTOP_ICON_SIZES = (16, 32, 80)  # what Outlook requires for ribbon buttons
MOBILE_ICON_SIZES = (25, 32, 48)  # each listed at scale 1, 2 and 3
MOBILE_SCALES = (1, 2, 3)
JSON_COLOR_ICON = "color-192.png"
JSON_OUTLINE_ICON = "outline-32.png"

_GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
# RFC 3986 path characters; anything else (spaces, quotes, angle brackets) is a typo.
_URL_PATH = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$")


@dataclass(frozen=True)
class ManifestSettings:
    """What varies between deployments besides the base URL."""

    addin_id: str = DEFAULT_ADDIN_ID
    version: str = DEFAULT_VERSION  # major.minor.patch; bump it when the manifest changes
    sso_client_id: str | None = None  # Entra ID application (client) id; None: no SSO
    sso_resource: str | None = None  # Application ID URI; default api://{host}/{client id}
    display_name: str = DEFAULT_DISPLAY_NAME
    support_url: str | None = None  # default: the server's home page
    description: str = DEFAULT_DESCRIPTION
    sso_scopes: tuple[str, ...] = DEFAULT_SSO_SCOPES

    def __post_init__(self) -> None:
        if not _GUID.match(self.addin_id):
            raise ValueError(f"The add-in id must be a GUID, not {self.addin_id!r}.")
        match = _SEMVER.match(self.version)
        if not match or any(int(part) > 65535 for part in match.groups()):
            raise ValueError(
                f"The add-in version must look like 1.2.3 (each part at most 65535), "
                f"not {self.version!r}."
            )
        if self.sso_client_id is not None and not _GUID.match(self.sso_client_id):
            raise ValueError(
                f"The SSO client id must be the application's GUID, not {self.sso_client_id!r}."
            )
        if self.sso_resource is not None and self.sso_client_id is None:
            raise ValueError("An SSO resource was given without an SSO client id.")
        if not 0 < len(self.display_name) <= 30:  # the unified manifest's short name limit
            raise ValueError("The display name must be 1 to 30 characters long.")
        if not 0 < len(self.description) <= 250:  # the XML manifest's limit
            raise ValueError("The description must be 1 to 250 characters long.")
        if self.support_url is not None and not self.support_url.lower().startswith("https://"):
            raise ValueError(f"The support URL must use https, not {self.support_url!r}.")

    @property
    def sso_enabled(self) -> bool:
        return self.sso_client_id is not None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "ManifestSettings":
        """Settings from the app config; absent or empty keys take the defaults."""

        def get(key: str) -> str | None:
            value = config.get(key)
            if value is None:
                return None
            return str(value).strip() or None

        return cls(
            addin_id=get("REGARDING_ADDIN_ID") or DEFAULT_ADDIN_ID,
            version=get("REGARDING_ADDIN_VERSION") or DEFAULT_VERSION,
            sso_client_id=get("REGARDING_SSO_CLIENT_ID"),
            sso_resource=get("REGARDING_SSO_RESOURCE"),
            support_url=get("REGARDING_ADDIN_SUPPORT_URL"),
        )


def normalize_base_url(base_url: str) -> str:
    """``https://host[:port][/prefix]`` without a trailing slash, or ValueError."""
    parts = urlsplit(base_url.strip())
    if parts.scheme.lower() != "https":
        raise ValueError(
            f"The add-in base URL must use https, not {parts.scheme or 'no scheme'!r} "
            f"({base_url!r}): Outlook loads add-in pages and icons over HTTPS only."
        )
    if not parts.hostname:
        raise ValueError(f"The add-in base URL has no host name: {base_url!r}.")
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise ValueError(
            f"The add-in base URL must be scheme, host and optional path only: {base_url!r}."
        )
    if not _URL_PATH.match(parts.path):
        raise ValueError(f"The add-in base URL has characters a URL path cannot hold: {base_url!r}.")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"The add-in base URL has an invalid port: {base_url!r}.") from None
    host = parts.hostname.lower()
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = host if port in (None, 443) else f"{host}:{port}"
    return f"https://{netloc}{parts.path.rstrip('/')}"


def _context(base_url: str, settings: ManifestSettings) -> dict[str, Any]:
    """Everything the two templates need, computed once so they cannot disagree."""
    base = normalize_base_url(base_url)
    netloc = urlsplit(base).netloc
    origin = f"https://{netloc}"

    def icon(name: str) -> str:
        return base + ICON_PATH + name

    def mobile_icons(prefix: str) -> list[dict[str, Any]]:
        return [
            {
                "size": size,
                "scale": scale,
                "name": f"{prefix}-{size}{'' if scale == 1 else f'@{scale}x'}.png",
            }
            for size in MOBILE_ICON_SIZES
            for scale in MOBILE_SCALES
        ]

    sso = None
    if settings.sso_enabled:
        sso = {
            "client_id": settings.sso_client_id,
            "resource": settings.sso_resource or f"api://{netloc}/{settings.sso_client_id}",
            "scopes": list(settings.sso_scopes),
        }
    return {
        "base": base,
        "origin": origin,
        "settings": settings,
        "addin_id": settings.addin_id,
        "version": settings.version,
        "xml_version": settings.version + ".0",  # the XML manifest wants four parts
        "provider_name": PROVIDER_NAME,
        "display_name": settings.display_name,
        "words": _words(settings, "en"),
        "translations": {tag: _words(settings, language)
                         for language, tag in MANIFEST_LOCALES.items()},
        "support_url": settings.support_url or base + "/",
        "taskpane_url": base + TASKPANE_PATH,
        "icon": icon,
        "desktop_icons": [{"size": s, "name": f"icon-{s}.png"} for s in DESKTOP_ICON_SIZES],
        "mobile_icons": mobile_icons("icon"),
        "mono_icons": mobile_icons("mono"),
        "app_domains": [origin] + ([LOGIN_AUTHORITY] if sso else []),
        "sso": sso,
        "brand_color": BRAND_COLOR,
        "json_manifest_version": JSON_MANIFEST_VERSION,
        "color_icon": JSON_COLOR_ICON,
        "outline_icon": JSON_OUTLINE_ICON,
    }


def _short(text: str) -> str:
    """The unified manifest's short description (at most 80 characters)."""
    return text if len(text) <= 80 else text[:77].rstrip() + "..."


def _words(settings: ManifestSettings, language: str) -> dict[str, str]:
    """The manifest's words in one language; a description the administrator wrote is
    theirs, in every language."""
    description = (translate(language, DEFAULT_DESCRIPTION)
                   if settings.description == DEFAULT_DESCRIPTION else settings.description)
    return {"description": description, "description_short": _short(description),
            "open_title": translate(language, OPEN_TITLE) % {"name": settings.display_name},
            "open_tip": translate(language, OPEN_TIP),
            "track_meeting": translate(language, TRACK_MEETING)}


@functools.lru_cache(maxsize=None)
def _environment(autoescape: bool) -> Environment:
    return Environment(
        loader=FileSystemLoader(MANIFEST_DIR),
        autoescape=autoescape,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_xml(base_url: str, settings: ManifestSettings | None = None) -> str:
    """The XML add-in-only manifest (MailApp) for a deployment at ``base_url``."""
    context = _context(base_url, settings or ManifestSettings())
    return _environment(True).get_template("regarding.xml.j2").render(context)


def render_json(
    base_url: str,
    settings: ManifestSettings | None = None,
    *,
    manifest_version: str = JSON_MANIFEST_VERSION,
) -> str:
    """The unified manifest for Microsoft 365 (manifest.json) for ``base_url``.

    The template writes every value through ``tojson``; parsing and dumping the result
    both proves it is JSON and gives one canonical layout.
    """
    context = _context(base_url, settings or ManifestSettings())
    context["json_manifest_version"] = manifest_version
    text = _environment(False).get_template("regarding.json.j2").render(context)
    return json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"


def localization_files(base_url: str, settings: ManifestSettings | None = None,
                       *, manifest_version: str = JSON_MANIFEST_VERSION) -> dict[str, str]:
    """The unified manifest's localization files ({file name: JSON}): each string of the
    manifest that has a translation, keyed by its path as Microsoft's localization schema
    names it (``description.full``, ``extensions[0].ribbons[0]...label``)."""
    settings = settings or ManifestSettings()
    manifest = json.loads(render_json(base_url, settings, manifest_version=manifest_version))
    english = _words(settings, "en")
    by_text = {english[key]: key for key in ("open_title", "open_tip", "track_meeting")}
    schema = ("https://developer.microsoft.com/json-schemas/teams/v"
              f"{manifest_version}/MicrosoftTeams.Localization.schema.json")
    files = {}
    for language, tag in MANIFEST_LOCALES.items():
        words = _words(settings, language)
        strings = {"$schema": schema, "name.short": settings.display_name,
                   "name.full": settings.display_name,
                   "description.short": words["description_short"],
                   "description.full": words["description"]}
        for path, value in _strings(manifest["extensions"], "extensions"):
            if path.endswith((".label", ".title", ".description")) and value in by_text:
                strings[path] = words[by_text[value]]
        files[f"{tag.lower()}.json"] = json.dumps(strings, indent=2, ensure_ascii=False) + "\n"
    return files


def _strings(value: Any, path: str):
    """(path, text) of every string under ``value``, paths written as ``a[0].b``."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}")


def app_package(base_url: str, settings: ManifestSettings | None = None) -> bytes:
    """The zip an admin uploads for the unified manifest: manifest.json, its localization
    files and its two icons."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("manifest.json", render_json(base_url, settings))
        for name, content in localization_files(base_url, settings).items():
            package.writestr(name, content)
        for name in (JSON_COLOR_ICON, JSON_OUTLINE_ICON):
            package.write(ICON_DIR / name, name)
    return buffer.getvalue()


manifest_cli = AppGroup("manifest", help="The Outlook add-in manifests.")


@manifest_cli.command("render")
@click.option("--base-url", help="Public https URL of this server [default: REGARDING_BASE_URL].")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["xml", "json", "zip"]),
    default="xml",
    show_default=True,
    help="xml: add-in-only manifest; json: unified manifest; zip: unified app package.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to this file instead of standard output (required for zip).",
)
def render_command(base_url: str | None, fmt: str, output: Path | None) -> None:
    """Print or write the add-in manifest for this deployment."""
    base_url = base_url or current_app.config.get("REGARDING_BASE_URL")
    if not base_url:
        raise click.UsageError("Give --base-url or set REGARDING_BASE_URL.")
    if fmt == "zip" and output is None:
        raise click.UsageError("--format zip needs --output FILE.")
    try:
        settings = ManifestSettings.from_config(current_app.config)
        if fmt == "zip":
            data: bytes | str = app_package(base_url, settings)
        elif fmt == "json":
            data = render_json(base_url, settings)
        else:
            data = render_xml(base_url, settings)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if output is None:
        click.echo(data, nl=False)
    elif isinstance(data, bytes):
        output.write_bytes(data)
    else:
        output.write_text(data, encoding="utf-8")
