"""Every message in the shared corpus parses to sensible fields or is quarantined with a reason.

The corpus (``../shared/corpus/mail-fixtures``, read in place, byte-exact) is the minimum set
every parser change must survive; see its README.
"""
from __future__ import annotations

import re
import unicodedata
from datetime import timezone
from pathlib import Path

import pytest

from server.crm.html import html_to_text, sanitize_html
from server.sync.mail.message import MailMessage, MessageError, parse

from .conftest import CORPUS

FILES = sorted(p for p in CORPUS.rglob("*") if p.is_file()) if CORPUS.is_dir() else []

# The only corpus files that are not emails at all, and why.
QUARANTINED = {"sample_output_multipart": "empty"}

ADDRESS = re.compile(r'^(?:[^\s()<>\[\]:;@\\,"]+|"[^"\r\n]*")@[a-z0-9_.-]+$')


def rel(path: Path) -> str:
    return path.relative_to(CORPUS).as_posix()


def load(name: str) -> MailMessage:
    return parse((CORPUS / name).read_bytes())


def test_corpus_is_present(corpus):
    assert len(FILES) >= 100


def assert_clean_text(text: str) -> None:
    text.encode("utf-8")  # no lone surrogates left over from 8-bit bytes
    assert not any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in text)


def assert_sensible(msg: MailMessage) -> None:
    assert isinstance(msg.subject, str)
    assert msg.subject or msg.defects, "an empty subject must come with a defect"
    assert_clean_text(msg.subject)
    for address in [msg.from_, msg.sender, *msg.reply_to, *msg.recipients]:
        if address is None:
            continue
        assert ADDRESS.match(address.address), address
        assert address.address == address.address.lower().strip()
        assert address.domain.isascii()
        assert_clean_text(address.name)
    assert isinstance(msg.text_body, str) and isinstance(msg.html_body, str)
    msg.text_body.encode("utf-8")
    msg.html_body.encode("utf-8")
    assert "\r" not in msg.text_body
    assert msg.date is None or msg.date.utcoffset() == timezone.utc.utcoffset(None)
    assert msg.identity and (msg.message_id is None or " " not in msg.message_id)
    assert all(isinstance(d, str) and d for d in msg.defects)
    for attachment in msg.attachments:
        assert attachment.size == len(attachment.content)
        assert attachment.filename and not re.search(r"[/\\\x00-\x1f]", attachment.filename)
        assert "/" in attachment.content_type


@pytest.mark.parametrize("path", FILES, ids=rel)
def test_every_corpus_message_parses_or_is_quarantined(path: Path):
    raw = path.read_bytes()
    try:
        msg = parse(raw)
    except MessageError as error:
        assert QUARANTINED.get(rel(path)) == error.code, f"unexpected quarantine: {error}"
        assert error.reason
        return
    assert rel(path) not in QUARANTINED
    assert msg.size == len(raw)
    assert_sensible(msg)
    # Bodies survive the later pure stages too.
    assert isinstance(sanitize_html(msg.html_body), str)
    assert isinstance(html_to_text(msg.html_body), str)


def test_corpus_summary():
    """How many parse and how many are quarantined: a regression guard on the whole set."""
    parsed, quarantined = 0, {}
    for path in FILES:
        try:
            parse(path.read_bytes())
            parsed += 1
        except MessageError as error:
            quarantined[rel(path)] = error.code
    assert quarantined == QUARANTINED
    assert parsed == len(FILES) - len(QUARANTINED)


# --------------------------------------------------------------------------- named files


def test_japanese_iso_2022_jp_body_and_utf8_subject():
    msg = load("multi_charset/japanese_iso_2022.eml")
    assert msg.subject == "まみむめも"
    assert msg.text_body.strip() == "すみません。"
    assert msg.to[0].name == "みける"


def test_japanese_long_subject_in_many_encoded_words():
    msg = load("multi_charset/japanese_attachment_long_name.eml")
    assert msg.subject == "まみむめも" * 10
    (attachment,) = msg.attachments
    assert attachment.filename == "かきくけこ" * 5 + ".txt"  # RFC 2231 continuation
    assert attachment.content == b"this is the data\r\n"


def test_shift_jis_and_ks_c_5601_bodies():
    assert load("multi_charset/japanese_shift_jis.eml").text_body.startswith("あいうえお\n")
    assert load("multi_charset/ks_c_5601-1987.eml").text_body.strip() == "스티해"
    assert load("plain_emails/raw_email.eml").subject == "NOTE: 한국말로 하는 것"


@pytest.mark.parametrize("name, filename", [
    ("multi_charset/japanese_attachment.eml", "てすと.txt"),
    ("attachment_emails/attachment_with_base64_encoded_name.eml", "This is a test.pdf"),
    ("attachment_emails/attachment_with_unquoted_name.eml", "This is a test.txt"),
    ("attachment_emails/attachment_nonascii_filename.eml", "ciële.txt"),
    ("attachment_emails/attachment_with_quoted_filename.eml", "Eelanalüüsi päring.jpg"),
    ("attachment_emails/attachment_content_location.eml", "Photo25.jpg"),
    ("error_emails/missing_content_disposition.eml", "somefile.jpg"),
])
def test_odd_attachment_filenames_decode(name, filename):
    assert filename in [a.filename for a in load(name).attachments]


def test_rfc2231_filename_in_a_charset_it_is_not():
    msg = load("attachment_emails/attachment_with_encoded_name.eml")
    (attachment,) = msg.attachments
    assert attachment.filename.startswith("01 Quien Te Dij")
    assert attachment.filename.endswith("at. Pitbull.mp3")
    assert any("name parameter" in d for d in msg.defects)


