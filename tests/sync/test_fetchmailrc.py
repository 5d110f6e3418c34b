"""The fetchmailrc reader: generated files (any mix of quoting, noise words, punctuation,
comments, line breaks, option order and options of no interest) read back to what was
written; broken entries become problems on their own lines while the rest still read."""
from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from server.sync.admin.fetchmailrc import KEYWORDS, NOISE, parse, quote

_bare = st.text(string.ascii_letters + string.digits + "-_.@", min_size=1, max_size=20) \
    .filter(lambda w: w.lower() not in KEYWORDS | NOISE and not w[0] in "-")
_any = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"),
               min_size=1, max_size=20)
_host = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,10}){1,3}", fullmatch=True) \
    .filter(lambda h: h.lower() not in KEYWORDS)
_noise = st.sampled_from(["", " with", " and", " has", ":", ";", ",", " wants", " options"])
_gap = st.sampled_from([" ", "\n  ", "\t", " # a comment, with 'quotes' and \"poll\"\n   "])
_ignored = st.sampled_from(["fetchall", "keep", "no keep", "nokeep", "flush", "limit 20000",
                            "mda \"/usr/bin/procmail -d %T\"", "smtphost localhost", "idle",
                            "sslproto TLS1.2", "fetchlimit 50", "stripcr", "no rewrite"])


@st.composite
def _value(draw, text=None):
    """A value and how it is written: bare when it can be, else quoted (or quoted anyway)."""
    value = draw(text if text is not None else st.one_of(_bare, _any))
    bare_ok = all(ch in string.ascii_letters + string.digits + "-_.@" for ch in value) \
        and value.lower() not in KEYWORDS | NOISE and not value.startswith("-")
    written = value if bare_ok and draw(st.booleans()) else quote(value)
    if not bare_ok or written != value:
        written = quote(value) if draw(st.booleans()) or "'" in value or "\n" in value \
            else "'" + value.replace("\\", "\\\\") + "'"
    return value, written


@st.composite
def _entry(draw):
    host = draw(_host)
    protocol = draw(st.sampled_from(["imap", "pop3", "IMAP", "POP3"]))
    port = draw(st.none() | st.integers(1, 65535))
    ssl = draw(st.booleans())
    via = draw(st.none() | _host)
    user, user_text = draw(_value())
    password, password_text = draw(_value())
    locals_ = draw(st.lists(_value(_bare), min_size=1, max_size=3))
    folders = draw(st.lists(_value(), max_size=3))
    g = lambda: draw(_gap)  # noqa: E731
    n = lambda: draw(_noise)  # noqa: E731
    parts = [f"poll{g()}{host}"]
    server_opts = [f"proto{g()}{protocol}"]
    if via:
        server_opts.append(f"via{g()}{via}")
    if port is not None:
        server_opts.append(f"{draw(st.sampled_from(['port', 'service']))}{g()}{port}")
    parts += draw(st.permutations(server_opts))
    parts.append(f"{n()}{g()}user{g()}{user_text}{g()}there{n()}")
    user_opts = [f"password{g()}{password_text}",
                 "is " + ", ".join(w for _, w in locals_) + f"{g()}here",
                 *draw(st.lists(_ignored, max_size=3))]
    if folders:
        user_opts.append("folder " + n().join(f" {w}" for _, w in folders))
    if ssl:
        user_opts.append("ssl")
    parts += draw(st.permutations(user_opts))
    text = g().join(parts) + "\n"
    expected = (host, via, protocol.lower(), port, ssl, user, password,
                tuple(v for v, _ in locals_), tuple(v for v, _ in folders))
    return text, expected


def _facts(e):
    return (e.server, e.via, e.protocol, e.port, e.ssl, e.user, e.password, e.local_names,
            e.folders)


@settings(max_examples=100, deadline=None)
@given(st.lists(_entry(), min_size=1, max_size=4), st.booleans())
def test_generated_files_read_back_to_what_was_written(entries, with_globals):
    head = 'set daemon 300\nset postmaster "root"\n# polled servers\n' if with_globals else ""
    got = parse(head + "\n".join(text for text, _ in entries))
    assert [e.problem for e in got] == [None] * len(entries)
    assert [_facts(e) for e in got] == [expected for _, expected in entries]


@settings(max_examples=50, deadline=None)
@given(st.lists(_entry(), min_size=2, max_size=4), st.data())
def test_a_broken_entry_is_reported_on_its_line_and_the_others_still_read(entries, data):
    broken_at = data.draw(st.integers(0, len(entries) - 1))
    breakage = data.draw(st.sampled_from([
        "poll broken.example proto imap user\n",  # a user without a name
        "poll broken.example proto imap port 70000 user x is y\n",
        "poll broken.example proto imap user x frobnicate is y\n",
        "poll broken.example proto imap\n",  # no user at all
    ]))
    texts = [text for text, _ in entries]
    texts.insert(broken_at, breakage)
    body = "\n".join(texts)
    got = parse(body)
    problems = [e for e in got if e.problem]
    assert len(problems) == 1 and problems[0].server == "broken.example"
    line_of_break = body[:body.index(breakage)].count("\n") + 1
    assert problems[0].line == line_of_break
    assert [_facts(e) for e in got if not e.problem] == [expected for _, expected in entries]


def test_defaults_skip_entries_and_an_unclosed_string():
    got = parse("defaults proto pop3 ssl\nskip old.example user a is b\n"
                "poll new.example user 'c' is d no ssl\n")
    assert [(e.server, e.protocol, e.ssl, e.skipped) for e in got] == [
        ("old.example", "pop3", True, True), ("new.example", "pop3", False, False)]
    assert parse('poll x user "never closed\n')[0].problem == "a quoted string is not closed"
    escaped = parse(r'poll x user "a\"b\\c\x41\101\tz" is y')[0]
    assert escaped.user == 'a"b\\cAA\tz'
