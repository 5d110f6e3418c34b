"""Unit tests for ``server.sync.mail.message``: parsing raw bytes into a MailMessage."""
from __future__ import annotations

import base64
import random
from datetime import datetime, timezone

import pytest

from server.sync.mail.bodies import safe_filename
from server.sync.mail.charsets import decode_bytes
from server.sync.mail.headers import HeaderMap
from server.sync.mail.message import Address, MessageError, parse


def b64_word(text: str, charset: str) -> str:
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode()}?="


# --------------------------------------------------------------------------- basics


def test_basic_fields(mail):
    msg = mail(extra=[("Cc", "Carl <CARL@Partner.Example>, dora@partner.example"),
                      ("Reply-To", "replies@customer.example")])
    assert msg.subject == "Hello"
    assert msg.from_ == Address("Ann Customer", "ann@customer.example")
    assert msg.to == [Address("Bob Seller", "bob@org.example")]
    assert [a.address for a in msg.cc] == ["carl@partner.example", "dora@partner.example"]
    assert msg.reply_to == [Address("", "replies@customer.example")]
    assert msg.bcc == [] and msg.sender is None
    assert msg.date == datetime(2024, 3, 5, 10, 0, tzinfo=timezone.utc)
    assert msg.text_body == "Hello there.\n"
    assert msg.html_body == ""
    assert msg.attachments == []
    assert msg.is_delivery_report is False
    assert msg.defects == []
    assert msg.identity == "m1@customer.example"
    assert msg.size > 100


def test_message_id_normalized_domain_lowercased_local_part_kept(mail):
    msg = mail(headers={"Message-ID": "  <AbC.123@Mail.EXAMPLE.com> "})
    assert msg.message_id == "AbC.123@mail.example.com"


def test_missing_message_id_uses_content_hash(mail, raw_mail):
    msg = mail(headers={"Message-ID": None})
    assert msg.message_id is None
    assert msg.identity == f"sha256:{msg.content_hash}"
    assert len(msg.content_hash) == 64


def test_content_hash_ignores_header_order_and_line_endings(raw_mail):
    one = parse(raw_mail(headers={"Message-ID": None}))
    reordered = parse(b"Subject: Hello\nDate: Tue, 05 Mar 2024 10:00:00 +0000\n"
                      b"To: bob@org.example\nFrom: ANN@customer.example\n\nHello there.\n")
    other = parse(raw_mail(body="Something else", headers={"Message-ID": None}))
    assert one.content_hash == reordered.content_hash
    assert one.content_hash != other.content_hash


def test_in_reply_to_and_references(mail):
    msg = mail(extra=[("In-Reply-To", "<Parent@Example.COM> (Ann's message)"),
                      ("References", "<root@example.com>\r\n <Parent@Example.COM>"),
                      ("References", "<root@example.com> <extra@example.com>")])
    assert msg.in_reply_to == "Parent@example.com"
    assert msg.references == ["root@example.com", "Parent@example.com", "extra@example.com"]


def test_leading_blank_lines_and_bom_are_ignored(raw_mail):
    msg = parse(b"\xef\xbb\xbf\r\n" + raw_mail())
    assert msg.subject == "Hello" and msg.from_ is not None
    assert any("before the headers" in d for d in msg.defects)


def test_empty_in_reply_to_is_none(mail):
    assert mail(extra=[("In-Reply-To", "")]).in_reply_to is None


# --------------------------------------------------------------------------- addresses


def test_idna_and_utf8_headers(raw_mail):
    raw = raw_mail(headers={"From": '"Jöhn Doe" <jdöe@mächine.example>',
                            "To": "Märy <märy@exämple.net>"})
    msg = parse(raw)
    assert msg.from_ == Address("Jöhn Doe", "jdöe@xn--mchine-bua.example")
    assert msg.to[0].address == "märy@xn--exmple-cua.net"


def test_display_name_encoded_word(mail):
    msg = mail(headers={"From": f"{b64_word('山田太郎', 'iso-2022-jp')} <taro@example.jp>"})
    assert msg.from_ == Address("山田太郎", "taro@example.jp")


