"""The MIME structure reader (``server.sync.mail.mime``) through ``message.parse``: the tricky
shapes real mail has, read the way the stdlib reads them but without walking body lines."""
from __future__ import annotations

import base64

from server.sync.mail.message import parse

HEAD = [("MIME-Version", "1.0")]


def multipart(kind: str, boundary: str, *parts: str, close: bool = True) -> str:
    body = "".join(f"--{boundary}\r\n{part}\r\n" for part in parts)
    return body + (f"--{boundary}--\r\n" if close else "")


def test_nested_multiparts_give_bodies_and_attachments(raw_mail):
    pdf = base64.encodebytes(b"%PDF-1.4 nested" * 50).decode()
    alternative = multipart("alternative", "inner",
                            "Content-Type: text/plain; charset=utf-8\r\n\r\nPlain text",
                            "Content-Type: text/html; charset=utf-8\r\n\r\n<p>HTML</p>")
    related = multipart("related", "rel",
                        'Content-Type: multipart/alternative; boundary="inner"\r\n\r\n' + alternative,
                        "Content-Type: image/png\r\nContent-ID: <logo@org>\r\n"
                        "Content-Transfer-Encoding: base64\r\n\r\n"
                        + base64.b64encode(b"\x89PNG").decode())
    body = multipart("mixed", "outer",
                     "Content-Type: multipart/related; boundary=rel\r\n\r\n" + related,
                     "Content-Type: application/pdf; name=q.pdf\r\nContent-Transfer-Encoding: base64"
                     f"\r\n\r\n{pdf}")
    msg = parse(raw_mail(body=body, extra=HEAD + [
        ("Content-Type", 'multipart/mixed; boundary="outer"')]))
    assert msg.text_body == "Plain text" and msg.html_body == "<p>HTML</p>"
    assert [(a.filename, a.inline, a.content) for a in msg.attachments] == [
        ("attachment-1.png", True, b"\x89PNG"), ("q.pdf", False, b"%PDF-1.4 nested" * 50)]
    assert msg.defects == []


def test_missing_closing_boundary_keeps_the_last_part(raw_mail):
    body = multipart("mixed", "b", "Content-Type: text/plain\r\n\r\nfirst",
                     "Content-Type: text/plain\r\n\r\nsecond and last\r\n", close=False)
    msg = parse(raw_mail(body=body, extra=HEAD + [("Content-Type", "multipart/mixed; boundary=b")]))
    assert msg.text_body == "first\nsecond and last\n"
    assert any("closing multipart boundary is missing" in d for d in msg.defects)


def test_boundary_like_lines_in_a_body_are_content(raw_mail):
    text = ("--b is how we sign\r\n --b\r\nx--b\r\n--bb\r\n--b-- not the end either\r\n"
            "-- \r\nsignature")
    body = multipart("mixed", "b", f"Content-Type: text/plain\r\n\r\n{text}",
                     "Content-Type: text/plain\r\n\r\nsecond")
    msg = parse(raw_mail(body=body, extra=HEAD + [("Content-Type", 'multipart/mixed; boundary="b"')]))
    assert msg.text_body == text.replace("\r\n", "\n") + "\nsecond"
    assert msg.defects == []


def test_delimiter_with_trailing_whitespace_and_bare_lf(raw_mail):
    body = ("preamble\n--b \t\nContent-Type: text/plain\n\none\n--b\nContent-Type: text/html\n\n"
            "<i>two</i>\n--b-- \nepilogue\n")
    msg = parse(raw_mail(body=body, extra=HEAD + [("Content-Type", "multipart/alternative; boundary=b")]))
    assert (msg.text_body, msg.html_body) == ("one", "<i>two</i>")


def test_base64_with_junk_and_bad_padding_is_decoded_leniently(raw_mail):
    data = b"attachment bytes \x00\xff" * 20
    encoded = base64.encodebytes(data).decode()
    junk = encoded[:30] + "!*\r\n" + encoded[30:].rstrip("=\n") + "\r\n"  # junk, padding lost
    body = multipart("mixed", "m", "Content-Type: text/plain\r\n\r\nsee file",
                     "Content-Type: application/octet-stream; name=f.bin\r\n"
                     f"Content-Transfer-Encoding: base64\r\n\r\n{junk}")
    msg = parse(raw_mail(body=body, extra=HEAD + [("Content-Type", "multipart/mixed; boundary=m")]))
    (attachment,) = msg.attachments
    assert attachment.content == data and attachment.size == len(data)


def test_8bit_headers_in_parts_and_message(raw_mail):
    body = multipart("mixed", "m", "Content-Type: text/plain; charset=iso-8859-1\r\n\r\nVer\xe3o",
                     'Content-Type: application/pdf; name="Or\xe7amento.pdf"\r\n\r\n%PDF')
    raw = raw_mail(body=body.encode("latin-1"), extra=HEAD + [
        ("Content-Type", "multipart/mixed; boundary=m")])
    raw = raw.replace(b"Subject: Hello", "Subject: Formação".encode("latin-1"))
    raw = raw.replace(b"From: Ann Customer", "From: Jöhn Dœ".encode("utf-8"))
    msg = parse(raw)
    assert msg.subject == "Formação"
    assert msg.from_.name == "Jöhn Dœ"
    assert msg.text_body == "Verão"
    assert [a.filename for a in msg.attachments] == ["Orçamento.pdf"]


def test_attached_message_keeps_its_bytes(raw_mail):
    inner = ("From: x@y.example\r\nSubject: =?utf-8?q?Caf=C3=A9?=\r\nContent-Type: multipart/mixed;"
             " boundary=in\r\n\r\n--in\r\nContent-Type: text/plain\r\n\r\ninner\r\n--in--\r\n")
    body = multipart("mixed", "m", "Content-Type: text/plain\r\n\r\nfwd",
                     f"Content-Type: message/rfc822\r\n\r\n{inner}")
    msg = parse(raw_mail(body=body, extra=HEAD + [("Content-Type", "multipart/mixed; boundary=m")]))
    (eml,) = msg.attachments
    assert eml.filename == "Café.eml"
    assert eml.content == inner.encode()  # as sent: the next CRLF belongs to the delimiter
    assert msg.text_body == "fwd"  # the attached message's text is not the message's


def test_deep_nesting_is_cut_with_a_defect(raw_mail):
    body = "Content-Type: text/plain\r\n\r\ndeepest"
    for level in range(40):
        body = (f"Content-Type: multipart/mixed; boundary=l{level}\r\n\r\n"
                + multipart("mixed", f"l{level}", body))
    msg = parse(raw_mail(body=body.split("\r\n\r\n", 1)[1], extra=HEAD + [
        ("Content-Type", "multipart/mixed; boundary=l39")]))
    assert any("nested too deeply" in d for d in msg.defects)
    assert "deepest" not in msg.text_body
