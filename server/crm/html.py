"""Make email HTML safe to show, and readable as plain text (pure functions).

``sanitize_html`` keeps a generous set of formatting tags (email is tables, fonts and inline
styles) and drops everything active: scripts, styles, frames, forms, event handlers,
``javascript:`` and ``data:`` links, CSS expressions and ``url()``. Remote images are not
loaded by default, because loading them tells the sender the email was read: their
``src`` moves to ``data-remote-src`` and a blank placeholder takes its place, so the UI can
offer "load remote content". ``cid:`` images stay; the UI maps them to attachment URLs.

``email_document`` turns a stored body into the complete document shown in the sandboxed
frame: cleaned again, inline images as ``data:`` URLs built from an allow-listed image
type only, remote images left out unless the reader asked for them.

``html_to_text`` gives a readable text body for emails that have no text/plain part.
"""
from __future__ import annotations

import base64
import html as html_lib
import re
from html.parser import HTMLParser

import nh3

__all__ = ["PLACEHOLDER_SRC", "REMOTE_SRC_ATTRIBUTE", "email_document", "html_to_text",
           "inline_image_url", "sanitize_html"]

REMOTE_SRC_ATTRIBUTE = "data-remote-src"
# A transparent 1x1 GIF: keeps the layout without a request to anyone.
PLACEHOLDER_SRC = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"

ALLOWED_TAGS = frozenset({
    "a", "abbr", "acronym", "address", "article", "b", "bdi", "bdo", "big", "blockquote",
    "br", "caption", "center", "cite", "code", "col", "colgroup", "dd", "del", "dfn", "div",
    "dl", "dt", "em", "figcaption", "figure", "font", "footer", "h1", "h2", "h3", "h4", "h5",
    "h6", "header", "hr", "i", "img", "ins", "kbd", "li", "main", "mark", "ol", "p", "pre",
    "q", "s", "samp", "section", "small", "span", "strike", "strong", "sub", "sup", "table",
    "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul", "var", "wbr",
})

# Removed together with their content (their text is code or UI, not the message).
DROPPED_WITH_CONTENT = frozenset({
    "script", "style", "title", "svg", "math", "iframe", "frame", "frameset", "noscript",
    "noembed", "noframes", "template", "object", "applet", "textarea", "select", "button",
    "xmp",
})

_CELL = {"colspan", "rowspan", "width", "height", "bgcolor", "nowrap", "scope"}
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "*": {"style", "title", "dir", "lang", "align", "valign"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height", "border", "hspace", "vspace"},
    "table": {"border", "cellpadding", "cellspacing", "width", "height", "bgcolor"},
    "tr": {"bgcolor", "height"},
    "td": _CELL,
    "th": _CELL,
    "col": {"span", "width"},
    "colgroup": {"span", "width"},
    "font": {"color", "face", "size"},
    "ol": {"start", "type", "reversed"},
    "ul": {"type"},
    "li": {"value"},
    "hr": {"width", "size", "noshade"},
}

_SIDES = ("", "-top", "-right", "-bottom", "-left")
ALLOWED_STYLE_PROPERTIES = frozenset({
    "color", "background-color", "font", "font-family", "font-size", "font-style",
    "font-weight", "font-variant", "text-align", "text-decoration", "text-indent",
    "text-transform", "line-height", "letter-spacing", "word-spacing", "white-space",
    "vertical-align", "width", "height", "max-width", "min-width", "max-height", "min-height",
    "list-style-type", "direction", "border-collapse", "border-spacing",
    *(f"margin{side}" for side in _SIDES), *(f"padding{side}" for side in _SIDES),
    *(f"border{side}{part}" for side in _SIDES for part in ("", "-color", "-style", "-width")),
})