def test_two_from_headers_first_wins_with_defect(raw_mail):
    msg = parse(raw_mail(extra=[("From", "Mallory <mallory@evil.example>")]))
    assert msg.from_.address == "ann@customer.example"
    assert any("2 From headers" in d for d in msg.defects)


def test_from_with_two_mailboxes_uses_first(mail):
    msg = mail(headers={"From": "Ann <ann@customer.example>, ben@customer.example",
                        "Sender": "ann@customer.example"})
    assert msg.from_.address == "ann@customer.example"
    assert msg.sender == Address("", "ann@customer.example")
    assert any("lists 2 addresses" in d for d in msg.defects)


def test_malformed_address_list_recovered_leniently(mail):
    msg = mail(headers={"To": "smith@gmail.com, Mikel@Lindsaar <raasdnil@gmail.com>, tom@gmail.com"})
    assert [a.address for a in msg.to] == ["smith@gmail.com", "raasdnil@gmail.com", "tom@gmail.com"]
    assert msg.to[1].name == "Mikel@Lindsaar"
    assert any("recovered leniently" in d for d in msg.defects)


def test_invalid_addresses_are_dropped_with_defect(mail):
    msg = mail(headers={"To": "<Undisclosed-Recipient:@mailman.example;>", "Cc": "undisclosed recipients: ;"})
    assert msg.to == [] and msg.cc == []
    assert any("invalid address" in d for d in msg.defects)


def test_missing_from_is_a_defect(mail):
    msg = mail(headers={"From": None})
    assert msg.from_ is None
    assert any("From" in d for d in msg.defects)


def test_address_str_quotes_specials():
    assert str(Address("Doe, John", "j@x.example")) == '"Doe, John" <j@x.example>'
    assert str(Address("Jöhn", "j@x.example")) == "Jöhn <j@x.example>"
    assert str(Address("", "j@x.example")) == "j@x.example"
    assert Address("a", "j@mail.x.example").domain == "mail.x.example"


def test_recipients_and_participants(mail):
    msg = mail(extra=[("Cc", "ann@customer.example, carl@partner.example")])
    assert [a.address for a in msg.recipients] == ["bob@org.example", "ann@customer.example",
                                                    "carl@partner.example"]
    assert [a.address for a in msg.participants] == ["ann@customer.example", "bob@org.example",
                                                      "carl@partner.example"]


# --------------------------------------------------------------------------- subjects


def test_subject_iso_2022_jp_encoded_word(mail):
    msg = mail(headers={"Subject": b64_word("見積もりのご依頼", "iso-2022-jp")})
    assert msg.subject == "見積もりのご依頼"


def test_subject_multibyte_character_split_across_words(mail):
    data = "日本語".encode("utf-8")
    first, second = data[:4], data[4:]  # splits the second character in two
    words = (f"=?UTF-8?B?{base64.b64encode(first).decode()}?=\r\n "
             f"=?UTF-8?B?{base64.b64encode(second).decode()}?=")
    assert mail(headers={"Subject": words}).subject == "日本語"


def test_subject_unfolded_and_control_characters_removed(mail):
    msg = mail(headers={"Subject": "Quarterly\r\n\treport\x07 for =?utf-8?Q?K=C3=B6ln?=\x1b!"})
    assert msg.subject == "Quarterly report for Köln!"


def test_subject_encoded_words_keep_spacing_rules(mail):
    # whitespace between two encoded words disappears, between word and text it stays
    msg = mail(headers={"Subject": "=?utf-8?Q?a?= =?utf-8?Q?b?= c =?utf-8?Q?d_e?="})
    assert msg.subject == "ab c d e"


def test_subject_raw_latin1_bytes(raw_mail):
    raw = raw_mail().replace(b"Subject: Hello", "Subject: Formação Verão".encode("latin-1"))
    msg = parse(raw)
    assert msg.subject == "Formação Verão"
    assert any("8-bit" in d for d in msg.defects)


def test_subject_raw_utf8_bytes_are_fine(raw_mail):
    msg = parse(raw_mail(headers={"Subject": "Säying Hello"}))
    assert msg.subject == "Säying Hello"
    assert msg.defects == []


