"""A reader of fetchmail's run control file (``.fetchmailrc``), for importing the mailboxes
people polled with fetchmail or with Dynamics' retired Email Router, which kept the same
facts: for each user of each server, the server (or its ``via`` host), protocol, port, TLS,
the remote login and password, the local names mail went to and the folders read.

The syntax follows fetchmail's manual: ``#`` comments to the end of a line; strings in
double or single quotes with backslash escapes (``\\"``, ``\\\\``, ``\\n``, ``\\t``, octal
``\\ooo`` and hex ``\\xHH``); the noise words ``and with has wants options`` and the
punctuation ``: ; ,`` are ignored; ``set ...`` lines are global options; ``defaults`` gives
options the following ``poll`` entries start from; ``poll``/``skip``/``server`` start a
server entry whose ``user``/``username`` clauses start user entries (``there``/``here``
mark which side a name is on, ``is``/``to`` list local names, ``folder(s)`` lists folders,
``no`` negates the option after it). Options of no interest to the CRM are read with their
arguments and ignored, so a file full of them still parses. A quoted string is always a
value, never a keyword.

``parse`` never raises for bad input: an entry it cannot read becomes an ``Entry`` with a
``problem`` (and the line it starts on), and reading resumes at the next ``poll``, ``skip``,
``defaults`` or ``set``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

__all__ = ["Entry", "Token", "parse", "quote", "tokens"]

NOISE = frozenset({"and", "with", "has", "wants", "options"})
STARTS = frozenset({"poll", "skip", "server", "defaults", "set"})
# Options and how many values each takes: an int, or "list" (values up to the next keyword).
SERVER_OPTIONS: dict[str, int | str] = {
    "via": 1, "proto": 1, "protocol": 1, "port": 1, "service": 1, "auth": 1,
    "authenticate": 1, "timeout": 1, "interval": 1, "envelope": 1, "qvirtual": 1,
    "principal": 1, "plugin": 1, "plugout": 1, "interface": 1, "monitor": 1,
    "esmtpname": 1, "esmtppassword": 1, "bad-header": 1, "tracepolls": 0, "dns": 0,
    "uidl": 0, "checkalias": 0, "aka": "list", "localdomains": "list",
}
USER_OPTIONS: dict[str, int | str] = {
    "user": 1, "username": 1, "pass": 1, "password": 1, "is": "list", "to": "list",
    "folder": "list", "folders": "list", "here": 0, "there": 0, "ssl": 0, "sslcert": 1,
    "sslkey": 1, "sslproto": 1, "sslcertck": 0, "sslcertfile": 1, "sslcertpath": 1,
    "sslfingerprint": 1, "sslcommonname": 1, "keep": 0, "nokeep": 0, "fetchall": 0,
    "flush": 0, "limitflush": 0, "rewrite": 0, "stripcr": 0, "forcecr": 0, "pass8bits": 0,
    "dropstatus": 0, "dropdelivered": 0, "mimedecode": 0, "idle": 0, "lmtp": 0,
    "smtphost": "list", "fetchdomains": "list", "antispam": "list", "smtpaddress": 1,
    "smtpname": 1, "mda": 1, "bsmtp": 1, "preconnect": 1, "postconnect": 1, "limit": 1,
    "warnings": 1, "batchlimit": 1, "fetchlimit": 1, "fetchsizelimit": 1, "fastuidl": 1,
    "expunge": 1, "properties": 1, "showdots": 0, "tracepolls": 0, "envelope": 1,
}
KEYWORDS = STARTS | SERVER_OPTIONS.keys() | USER_OPTIONS.keys() | {"no"}
_ESCAPES = {"n": "\n", "t": "\t", "b": "\b", "r": "\r", "\\": "\\", '"': '"', "'": "'"}
_WORD = re.compile(r"[^\s:;,\"'#]+")


class _Unreadable(Exception):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line, self.message = line, message


@dataclass(frozen=True)
class Token:
    text: str
    line: int
    quoted: bool = False

    def keyword(self) -> str | None:
        """The keyword this token is (lower case), or None for a value."""
        if self.quoted:
            return None
        word = self.text.lower()
        return word if word in KEYWORDS or word in NOISE else None


@dataclass(frozen=True)
class Entry:
    """One user of one server (or an entry that could not be read: ``problem``)."""
    line: int
    server: str | None = None
    via: str | None = None
    protocol: str | None = None
    port: int | None = None
    ssl: bool = False
    user: str | None = None
    password: str | None = None
    local_names: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()
    skipped: bool = False  # a "skip" entry: fetchmail does not poll it
    problem: str | None = None

    @property
    def host(self) -> str | None:
        return self.via or self.server


def _string(text: str, start: int, line: int) -> tuple[str, int, int]:
    """The quoted string starting at ``start`` (its quote); (value, end, line at end)."""
    quote_char, out, i = text[start], [], start + 1
    while i < len(text):
        ch = text[i]
        if ch == quote_char:
            return "".join(out), i + 1, line
        if ch == "\n":
            line += 1
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            octal = re.match(r"[0-7]{3}", text[i + 1:i + 4])
            hexa = re.match(r"x([0-9A-Fa-f]{2})", text[i + 1:i + 4])
            if octal:
                out.append(chr(int(octal.group(0), 8)))
                i += 4
            elif hexa:
                out.append(chr(int(hexa.group(1), 16)))
                i += 4
            else:
                out.append(_ESCAPES.get(nxt, nxt))
                line += nxt == "\n"
                i += 2
            continue
        out.append(ch)
        i += 1
    raise _Unreadable(line, "a quoted string is not closed")


def tokens(text: str) -> list[Token]:
    """The file's tokens; raises ``_Unreadable`` for a string left open."""
    out: list[Token] = []
    i, line = 0, 1
    while i < len(text):
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
        elif ch.isspace() or ch in ":;,":
            i += 1
        elif ch == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif ch in "\"'":
            value, i, end_line = _string(text, i, line)
            out.append(Token(value, line, quoted=True))
            line = end_line
        else:
            word = _WORD.match(text, i).group(0)
            out.append(Token(word, line))
            i += len(word)
    return out


