"""Microsoft Graph v1.0's own schema (``../shared/reference/msgraph-v1.0.csdl.xml``, read in
place) as a checker: ``Schema.check(type, value)`` lists what in a JSON value is not on that
entity or complex type with a compatible type, and ``Schema.check_request`` what a recorded
Graph request or answer of the fake does wrong (``$select``/``$expand``/``$filter``/
``$orderby`` names, the body written, the entity or page answered)."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
# ``../shared/reference`` beside the repository (from a worktree: beside a folder above it).
CSDL = next((p / "shared" / "reference" / "msgraph-v1.0.csdl.xml" for p in ROOT.parents
             if (p / "shared" / "reference" / "msgraph-v1.0.csdl.xml").exists()), None)
EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?(Z|[+-]\d{2}:\d{2})$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# Where a path under /users/{u} (or the root) leads: the entity type it reads or writes.
ROUTES = [
    (r"^/users/[^/]+$", "user"),
    (r"^/users/[^/]+/mailFolders/delta$", "mailFolder"),
    (r"^/users/[^/]+/mailFolders/[^/]+(/childFolders)?$", "mailFolder"),
    (r"^/users/[^/]+/mailFolders/[^/]+/messages/delta$", "message"),
    (r"^/users/[^/]+/messages(/[^/$]+)?$", "message"),
    (r"^/users/[^/]+/calendars$", "calendar"),
    (r"^/users/[^/]+/calendars/[^/]+/(calendarView/delta|events)$", "event"),
    (r"^/users/[^/]+/events/[^/]+(/instances)?$", "event"),
    (r"^/users/[^/]+/contactFolders$", "contactFolder"),
    (r"^/users/[^/]+/(contactFolders/[^/]+/)?contacts(/delta|/[^/]+)?$", "contact"),
    (r"^/users/[^/]+/todo/lists$", "todoTaskList"),
    (r"^/users/[^/]+/todo/lists/[^/]+/tasks(/delta|/[^/]+)?$", "todoTask"),
    (r"^/subscriptions(/[^/]+)?$", "subscription"),
]

# A bound action on an entity (``messages/{id}/move``): the entity type; the action is the
# last segment.
ACTION_ROUTES = [
    (r"^/users/[^/]+/messages/[^/]+/(\w+)$", "message"),
    (r"^/users/[^/]+/mailFolders/[^/]+/(\w+)$", "mailFolder"),
]


def route(path: str) -> str | None:
    return next((kind for pattern, kind in ROUTES if re.match(pattern, path)), None)


def action_route(path: str) -> tuple[str, str] | None:
    """(entity type, action name) of a bound action's path, or None."""
    for pattern, kind in ACTION_ROUTES:
        match = re.match(pattern, path)
        if match:
            return kind, match.group(1)
    return None