def test_missing_subject_is_empty_with_defect(mail):
    msg = mail(headers={"Subject": None})
    assert msg.subject == ""
    assert any("Subject" in d for d in msg.defects)


# --------------------------------------------------------------------------- charsets


def single_part(body: bytes, charset: str, cte: str = "8bit") -> list[tuple[str, str]]:
    return [("MIME-Version", "1.0"), ("Content-Type", f"text/plain; charset={charset}"),
            ("Content-Transfer-Encoding", cte)]


@pytest.mark.parametrize("text, charset", [
    ("すみません。", "iso-2022-jp"),
    ("このメールはテスト用のメールです。", "shift_jis"),
    ("①②③ 髙橋", "shift_jis"),  # NEC / IBM extensions: cp932, not strict Shift_JIS
    ("한국말로 하는 것", "ks_c_5601-1987"),
    ("똠방각하", "ks_c_5601-1987"),  # only in cp949, not in euc-kr
    ("Ünïcödé + plus", "utf-7"),
    ("简体中文", "gb2312"),
    ("Grüße €", "windows-1252"),
])
def test_body_charsets(raw_mail, text, charset):
    codec = {"ks_c_5601-1987": "cp949", "shift_jis": "cp932", "gb2312": "gb18030"}.get(charset, charset)
    body = text.encode(codec)
    msg = parse(raw_mail(body=body, extra=single_part(body, charset)))
    assert msg.text_body == text
    assert msg.defects == []


def test_unknown_charset_falls_back_with_defect(raw_mail):
    body = "café".encode("latin-1")
    msg = parse(raw_mail(body=body, extra=single_part(body, "x-unknown")))
    assert msg.text_body == "café"
    assert any("unknown charset 'x-unknown'" in d for d in msg.defects)


def test_wrong_charset_replaces_and_records_defect(raw_mail):
    body = b"\x1b$B\xff\xff\x1b(B ok"
    msg = parse(raw_mail(body=body, extra=single_part(body, "iso-2022-jp")))
    assert msg.text_body.endswith("ok")
    assert msg.defects


def test_latin1_label_on_utf8_bytes(raw_mail):
    body = "Grüße".encode("utf-8")
    msg = parse(raw_mail(body=body, extra=single_part(body, "iso-8859-1")))
    assert msg.text_body == "Grüße"
    assert any("but is UTF-8" in d for d in msg.defects)


def test_decode_bytes_never_raises():
    rng = random.Random(7)
    for charset in (None, "utf-8", "iso-2022-jp", "shift_jis", "utf-7", "nonsense", "big5", ""):
        data = bytes(rng.randrange(256) for _ in range(200))
        assert isinstance(decode_bytes(data, charset, []), str)


@pytest.mark.parametrize("cte, encoded", [
    ("base64", base64.b64encode("Grüße\n".encode()).decode()),
    ("quoted-printable", "Gr=C3=BC=C3=9Fe\n"),
    ("Quoted-Printable;", "Gr=C3=BC=C3=9Fe\n"),
    ("quoted printable", "Gr=C3=BC=C3=9Fe\n"),
    ("8bit", "Grüße\n"),
])
def test_transfer_encodings(raw_mail, cte, encoded):
    raw = raw_mail(body=encoded, extra=[("Content-Type", "text/plain; charset=utf-8"),
                                        ("Content-Transfer-Encoding", cte)])
    assert parse(raw).text_body == "Grüße\n"


def test_unknown_transfer_encoding_used_as_is(raw_mail):
    msg = parse(raw_mail(body="plain words\n", extra=[("Content-Transfer-Encoding", "7vladi")]))
    assert msg.text_body == "plain words\n"
    assert any("Content-Transfer-Encoding" in d for d in msg.defects)


def test_bad_base64_is_decoded_leniently(raw_mail):
    body = base64.b64encode(b"hello world").decode()[:-2] + "!!\r\n"
    raw = raw_mail(body=body, extra=[("Content-Transfer-Encoding", "base64")])
    assert parse(raw).text_body.startswith("hello wor")


# --------------------------------------------------------------------------- dates


