"""Charset labels and text decoding for mail: the WHATWG Encoding Standard's label table,
the mail world's own aliases, and decoding that never raises.

A label is looked up in ``MAIL_LABELS`` (labels mail uses that the standard does not list,
or where mail needs a different reading), then in ``WHATWG_LABELS`` (every label of the
standard's table, https://encoding.spec.whatwg.org/#names-and-labels, mapped to the Python
codec that decodes it), then by Python's own codec registry. Deliberate differences from
the standard: labels the standard maps to "replacement" decode with Python's real codec
where it has one (ISO-2022-KR, HZ), since in mail they name real text; UTF-7 is a mail
charset (RFC 2152) the standard leaves out.

Raw 8-bit header bytes (no charset at all) are read as UTF-8, replacing only the bad bytes
(a name cut in the middle of a character keeps the rest), and as a legacy charset only when
UTF-8 clearly fails.
"""
from __future__ import annotations

import codecs
import re

__all__ = ["MAIL_LABELS", "WHATWG_LABELS", "codec_for", "decode_bytes", "decode_raw_header_bytes",
           "fix_surrogates", "repair_raw", "unfold"]


def _labels(table: dict[str, str]) -> dict[str, str]:
    """``{"codec": "label label ..."}`` -> ``{label: codec}``."""
    return {label: codec for codec, labels in table.items() for label in labels.split()}


# The Encoding Standard's table: encoding (as the Python codec that decodes it) -> labels.
WHATWG_LABELS = _labels({
    "utf-8": "unicode-1-1-utf-8 unicode11utf8 unicode20utf8 utf-8 utf8 x-unicode20utf8",
    "cp866": "866 cp866 csibm866 ibm866",
    "iso8859_2": "csisolatin2 iso-8859-2 iso-ir-101 iso8859-2 iso88592 iso_8859-2 "
                 "iso_8859-2:1987 l2 latin2",
    "iso8859_3": "csisolatin3 iso-8859-3 iso-ir-109 iso8859-3 iso88593 iso_8859-3 "
                 "iso_8859-3:1988 l3 latin3",
    "iso8859_4": "csisolatin4 iso-8859-4 iso-ir-110 iso8859-4 iso88594 iso_8859-4 "
                 "iso_8859-4:1988 l4 latin4",
    "iso8859_5": "csisolatincyrillic cyrillic iso-8859-5 iso-ir-144 iso8859-5 iso88595 "
                 "iso_8859-5 iso_8859-5:1988",
    "iso8859_6": "arabic asmo-708 csiso88596e csiso88596i csisolatinarabic ecma-114 iso-8859-6 "
                 "iso-8859-6-e iso-8859-6-i iso-ir-127 iso8859-6 iso88596 iso_8859-6 "
                 "iso_8859-6:1987",
    "iso8859_7": "csisolatingreek ecma-118 elot_928 greek greek8 iso-8859-7 iso-ir-126 "
                 "iso8859-7 iso88597 iso_8859-7 iso_8859-7:1987 sun_eu_greek",
    "iso8859_8": "csiso88598e csisolatinhebrew hebrew iso-8859-8 iso-8859-8-e iso-ir-138 "
                 "iso8859-8 iso88598 iso_8859-8 iso_8859-8:1988 visual "
                 "csiso88598i iso-8859-8-i logical",  # ISO-8859-8-I: the same bytes
    "iso8859_10": "csisolatin6 iso-8859-10 iso-ir-157 iso8859-10 iso885910 l6 latin6",
    "iso8859_13": "iso-8859-13 iso8859-13 iso885913",
    "iso8859_14": "iso-8859-14 iso8859-14 iso885914",
    "iso8859_15": "csisolatin9 iso-8859-15 iso8859-15 iso885915 iso_8859-15 l9",
    "iso8859_16": "iso-8859-16",
    "koi8_r": "cskoi8r koi koi8 koi8-r koi8_r",
    "koi8_u": "koi8-ru koi8-u",
    "mac_roman": "csmacintosh mac macintosh x-mac-roman",
    "cp874": "dos-874 iso-8859-11 iso8859-11 iso885911 tis-620 windows-874",
    "cp1250": "cp1250 windows-1250 x-cp1250",
    "cp1251": "cp1251 windows-1251 x-cp1251",
    "cp1252": "ansi_x3.4-1968 ascii cp1252 cp819 csisolatin1 ibm819 iso-8859-1 iso-ir-100 "
              "iso8859-1 iso88591 iso_8859-1 iso_8859-1:1987 l1 latin1 us-ascii "
              "windows-1252 x-cp1252",
    "cp1253": "cp1253 windows-1253 x-cp1253",
    "cp1254": "cp1254 csisolatin5 iso-8859-9 iso-ir-148 iso8859-9 iso88599 iso_8859-9 "
              "iso_8859-9:1989 l5 latin5 windows-1254 x-cp1254",
    "cp1255": "cp1255 windows-1255 x-cp1255",
    "cp1256": "cp1256 windows-1256 x-cp1256",
    "cp1257": "cp1257 windows-1257 x-cp1257",
    "cp1258": "cp1258 windows-1258 x-cp1258",
    "mac_cyrillic": "x-mac-cyrillic x-mac-ukrainian",
    # The standard's GBK decoder is its gb18030 decoder.
    "gb18030": "chinese csgb2312 csiso58gb231280 gb2312 gb_2312 gb_2312-80 gbk iso-ir-58 x-gbk "
               "gb18030",
    "big5hkscs": "big5 big5-hkscs cn-big5 csbig5 x-x-big5",
    "euc_jp": "cseucpkdfmtjapanese euc-jp x-euc-jp",
    "iso2022_jp": "csiso2022jp iso-2022-jp",
    "cp932": "csshiftjis ms932 ms_kanji shift-jis shift_jis sjis windows-31j x-sjis",
    # The standard's EUC-KR is Windows-949 (Unified Hangul Code).
    "cp949": "cseuckr csksc56011987 euc-kr iso-ir-149 korean ks_c_5601-1987 ks_c_5601-1989 "
             "ksc5601 ksc_5601 windows-949",
    "replacement": "csiso2022kr hz-gb-2312 iso-2022-cn iso-2022-cn-ext iso-2022-kr replacement",
    "utf-16-be": "unicodefffe utf-16be",
    "utf-16-le": "csunicode iso-10646-ucs-2 ucs-2 unicode unicodefeff utf-16 utf-16le",
    "x-user-defined": "x-user-defined",
})