class Schema:
    def __init__(self, path: Path):
        root = ET.parse(path).getroot()
        self.types: dict[str, tuple[str | None, dict[str, str]]] = {}
        self.enums: dict[str, tuple[set[str], bool]] = {}
        # (binding type, action name) -> (its parameters' types by name, its return type)
        self.actions: dict[tuple[str, str], tuple[dict[str, str], str | None]] = {}
        for schema in root.iter(f"{EDM}Schema"):
            for node in schema:
                name = node.get("Name")
                if node.tag in (f"{EDM}EntityType", f"{EDM}ComplexType"):
                    props = {p.get("Name"): p.get("Type") for p in node
                             if p.tag in (f"{EDM}Property", f"{EDM}NavigationProperty")}
                    base = node.get("BaseType")
                    self.types[name] = (base.split(".")[-1] if base else None, props)
                elif node.tag == f"{EDM}Action" and node.get("IsBound") == "true":
                    params = [(p.get("Name"), p.get("Type")) for p in node.iter(f"{EDM}Parameter")]
                    returns = node.find(f"{EDM}ReturnType")
                    self.actions[(params[0][1].split(".")[-1], name)] = (
                        dict(params[1:]), returns.get("Type") if returns is not None else None)
                elif node.tag == f"{EDM}EnumType":
                    self.enums[name] = ({m.get("Name") for m in node.iter(f"{EDM}Member")},
                                        node.get("IsFlags") == "true")

    @cache
    def properties(self, name: str) -> dict[str, str]:
        base, props = self.types[name]
        return {**(self.properties(base) if base else {}), **props}

    def check(self, name: str, value, where: str = "") -> list[str]:
        """What in ``value`` (a JSON object of type ``name``) the schema does not allow."""
        if not isinstance(value, dict):
            return [f"{where or name}: {value!r} is not an object"]
        props = self.properties(name)
        wrong = []
        for key, item in value.items():
            if key.startswith("@") or "@odata." in key:
                continue
            if key not in props:
                wrong.append(f"{where or name}.{key}: no such property on {name}")
                continue
            wrong.extend(self.check_value(props[key], item, f"{where or name}.{key}"))
        return wrong

    def check_value(self, kind: str, value, where: str) -> list[str]:
        if value is None:
            return []
        if kind.startswith("Collection("):
            if not isinstance(value, list):
                return [f"{where}: {value!r} is not a list ({kind})"]
            return [w for i, item in enumerate(value)
                    for w in self.check_value(kind[11:-1], item, f"{where}[{i}]")]
        short = kind.split(".")[-1]
        if kind.startswith("Edm."):
            ok = {"String": lambda v: isinstance(v, str),
                  "Boolean": lambda v: isinstance(v, bool),
                  "Int32": lambda v: isinstance(v, int) and not isinstance(v, bool),
                  "Int64": lambda v: isinstance(v, int) and not isinstance(v, bool),
                  "Double": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
                  "DateTimeOffset": lambda v: isinstance(v, str) and bool(DATETIME.match(v)),
                  "Date": lambda v: isinstance(v, str) and bool(DATE.match(v)),
                  }.get(short, lambda v: True)(value)
            return [] if ok else [f"{where}: {value!r} is not {kind}"]
        if short in self.enums:
            members, flags = self.enums[short]
            parts = str(value).split(",") if flags else [value]
            bad = [p for p in parts if not isinstance(p, str) or p.strip() not in members]
            return [f"{where}: {value!r} is not a {short}"] if bad else []
        if short in self.types:
            return self.check(short, value, where)
        return []

    def check_action(self, method: str, path: str, bound: tuple[str, str], sent, status: int,
                     answer) -> list[str]:
        """A bound action's call (``POST messages/{id}/move``): the action is on the entity
        type, the body holds its parameters (named in camelCase on the wire, as Graph's
        documentation writes them: ``destinationId`` for ``DestinationId``) and the answer is
        its return type."""
        where = f"{method} {path}"
        if bound not in self.actions:
            return [f"{where}: no action {bound[1]} on {bound[0]}"]
        params, returns = self.actions[bound]
        wrong = [] if method == "POST" else [f"{where}: an action is called by POST"]
        by_name = {n[:1].lower() + n[1:]: t for n, t in params.items()}
        for key, value in (sent or {}).items():
            if key not in by_name:
                wrong.append(f"{where} body.{key}: no such parameter of {bound[1]}")
            else:
                wrong.extend(self.check_value(by_name[key], value, f"{where} body.{key}"))
        if returns and isinstance(answer, dict) and 200 <= status < 300:
            wrong.extend(self.check_value(returns, answer, f"{where} answer"))
        return wrong

    def check_names(self, name: str, names: list[str], where: str) -> list[str]:
        props = self.properties(name)
        return [f"{where}: {n} is not a property of {name}" for n in names if n not in props]

    def check_request(self, method: str, path: str, query: dict, sent, status: int,
                      answer) -> list[str]:
        """Everything a recorded exchange does that ``route(path)``'s type does not allow."""
        kind = route(path)
        if kind is None:
            bound = action_route(path)
            return self.check_action(method, path, bound, sent, status, answer) if bound else []
        where = f"{method} {path}"
        wrong = []
        for option in ("$select", "$orderby"):
            if option in query:
                names = [n.strip().split(" ")[0] for n in query[option].split(",") if n.strip()]
                wrong += self.check_names(kind, names, f"{where} {option}")
        if "$expand" in query:
            for part in re.findall(r"(\w+)(?:\(([^)]*)\))?", query["$expand"]):
                wrong += self.check_names(kind, [part[0]], f"{where} $expand")
                inner = re.search(r"\$select=([\w,]+)", part[1] or "")
                target = self.properties(kind).get(part[0], "")
                target = target[11:-1] if target.startswith("Collection(") else target
                if inner and target:
                    wrong += self.check_names(target.split(".")[-1], inner.group(1).split(","),
                                              f"{where} $expand {part[0]}")
        if "$filter" in query:
            names = set(re.findall(r"\b([a-zA-Z]\w*)\s+(?:eq|ne|gt|ge|lt|le)\b", query["$filter"]))
            wrong += self.check_names(kind, sorted(names), f"{where} $filter")
        if method in ("POST", "PATCH") and isinstance(sent, dict):
            wrong += self.check(kind, sent, f"{where} body")
        if isinstance(answer, dict) and 200 <= status < 300:
            rows = answer["value"] if isinstance(answer.get("value"), list) else [answer]
            for row in rows:
                wrong += self.check(kind, row, f"{where} answer")
        return wrong