def test_date_converted_to_utc(mail):
    msg = mail(headers={"Date": "Fri, 21 Nov 1997 09:55:06 -0600"})
    assert msg.date == datetime(1997, 11, 21, 15, 55, 6, tzinfo=timezone.utc)
    assert msg.date.utcoffset().total_seconds() == 0
    assert msg.date_raw == "Fri, 21 Nov 1997 09:55:06 -0600"


def test_unparseable_date_is_none_with_defect(mail):
    msg = mail(headers={"Date": "Pn, 29 paX 2007 21:13:00 +0100"})
    assert msg.date is None
    assert msg.date_raw == "Pn, 29 paX 2007 21:13:00 +0100"
    assert any("Date header could not be read" in d for d in msg.defects)


def test_date_without_zone_assumes_utc(mail):
    msg = mail(headers={"Date": "Tue, 12 Oct 2010 16:21:05 -0000"})
    assert msg.date == datetime(2010, 10, 12, 16, 21, 5, tzinfo=timezone.utc)
    assert any("UTC was assumed" in d for d in msg.defects)


def test_missing_date(mail):
    msg = mail(headers={"Date": None})
    assert msg.date is None and msg.date_raw is None
    assert any("no Date" in d for d in msg.defects)


# --------------------------------------------------------------------------- MIME structure


ALTERNATIVE = (
    "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlain körper\r\n"
    "--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>HTML <script>x()</script></p>\r\n"
    "--b1--\r\n"
)


def test_alternative_gives_both_bodies_raw(raw_mail):
    raw = raw_mail(body=ALTERNATIVE, extra=[("MIME-Version", "1.0"),
                                            ("Content-Type", 'multipart/alternative; boundary="b1"')])
    msg = parse(raw)
    assert msg.text_body == "Plain körper"  # the CRLF before a boundary belongs to it
    assert msg.html_body == "<p>HTML <script>x()</script></p>"  # unsanitized: html.py's job


def mixed(*parts: str) -> str:
    return "".join(f"--mix\r\n{part}\r\n" for part in parts) + "--mix--\r\n"


MIXED_HEADERS = [("MIME-Version", "1.0"), ("Content-Type", "multipart/mixed; boundary=mix")]


def test_attachments_and_inline_image(raw_mail):
    png = base64.b64encode(b"\x89PNG fake").decode()
    body = mixed(
        "Content-Type: text/plain\r\n\r\nSee attached.",
        "Content-Type: application/pdf; name=\"quote.pdf\"\r\nContent-Disposition: attachment; "
        "filename=\"quote.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(b"%PDF-1.4 test").decode(),
        "Content-Type: image/png\r\nContent-ID: <logo@org>\r\nContent-Transfer-Encoding: base64"
        f"\r\n\r\n{png}",
    )
    msg = parse(raw_mail(body=body, extra=MIXED_HEADERS))
    assert msg.text_body == "See attached."
    pdf, logo = msg.attachments
    assert (pdf.filename, pdf.content_type, pdf.content, pdf.size) == (
        "quote.pdf", "application/pdf", b"%PDF-1.4 test", 13)
    assert pdf.inline is False and pdf.content_id is None
    assert logo.content_id == "logo@org" and logo.inline is True
    assert logo.filename == "attachment-2.png" and logo.content == b"\x89PNG fake"


@pytest.mark.parametrize("disposition, expected", [
    ("attachment; filename*=UTF-8''%E8%A6%8B%E7%A9%8D.pdf", "見積.pdf"),
    ("attachment; filename*0*=utf-8''%E3%81%8B%E3%81%8D; filename*1*=%E3%81%8F.txt", "かきく.txt"),
    ("attachment; filename=\"=?UTF-8?B?44Gm44GZ44GoLnR4dA==?=\"", "てすと.txt"),
    ("attachment; filename==?utf-8?B?VGhpcyBpcyBhIHRlc3QucGRm?=", "This is a test.pdf"),
    ("attachment; filename=This is a test.txt", "This is a test.txt"),
    ("attachment; filename=\"../../etc/passwd\"", "passwd"),
    ("attachment; filename=\"C:\\\\Windows\\\\evil.exe\"", "evil.exe"),
    ("attachment; filename=\"invoice\u202etxt.exe\"", "invoicetxt.exe"),
    ("attachment; filename=\"CON.txt\"", "_CON.txt"),
    ("attachment; filename=\"...\"", "attachment-1.bin"),
    ("attachment", "attachment-1.bin"),
])
def test_attachment_filenames_decoded_and_made_safe(raw_mail, disposition, expected):
    body = mixed(f"Content-Type: application/octet-stream\r\nContent-Disposition: {disposition}"
                 "\r\n\r\ndata")
    msg = parse(raw_mail(body=body.encode("utf-8"), extra=MIXED_HEADERS))
    assert [a.filename for a in msg.attachments] == [expected]