# Labels mail uses that the standard does not list, or reads otherwise (see the docstring).
MAIL_LABELS = _labels({
    "utf-7": "utf-7 utf7 unicode-1-1-utf-7 x-unicode20utf7 csunicode11utf7",
    "iso2022_kr": "csiso2022kr iso-2022-kr",
    "hz": "hz-gb-2312",
    "cp949": "ks_c_5601 euc_kr x-windows-949",
    "cp932": "x-ms-cp932 shift_jisx0213",
    "gb18030": "cp936 euc-cn x-euc-cn x-mac-chinesesimp",
    "cp950": "x-mac-chinesetrad",
    "mac_greek": "x-mac-greek", "mac_turkish": "x-mac-turkish", "mac_iceland": "x-mac-icelandic",
    "mac_latin2": "x-mac-ce x-mac-centraleurroman", "mac_croatian": "x-mac-croatian",
    "mac_romanian": "x-mac-romanian", "mac_farsi": "x-mac-farsi", "mac_arabic": "x-mac-arabic",
    "cp1252": "iso_8859-1 latin-1 x-ansi ansi default",
    "utf-8": "utf8mb4 x-utf-8 x-utf8",
})

# Codecs tried in order for a label's codec: supersets in mail practice.
_CHAINS = {
    "iso2022_jp": ("iso2022_jp", "iso2022_jp_ext", "iso2022_jp_2", "iso2022_jp_3"),
    "big5hkscs": ("cp950", "big5hkscs"),
    "big5": ("cp950", "big5hkscs"),
    "euc_jp": ("euc_jp", "euc_jis_2004"),
}
# Single-byte codecs: a byte they leave undefined reads as the C1 control of that number,
# as the standard's indexes have it (Windows-1252's 0x81, 0x8D, 0x8F, 0x90, 0x9D).
_SINGLE_BYTE = re.compile(r"cp12[0-9]{2}|cp874|cp866|iso8859-[0-9]+|koi8-[a-z]|mac-[a-z0-9]+")
_ESCAPED = re.compile("[\udc80-\udcff]")
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
         (codecs.BOM_UTF16_BE, "utf-16-be"))


def codec_for(label: str | None) -> str | None:
    """The Python codec a charset label names, through the tables; None when unknown (or
    the standard's "replacement" encoding with no real codec behind it)."""
    if not label:
        return None
    label = label.strip().strip("\"'").strip().lower()
    codec = MAIL_LABELS.get(label) or WHATWG_LABELS.get(label) or label
    if codec == "x-user-defined":
        return codec
    try:
        return codecs.lookup(codec).name
    except LookupError:
        return None


def _chain(label: str | None) -> tuple[str, ...]:
    codec = codec_for(label)
    return _CHAINS.get(codec, (codec,)) if codec else ()


def _decode_user_defined(data: bytes) -> str:
    """The standard's x-user-defined: ASCII, and 0x80-0xFF to U+F780-U+F7FF."""
    return "".join(chr(b) if b < 0x80 else chr(0xF700 + b) for b in data)


def _decode_single_byte(data: bytes, codec: str) -> str:
    text = data.decode(codec, "surrogateescape")
    return _ESCAPED.sub(lambda m: chr(ord(m.group(0)) - 0xDC00), text)


def _decode_windows(data: bytes) -> str:
    return _decode_single_byte(data, "cp1252")


