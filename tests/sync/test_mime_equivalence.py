"""The sync parser (``server.sync.message.parse`` over ``server.sync.mime``) against the
stdlib's modern parser (``email.policy.default``), and its robustness on hostile input.
"""
from __future__ import annotations

from server.sync.message import MAX_FILENAME_BYTES, parse, safe_filename

from .conftest import build_raw


# --------------------------------------------------------------------------- regressions

def test_a_filename_with_a_long_extension_is_cut_not_looped_on():
    # safe_filename dropped stem characters until the name fitted: never, when the
    # extension alone was longer than the limit.
    assert safe_filename("a." + "x" * 300) == ("a." + "x" * 300)[:MAX_FILENAME_BYTES]
    assert safe_filename("é" * 150 + ".pdf") == "é" * 98 + ".pdf"
    raw = build_raw(body="%PDF", extra=[
        ("Content-Type", 'application/pdf; name="report.' + "x" * 5000 + '"')])
    (attachment,) = parse(raw).attachments
    assert attachment.filename.startswith("report.xxx")
    assert len(attachment.filename.encode("utf-8")) == MAX_FILENAME_BYTES