def test_attached_email_is_an_eml_attachment(raw_mail):
    inner = "From: x@y.example\r\nSubject: Inner: note?\r\n\r\ninner body\r\n"
    body = mixed("Content-Type: text/plain\r\n\r\nForwarded.",
                 f"Content-Type: message/rfc822\r\n\r\n{inner}")
    msg = parse(raw_mail(body=body, extra=MIXED_HEADERS))
    assert msg.text_body == "Forwarded."
    (eml,) = msg.attachments
    assert eml.content_type == "message/rfc822"
    assert eml.filename == "Inner_ note_.eml"
    assert b"inner body" in eml.content and b"Subject: Inner: note?" in eml.content


def test_unquoted_boundary_with_equals_sign_is_read(raw_mail):
    boundary = "----=_NextPart_000_0023_08"
    body = (f"preamble\r\n--{boundary}\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
            f"--{boundary}\r\nContent-Type: text/html\r\n\r\n<b>html</b>\r\n--{boundary}--\r\n")
    raw = raw_mail(body=body, extra=[("MIME-Version", "1.0"),
                                     ("Content-Type", f"multipart/alternative;\r\n boundary={boundary}")])
    msg = parse(raw)
    assert (msg.text_body, msg.html_body) == ("plain", "<b>html</b>")


def test_multipart_without_parts_keeps_text(raw_mail):
    raw = raw_mail(body="just text, no boundary\r\n",
                   extra=[("Content-Type", 'multipart/mixed; boundary="nowhere"')])
    msg = parse(raw)
    assert "just text" in msg.text_body
    assert msg.defects


def test_nul_characters_removed_from_body(raw_mail):
    msg = parse(raw_mail(body=b"a\x00b\r\n"))
    assert msg.text_body == "ab\n"
    assert any("NUL" in d for d in msg.defects)


# --------------------------------------------------------------------------- headers for rules


def test_rule_headers_are_kept_case_insensitively(mail):
    msg = mail(extra=[("Auto-Submitted", "auto-replied"), ("LIST-ID", "<news.example.com>"),
                      ("X-Regarding-Loop", "org-1"), ("X-MS-Exchange-Organization-SCL", "1"),
                      ("Thread-Index", "AcpZlFLF/Y9EfcC0QZKKEuUFm2Snqw=="),
                      ("Received", "from somewhere")])
    assert msg.headers["auto-submitted"] == "auto-replied"
    assert msg.headers["List-Id"] == "<news.example.com>"
    assert "x-regarding-loop" in msg.headers and "X-REGARDING-LOOP" in msg.headers
    assert msg.headers.get("x-ms-exchange-organization-scl") == "1"
    assert "received" not in msg.headers
    assert msg.thread_index == "AcpZlFLF/Y9EfcC0QZKKEuUFm2Snqw=="


def test_header_map_is_read_only_mapping():
    headers = HeaderMap({"Precedence": "bulk"})
    assert headers["PRECEDENCE"] == "bulk" and len(headers) == 1 and list(headers) == ["precedence"]
    with pytest.raises(TypeError):
        headers["x"] = "y"  # type: ignore[index]


# --------------------------------------------------------------------------- reports


