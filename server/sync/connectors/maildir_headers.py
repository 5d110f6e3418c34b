"""Reading a Maildir message file's header section alone (``header_section``), for the Maildir
connector's header-first reads: the file is read unbuffered, a page at a time, up to the
blank line that ends its headers, so the body of all but the smallest messages stays on
disk."""
from __future__ import annotations

import re
from pathlib import Path

CHUNK = 4096  # most header sections fit in one or two
_BLANK_LINE = re.compile(rb"\n\r?\n")  # a line break, then an empty line (CRLF or LF)
_LEAD = b"\xef\xbb\xbf"  # a byte order mark, skipped before the headers as the parser does


def header_section(file: Path) -> bytes:
    """The bytes of ``file`` up to and including the blank line that ends its header section,
    CRLF or LF line breaks (IMAP's ``BODY[HEADER]``); the whole file when it has no blank
    line (a message without a body). A byte order mark and blank lines before the first
    header line are kept but do not end the section: the parser skips them too."""
    data = bytearray()
    start: int | None = None  # where the first header line starts, once it is read
    with file.open("rb", buffering=0) as fh:  # (a buffered read would read ahead)
        while chunk := fh.read(CHUNK):
            searched = len(data)
            data += chunk
            if start is None:
                rest = bytes(data).removeprefix(_LEAD).lstrip(b"\r\n")
                if not rest:
                    continue
                start = searched = len(data) - len(rest)
            # (two bytes back: a blank line may straddle two chunks)
            end = _BLANK_LINE.search(data, max(start, searched - 2))
            if end is not None:
                return bytes(data[:end.end()])
    return bytes(data)