LINK_SCHEMES = ("http:", "https:", "mailto:", "tel:")
_IMAGE_SUBTYPES = r"(?:png|gif|jpe?g|webp|bmp)"
IMAGE_DATA = re.compile(rf"^data:image/{_IMAGE_SUBTYPES};base64,[a-z0-9+/=\s]*$", re.I)
INLINE_IMAGE_TYPE = re.compile(rf"^image/{_IMAGE_SUBTYPES}$")  # the whole type, nothing else
_UNSAFE_CSS_PATTERN = r"expression|url\s*\(|javascript|vbscript|behavior|binding|@import|\\|/\*|<"
_UNSAFE_CSS = re.compile(_UNSAFE_CSS_PATTERN, re.IGNORECASE)
# The same on lower-cased ASCII text, several times faster (a case-insensitive alternation
# tries every branch at every position); non-ASCII text, which IGNORECASE matches in
# more ways (a dotless i, a long s), goes through _UNSAFE_CSS.
_UNSAFE_CSS_LOWER = re.compile(_UNSAFE_CSS_PATTERN)


def _unsafe_css(text: str) -> bool:
    if text.isascii():
        return _UNSAFE_CSS_LOWER.search(text.lower()) is not None
    return _UNSAFE_CSS.search(text) is not None


def _safe_style(value: str) -> str | None:
    """Drop CSS declarations that could run code or fetch anything."""
    decls = [decl.strip() for decl in value.split(";")]
    if _unsafe_css(value):  # no pattern spans a ";": else every declaration is safe
        decls = [decl for decl in decls if not _unsafe_css(decl)]
    return "; ".join(decl for decl in decls if decl) or None


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "style":
        return _safe_style(value)
    if tag == "a" and attribute == "href":
        return value if value.strip().lower().startswith(LINK_SCHEMES) else None
    if tag == "img" and attribute == "src":
        lowered = value.strip().lower()
        if lowered.startswith("data:"):
            return value if IMAGE_DATA.match(value.strip()) else None
        return value if lowered.startswith(("http:", "https:", "cid:")) else None
    return value


_IMG_TAG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)  # nh3 output escapes ">" in values
_SRC_ATTR = re.compile(r'(?<=\s)src="([^"]*)"')


def _block_remote(tag: str) -> str:
    match = _SRC_ATTR.search(tag)
    if not match or not match.group(1).strip().lower().startswith(("http:", "https:")):
        return tag
    replacement = f'src="{PLACEHOLDER_SRC}" {REMOTE_SRC_ATTRIBUTE}="{match.group(1)}"'
    return tag[:match.start()] + replacement + tag[match.end():]


# Built once: the options are the same for every call, and building them again per call
# costs about as much as cleaning a short email.
_CLEANER = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    clean_content_tags=set(DROPPED_WITH_CONTENT),
    attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
    attribute_filter=_attribute_filter,
    url_schemes={"http", "https", "mailto", "tel", "cid", "data"},
    url_relative="deny",  # no <base> tricks, no links into our own app
    link_rel="noopener noreferrer",
    set_tag_attribute_values={"a": {"target": "_blank"}},
    filter_style_properties=set(ALLOWED_STYLE_PROPERTIES),
    strip_comments=True,
)


def sanitize_html(html: str | None, *, block_remote_images: bool = True) -> str:
    """Safe HTML for display; remote images parked in ``data-remote-src`` unless allowed."""
    if not html:
        return ""
    cleaned = _CLEANER.clean(html.replace("\x00", ""))
    if block_remote_images:
        cleaned = _IMG_TAG.sub(lambda match: _block_remote(match.group(0)), cleaned)
    return cleaned


# ------------------------------------------------------------------ the displayed document