def test_multipart_report_is_delivery_report(raw_mail):
    body = mixed("Content-Type: text/plain\r\n\r\nDelivery failed.",
                 "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n"
                 "Final-Recipient: rfc822; gone@example.com\r\nAction: failed\r\nStatus: 5.1.1")
    raw = raw_mail(body=body, extra=[("MIME-Version", "1.0"), ("Content-Type",
                   "multipart/report; report-type=delivery-status; boundary=mix")])
    msg = parse(raw)
    assert msg.is_delivery_report is True
    assert msg.attachments[0].filename == "delivery-status.txt"


def test_read_receipt_is_delivery_report(raw_mail):
    body = mixed("Content-Type: text/plain\r\n\r\nYour message was read.",
                 "Content-Type: message/disposition-notification\r\n\r\n"
                 "Final-Recipient: rfc822; bob@org.example\r\nDisposition: manual-action/MDN-sent-manually; displayed")
    raw = raw_mail(body=body, extra=[("MIME-Version", "1.0"), ("Content-Type",
                   "multipart/report; report-type=disposition-notification; boundary=mix")])
    assert parse(raw).is_delivery_report is True


def test_plain_text_bounce_from_mailer_daemon(mail):
    msg = mail(headers={"From": "MAILER-DAEMON@mx.example", "Subject": "failure notice"})
    assert msg.is_delivery_report is True
    assert mail(headers={"From": "MAILER-DAEMON@mx.example", "Subject": "Hi"}).is_delivery_report is False


# --------------------------------------------------------------------------- not an email


@pytest.mark.parametrize("raw, code", [
    (b"", "empty"),
    (b"  \r\n\r\n\t ", "empty"),
    (bytes(range(256)) * 4, "no-headers"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "no-headers"),
    (b"Note: buy milk\nand bread\n", "not-an-email"),
    (b"just some words\nover two lines\n", "no-headers"),
])
def test_not_an_email_raises_message_error(raw, code):
    with pytest.raises(MessageError) as caught:
        parse(raw)
    assert caught.value.code == code
    assert caught.value.reason.endswith(".")


def test_mangled_messages_never_raise_anything_but_message_error(raw_mail):
    rng = random.Random(2024)
    body = mixed("Content-Type: text/plain; charset=iso-2022-jp\r\n\r\n\x1b$B$9$_$^$;$s\x1b(B",
                 "Content-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64"
                 "\r\n\r\nJVBERi0xLjQ=")
    seed = bytearray(raw_mail(body=body, extra=MIXED_HEADERS))
    for _ in range(300):
        data = bytearray(seed)
        for _ in range(rng.randrange(1, 12)):
            position = rng.randrange(len(data))
            data[position:position + rng.randrange(4)] = bytes(rng.randrange(256) for _ in range(3))
        try:
            msg = parse(bytes(data))
        except MessageError as error:
            assert error.reason
            continue
        assert isinstance(msg.subject, str) and isinstance(msg.text_body, str)
        (msg.subject + msg.text_body + msg.html_body).encode("utf-8")  # no lone surrogates


# --------------------------------------------------------------------------- safe filenames


@pytest.mark.parametrize("name, expected", [
    ("report.pdf", "report.pdf"),
    ("a/b/c.txt", "c.txt"),
    ("  spaced   name .txt  ", "spaced name .txt"),
    ('what?<>|*:".txt', "what_______.txt"),
    ("nul", "_nul"),
    ("\x00\x01", "fallback"),
    (None, "fallback"),
    ("x" * 300 + ".pdf", "x" * 196 + ".pdf"),
])
def test_safe_filename(name, expected):
    assert safe_filename(name, "fallback") == expected


def test_a_uuencoded_attachment_is_decoded(raw_mail):
    import binascii
    content = b"uuencoded bytes \x00\xff" * 5
    lines = b"".join(binascii.b2a_uu(content[i:i + 45]) for i in range(0, len(content), 45))
    raw = raw_mail(b"--b\r\nContent-Type: application/octet-stream; name=x.bin\r\n"
                   b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x.bin\r\n" + lines
                   + b"`\r\nend\r\n--b--\r\n",
                   extra=[("MIME-Version", "1.0"), ("Content-Type", "multipart/mixed; boundary=b")])
    (attachment,) = parse(raw).attachments
    assert attachment.content == content