def test_two_from_message():
    msg = load("mime_emails/two_from_in_message.eml")
    assert msg.from_.address == "tester1@test.com"
    assert msg.to[0].address == "tester2@test.com"
    # "From" at the start of body lines is body text, not a header or an mbox separator.
    assert "* From Hotmail you get the ads as well." in msg.text_body
    assert msg.in_reply_to == "8fc5086d0912020131y377ba0ccpf8f14783cfc3014a@test.com"


@pytest.mark.parametrize("name", ["plain_emails/raw_email_with_at_display_name.eml",
                                  "plain_emails/raw_email_multiple_from.eml"])
def test_from_with_two_addresses(name):
    msg = load(name)
    assert msg.from_.address in ("test@lindsaar.net", "tim@powerupdev.com")
    assert any("From header lists 2 addresses" in d for d in msg.defects)


def test_display_name_with_at_sign_keeps_real_address():
    msg = load("plain_emails/raw_email_with_at_display_name.eml")
    assert [a.address for a in msg.to] == ["smith@gmail.com", "raasdnil@gmail.com", "tom@gmail.com"]


@pytest.mark.parametrize("name, raw_date", [
    ("plain_emails/raw_email_with_bad_date.eml", "Pn, 29 paX 2007 21:13:00 +0100"),
    ("error_emails/bad_date_header2.eml", "Wed, 15 Dec 2010    59:10 -0500"),
    ("error_emails/bad_date_header.eml", "<HR>"),
])
def test_bad_date_gives_none_with_defect(name, raw_date):
    msg = load(name)
    assert msg.date is None
    assert msg.date_raw == raw_date
    assert any("Date header could not be read" in d for d in msg.defects)


@pytest.mark.parametrize("name", [
    "multipart_report_emails/multi_address_bounce1.eml",
    "multipart_report_emails/multi_address_bounce2.eml",
    "multipart_report_emails/multipart_report_multiple_status.eml",
    "multipart_report_emails/report_422.eml",
    "multipart_report_emails/report_530.eml",
    "mime_emails/raw_email_with_mimepart_without_content_type.eml",
])
def test_delivery_reports_are_flagged(name):
    msg = load(name)
    assert msg.is_delivery_report is True
    assert any(a.content_type == "message/delivery-status" for a in msg.attachments)


def test_ordinary_mail_is_not_a_delivery_report():
    flagged = [rel(p) for p in FILES if "report" not in rel(p) and rel(p) not in QUARANTINED
               and parse(p.read_bytes()).is_delivery_report]
    assert flagged == ["mime_emails/raw_email_with_mimepart_without_content_type.eml"]


def test_rfc6532_utf8_headers():
    msg = load("rfc6532/utf8_headers.eml")
    assert msg.subject == "Säying Hello"
    assert (msg.from_.name, msg.from_.address) == ("Jöhn Doe", "jdöe@xn--mchine-bua.example")


def test_latin1_subject_and_windows_1252_encoded_name():
    msg = load("error_emails/invalid_subject_characters.eml")
    assert msg.subject.startswith("Formação FrenetikPolis: Mega Campanha Final Verão")
    assert msg.from_.name == "Formação Frenetikpolis"
    assert len(msg.to) == 3


def test_obsolete_header_syntax_rfc2822_a_6_3():
    msg = load("rfc2822/example13.eml")
    assert msg.subject == "Saying Hello"
    assert msg.from_.address == "jdoe@machine.example"
    assert msg.to == [msg.to[0]] and msg.to[0].address == "mary@example.net"
    assert msg.message_id == "1234@local.machine.example"


def test_stray_line_among_headers_is_dropped():
    msg = load("plain_emails/raw_email_incorrect_header.eml")
    assert msg.subject == "Stop adware/spyware once and for all."
    assert msg.from_.address == "xxx@xxx.xxx"
    assert any("malformed header line was dropped" in d for d in msg.defects)


def test_illegal_unquoted_boundary_still_gives_bodies():
    msg = load("plain_emails/raw_email_bad_time.eml")
    assert "scanned for viruses" in msg.text_body
    assert "<" in msg.html_body
    assert msg.date is not None and msg.date.year == 3609  # parseable, if implausible


def test_message_id_with_several_at_signs_is_kept_whole():
    msg = load("plain_emails/raw_email_double_at_in_header.eml")
    assert msg.message_id == "d3b8cf8e49f0448085@0c28713a1@f473e@37signals.com"


def test_unknown_charset_body_is_decoded_with_defect():
    msg = load("plain_emails/raw_email10.eml")
    assert msg.text_body
    assert any("unknown charset 'X-UNKNOWN'" in d for d in msg.defects)


def test_unknown_encoded_word_charset_still_gives_subject():
    msg = load("error_emails/bad_encoded_subject.eml")
    assert msg.subject == "TEST"
    assert any("unknown charset 'NONE'" in d for d in msg.defects)


def test_thread_index_and_exchange_headers_are_kept():
    msg = load("error_emails/header_fields_with_empty_values.eml")
    assert msg.thread_index == "AcpZlFLF/Y9EfcC0QZKKEuUFm2Snqw=="
    assert msg.headers["thread-topic"] == "Testmail"
    assert msg.headers["X-MS-Exchange-Organization-AuthAs"] == "Anonymous"
    assert msg.from_.name == "Jørn Støylen"


def test_bulk_markers_are_visible_to_rules():
    assert load("error_emails/bad_date_header.eml").headers["precedence"] == "junk"
    assert "list-id" in load("error_emails/empty_in_reply_to.eml").headers