_DOCUMENT_CLEANER = nh3.Cleaner(
    tags=set(nh3.ALLOWED_TAGS) | {"font", "center"},
    attributes={
        "*": {"style", "align", "valign", "width", "height", "bgcolor", "color", "dir",
              "lang", "title", "border", "cellpadding", "cellspacing", "colspan", "rowspan",
              "face", "size"},
        "a": {"href", "name"},
        "img": {"src", "alt", REMOTE_SRC_ATTRIBUTE},
    },
    url_schemes={"http", "https", "mailto", "cid"},
    link_rel="noopener noreferrer",
)
_ATTR = re.compile(r'\s([a-z-]+)="([^"]*)"')
_DOCUMENT_HEAD = (
    "<!doctype html><html><head><meta charset=\"utf-8\"><base target=\"_blank\">"
    "<style>body{font-family:'Segoe UI',system-ui,-apple-system,sans-serif;font-size:14px;"
    "line-height:1.45;color:#242424;margin:16px;overflow-wrap:anywhere}"
    "img{max-width:100%;height:auto}table{max-width:100%}</style></head><body>")


def inline_image_url(content_type: str | None, data: bytes) -> str | None:
    """A ``data:`` URL for an inline image, or None: the type written into it is one of the
    allow-listed image types, matched whole (an attachment's type is the sender's text)."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if not INLINE_IMAGE_TYPE.match(kind):
        return None
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def email_document(html: str | None, inline: dict[str, str], *,
                   remote_images: bool) -> tuple[str, bool]:
    """The stored body as a complete document for the sandboxed frame, and whether it has
    remote images. Cleaned again (defense in depth); ``cid:`` images take their data URL
    from ``inline`` (content id → URL from :func:`inline_image_url`); remote images, parked
    in ``data-remote-src`` when stored, get no ``src`` at all unless ``remote_images``."""
    cleaned = _DOCUMENT_CLEANER.clean((html or "").replace("\x00", ""))
    found = False

    def image(match: re.Match) -> str:
        nonlocal found
        attrs = dict(_ATTR.findall(match.group(0)))
        src = attrs.pop("src", "")
        remote = attrs.pop(REMOTE_SRC_ATTRIBUTE, "")
        if src.lower().startswith("cid:"):
            src = inline.get(html_lib.unescape(src[4:]).strip("<>"), "")
        elif src.lower().startswith(("http:", "https:")):
            remote, src = src, ""
        if not remote.lower().startswith(("http:", "https:")):
            remote = ""
        found = found or bool(remote)
        if remote and remote_images:
            src = remote
        kept = "".join(f' {name}="{value}"' for name, value in attrs.items())
        return f'<img{kept} src="{src}">' if src else f"<img{kept}>"

    cleaned = _IMG_TAG.sub(image, cleaned)
    return f"{_DOCUMENT_HEAD}{cleaned}</body></html>", found


# --------------------------------------------------------------------------- html -> text

_SKIPPED = frozenset({"script", "style", "head", "title", "template", "svg", "math", "noscript",
                      "iframe", "object", "select", "textarea"})
_PARAGRAPHS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "ul", "ol",
                         "table", "pre", "dl", "address", "figure"})
_LINES = frozenset({"div", "tr", "li", "dt", "dd", "section", "article", "header", "footer",
                    "main", "center", "form", "fieldset", "caption", "nav", "aside"})
_SPACES = re.compile(r"\s+")
_VOID = frozenset({"br", "hr", "img", "wbr", "meta", "link", "input", "col", "area", "base"})


class _TextExtractor(HTMLParser):
    """Collects readable lines: paragraphs, list bullets, link targets, quoted blocks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.skip: list[str] = []
        self.pre = 0
        self.quote = 0
        self.lists: list[list[int]] = []  # one counter per open list; [-1] means bullets
        self.links: list[tuple[str | None, int]] = []

    # ---- line building
    def _text_so_far(self) -> str:
        return "".join(self.current)

    def newline(self, force: bool = False) -> None:
        if self.current or force:
            self.lines.append("> " * self.quote + self._text_so_far().rstrip())
        self.current = []

    def paragraph(self) -> None:
        self.newline()
        if self.lines and _has_text(self.lines[-1]):
            self.lines.append(("> " * self.quote).rstrip())

    def indent(self, text: str) -> None:
        """Write at the start of a line, keeping leading spaces (list nesting)."""
        self.current.append(text)

    def write(self, text: str) -> None:
        if not self.pre:
            text = _SPACES.sub(" ", text.replace("\xa0", " "))
            # The last piece is never empty: it alone says whether the line ends in a space.
            if not self.current or self.current[-1].endswith(" "):
                text = text.lstrip(" ")
        if text:
            self.current.append(text)

    # ---- parser events
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skip:
            if tag not in _VOID:
                self.skip.append(tag)
            return
        if tag in _SKIPPED:
            self.skip.append(tag)
            return
        self._open(tag, dict(attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self.skip and tag not in _SKIPPED:
            self._open(tag, dict(attrs))
            if tag not in _VOID:
                self.handle_endtag(tag)

    def _open(self, tag: str, attrs: dict[str, str | None]) -> None:
        if tag == "blockquote":
            self.paragraph()
            self.quote += 1
        elif tag in ("ul", "ol") and self.lists:  # a nested list: no blank line around it
            self.newline()
        elif tag in _PARAGRAPHS:
            self.paragraph()
        elif tag in _LINES:
            self.newline()
        if tag == "br":
            self.newline(force=True)
        elif tag == "hr":
            self.paragraph()
            self.lines.append("> " * self.quote + "-" * 20)
        elif tag == "pre":
            self.pre += 1
        elif tag in ("ul", "ol"):
            self.lists.append([-1 if tag == "ul" else int(_number(attrs.get("start"), 1)) - 1])
        elif tag == "li":
            self._bullet()
        elif tag in ("td", "th") and self.current:
            self.write(" ")
        elif tag == "img" and attrs.get("alt"):
            self.write(f"[{attrs['alt']}]")
        elif tag == "a":
            self.links.append((attrs.get("href"), len(self._text_so_far())))

    def _bullet(self) -> None:
        self.newline()
        if not self.lists:
            self.indent("- ")
            return
        counter = self.lists[-1]
        if counter[0] >= 0:
            counter[0] += 1
        marker = "- " if counter[0] < 0 else f"{counter[0]}. "
        self.indent("  " * (len(self.lists) - 1) + marker)

    def handle_endtag(self, tag: str) -> None:
        if self.skip:
            if tag == self.skip[-1]:
                self.skip.pop()
            return
        if tag == "a" and self.links:
            self._close_link()
        elif tag == "pre" and self.pre:
            self.pre -= 1
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
            if self.lists:
                self.newline()
                return
        if tag == "blockquote" and self.quote:
            self.newline()
            while self.lines and self.lines[-1] and not _has_text(self.lines[-1]):
                self.lines.pop()  # no quoted blank lines at the end of a quote
            self.quote -= 1
            self.paragraph()
        elif tag in _PARAGRAPHS:
            self.paragraph()
        elif tag in _LINES:
            self.newline()

    def _close_link(self) -> None:
        href, start = self.links.pop()
        if not href or not href.lower().startswith(("http:", "https:", "mailto:")):
            return
        label = self._text_so_far()[start:].strip()
        target = href[7:] if href.lower().startswith("mailto:") else href
        if target.strip() and target not in label:
            self.write(f" <{target}>" if label else f"<{target}>")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.write(data)

    def result(self) -> str:
        """The lines, with runs of blank lines (quoted or not) collapsed to one."""
        self.newline()
        out: list[str] = []
        for line in (line.rstrip() for line in self.lines):
            if not _has_text(line) and (not out or not _has_text(out[-1])):
                continue
            out.append(line)
        while out and not _has_text(out[-1]):
            out.pop()
        return "\n".join(out)


def _has_text(line: str) -> bool:
    return bool(line.replace(">", "").strip())


def _number(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def html_to_text(html: str | None) -> str:
    """A readable plain-text version of an HTML body."""
    if not html:
        return ""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # HTMLParser can still assert on pathological markup
        stripped = re.sub(r"(?is)<(script|style|head)\b.*?</\1\s*>|<[^>]+>", " ", html)
        return re.sub(r"[ \t]+", " ", html_lib.unescape(stripped)).strip()
    return parser.result()