def _utf8_or_none(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _mostly_utf8(data: bytes) -> str | None:
    """``data`` as UTF-8 with only its bad bytes replaced, when the valid multibyte
    characters are at least as many as the bad sequences; else None (UTF-8 clearly fails)."""
    text = data.decode("utf-8", "replace")
    bad = text.count("\ufffd") - data.count(b"\xef\xbf\xbd")
    good = sum(1 for ch in text if ord(ch) > 0x7F and ch != "\ufffd")
    return text if good and bad <= good else None


def decode_bytes(data: bytes, charset: str | None, defects: list[str] | None = None,
                 what: str = "text") -> str:
    """Decode text bytes labelled ``charset``; never raises, notes problems in ``defects``."""
    notes = defects if defects is not None else []
    # A byte order mark overrides a Unicode label or none, as the standard's decode does.
    for bom, codec in _BOMS:
        if data.startswith(bom) and codec_for(charset) in (None, "utf-8", "utf-16-le", "utf-16-be"):
            return data[len(bom):].decode(codec, "replace")
    chain = _chain(charset)
    if chain == ("x-user-defined",):
        return _decode_user_defined(data)
    utf8 = None if data.isascii() else _utf8_or_none(data)
    if chain and chain[0] == "cp1252" and utf8 is not None:
        # 8-bit text labelled ASCII/Latin-1 that is valid UTF-8 is UTF-8: Latin-1 prose is
        # practically never valid UTF-8 by accident, and mislabelled UTF-8 is common.
        notes.append(f"the {what} is labelled {charset!r} but is UTF-8")
        return utf8
    for codec in chain:
        if _SINGLE_BYTE.fullmatch(codec):
            return _decode_single_byte(data, codec)
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
    text = data.decode("ascii") if data.isascii() else utf8
    if charset and not chain:
        how = "UTF-8" if text is not None else "Windows-1252"
        notes.append(f"unknown charset {charset!r} in the {what}; decoded as {how}")
    elif chain and text is not None:
        actual = "ASCII" if data.isascii() else "UTF-8"
        notes.append(f"the {what} is labelled {charset!r} but is {actual}")
    elif chain:
        notes.append(f"the {what} is not valid {charset!r}; some characters were replaced")
        return data.decode(chain[0], "replace")
    return text if text is not None else _decode_windows(data)


# --------------------------------------------------------------------------- raw 8-bit headers

_SURROGATES = re.compile("[\udc80-\udcff]+")
_FOLD = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")
# An encoded word as it may appear in a raw header, raw 8-bit bytes (surrogates) inside.
_RAW_ENCODED_WORD = re.compile(r"=\?[^?\s*]+(?:\*[^?\s]*)?\?[bBqQ]\?[^?\s]*\?=")


def unfold(value: str) -> str:
    """A header value on one line: folding line breaks removed."""
    if "\n" not in value and "\r" not in value:
        return value
    return _FOLD.sub("", value).replace("\r", "").replace("\n", "")


def fix_surrogates(text: str, hint: str | None = None) -> str:
    """Turn surrogate-escaped raw bytes (left by the parser) back into real characters."""
    if not _SURROGATES.search(text):
        return text

    def repl(match: re.Match[str]) -> str:
        raw = match.group(0).encode("utf-8", "surrogateescape")
        return decode_raw_header_bytes(raw, hint)

    return _SURROGATES.sub(repl, text)


def repair_raw(value: str, hint: str | None) -> tuple[str, bool]:
    """A raw header value as the parser left it (8-bit bytes surrogate-escaped), decoded
    whole: in Big5 or Shift_JIS a trail byte may be plain ASCII. Raw bytes inside encoded
    words stay escaped: their word's charset decodes them. The flag says the bytes were not
    UTF-8, so their charset was guessed."""
    if not _SURROGATES.search(value):
        return unfold(value), False
    pieces, guessed, position = [], False, 0
    for word in [*_RAW_ENCODED_WORD.finditer(value), None]:
        end = word.start() if word else len(value)
        text, unsure = _repair_segment(value[position:end], hint)
        pieces.append(text)
        guessed = guessed or unsure
        if word:
            pieces.append(word.group(0))
            position = word.end()
    return unfold("".join(pieces)), guessed


def _repair_segment(text: str, hint: str | None) -> tuple[str, bool]:
    if not _SURROGATES.search(text):
        return text, False
    raw = text.encode("utf-8", "surrogateescape")
    utf8 = _utf8_or_none(raw)
    if utf8 is not None:
        return utf8, False
    return decode_raw_header_bytes(raw, hint), True


def decode_raw_header_bytes(raw: bytes, hint: str | None) -> str:
    """Unlabelled 8-bit header bytes: UTF-8 (its bad bytes replaced unless it clearly
    fails), the message's charset, then Windows-1252."""
    mostly = _mostly_utf8(raw)
    if mostly is not None:
        return mostly
    for codec in _chain(hint):
        if codec in ("cp1252", "latin-1", "utf-8"):
            break
        try:
            return raw.decode(codec)
        except UnicodeDecodeError:
            continue
    return _decode_windows(raw)