def quote(value: str) -> str:
    """``value`` as a fetchmailrc string (for writing files, and for tests)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class _Reader:
    def __init__(self, toks: list[Token]):
        self.toks, self.i = toks, 0

    def peek(self) -> Token | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            last = self.toks[-1].line if self.toks else 1
            raise _Unreadable(last, "the file ends in the middle of an option")
        self.i += 1
        return tok

    def values(self, name: str, count: int | str, line: int) -> list[str]:
        if count == "list":  # noise words between the values are dropped, as anywhere
            found = []
            while (tok := self.peek()) is not None and (tok.keyword() is None
                                                         or tok.keyword() in NOISE):
                self.take()
                if tok.keyword() is None:
                    found.append(tok.text)
            if not found:
                raise _Unreadable(line, f'"{name}" needs at least one value')
            return found
        found = []
        for _ in range(int(count)):
            tok = self.peek()
            if tok is not None and tok.keyword() is not None:  # left for the next statement
                raise _Unreadable(tok.line, f'"{name}" needs a value, not "{tok.text}"')
            found.append(self.take().text)
        return found

    def resync(self) -> None:
        while (tok := self.peek()) is not None and tok.keyword() not in STARTS:
            self.i += 1


def _server_option(entry: Entry, name: str, values: list[str], negated: bool, line: int) -> Entry:
    if name in ("proto", "protocol"):
        return replace(entry, protocol=values[0].lower())
    if name == "via":
        return replace(entry, via=values[0])
    if name in ("port", "service"):
        if not values[0].isdigit() or not 0 < int(values[0]) < 65536:
            raise _Unreadable(line, f'the port "{values[0]}" is not a number from 1 to 65535')
        return replace(entry, port=int(values[0]))
    return entry


def _user_option(entry: Entry, name: str, values: list[str], negated: bool) -> Entry:
    if name in ("user", "username"):
        return replace(entry, user=values[0])
    if name in ("pass", "password"):
        return replace(entry, password=values[0])
    if name in ("is", "to"):
        return replace(entry, local_names=entry.local_names + tuple(values))
    if name in ("folder", "folders"):
        return replace(entry, folders=entry.folders + tuple(values))
    if name == "ssl":
        return replace(entry, ssl=not negated)
    return entry


def _statement(reader: _Reader, defaults: Entry) -> tuple[list[Entry], Entry]:
    """One statement: (its user entries, the defaults for what follows)."""
    start = reader.take()
    word = start.keyword()
    if word == "set":
        reader.take()  # the setting's name; its value (if any) is skipped by resync
        reader.resync()
        return [], defaults
    if word not in ("poll", "skip", "server", "defaults"):
        raise _Unreadable(start.line, f'"{start.text}" where poll, skip, defaults or set '
                                      "was expected")
    base = replace(defaults, line=start.line, skipped=word == "skip", problem=None)
    if word != "defaults":
        base = replace(base, server=reader.values(word, 1, start.line)[0])
    users: list[Entry] = []
    current: Entry | None = None
    negated = False
    while (tok := reader.peek()) is not None and tok.keyword() not in STARTS:
        reader.take()
        name = tok.keyword()
        if name is None:
            raise _Unreadable(tok.line, f'"{tok.text}" is not an option fetchmail knows')
        if name in NOISE:
            continue
        if name == "no":
            negated = True
            continue
        if name in ("user", "username"):
            current = replace(base, line=tok.line, user=None)
            users.append(current)
        if current is None and name in SERVER_OPTIONS:
            base = _server_option(base, name, reader.values(name, SERVER_OPTIONS[name],
                                                            tok.line), negated, tok.line)
        elif name in USER_OPTIONS:
            values = reader.values(name, USER_OPTIONS[name], tok.line)
            target = current if current is not None else base
            target = _user_option(target, name, values, negated)
            if current is not None:
                current = users[-1] = target
            else:
                base = target
        else:
            values = reader.values(name, SERVER_OPTIONS[name], tok.line)
            current = users[-1] = _server_option(current, name, values, negated, tok.line)
        negated = False
    if word == "defaults":
        return [], base
    if not users:
        raise _Unreadable(start.line, f"the entry for {base.server} names no user")
    return users, defaults


def parse(text: str) -> list[Entry]:
    """Every user entry of a fetchmailrc, in order; unreadable entries carry a problem."""
    try:
        toks = tokens(text)
    except _Unreadable as exc:
        return [Entry(line=exc.line, problem=exc.message)]
    reader, defaults = _Reader(toks), Entry(line=0)
    out: list[Entry] = []
    while reader.peek() is not None:
        at = reader.i
        try:
            entries, defaults = _statement(reader, defaults)
            out += entries
        except _Unreadable as exc:
            named = toks[at + 1] if at + 1 < len(toks) and toks[at].keyword() in (
                "poll", "skip", "server") else None
            line = toks[at].line
            where = f" (line {exc.line})" if exc.line != line else ""
            out.append(Entry(line=line, problem=exc.message + where,
                             server=named.text if named is not None else None))
            if reader.i == at:
                reader.i += 1  # a stray word where a statement should start
            reader.resync()
    return out
