"""The house rules of ``server/``, read from the source with ``ast`` (no import, no new tool).

What fails the build (docs/architecture.md says why each rule is there):

- an import cycle between modules (imports inside functions count: a lazy import hides a
  cycle, it does not remove it);
- a package importing one above it (``LAYERS``): ``crm`` importing ``web``, ``sync`` or
  ``addin``, ``security`` importing crm's services, the add-in importing the sync, and so
  on;
- a connector importing anything of the project but its own helpers and
  ``connectors/base``;
- ``server.web`` imported by anything but the app factory (``server/__init__.py``) and
  ``web`` itself;
- composition by string (``importlib``, ``__import__``);
- a module over 600 lines (migrations excepted).
"""
from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "server"
MAX_LINES = 600

# Floors of the house, lowest first: a module may import its own floor and the ones below.
# A module belongs to the floor of the longest prefix that names it.
LAYERS: list[tuple[str, ...]] = [
    ("server.errors", "server.db", "server.bulk", "server.config", "server.mailkeys", "server.tls",
     "server.i18n", "server.ical_text"),
    ("server.crm",),  # tables and pure helpers
    ("server.security",),
    ("server.crm.services",),
    ("server.addin",),
    ("server.sync.mail",),
    ("server.sync.items",),  # iCalendar/vCard <-> CRM values: pure, beside the mail parsers
    ("server.sync.connectors",),
    ("server.sync",),
    ("server.demo", "server.demo_data", "server.cli"),
    ("server.web",),
    ("server", "server.wsgi"),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SERVER.rglob("*.py"))
            if "migrations" not in p.relative_to(SERVER).parts}


def _is_package(name: str) -> bool:
    return modules()[name].name == "__init__.py"


def _resolve(name: str) -> str | None:
    """The project module ``name`` refers to: itself, else its nearest enclosing package."""
    while name:
        if name in modules():
            return name
        name = name.rpartition(".")[0]
    return None


@cache
def imports(name: str) -> frozenset[str]:
    """The project modules that module ``name`` imports, anywhere in its body."""
    tree = ast.parse(modules()[name].read_text(), str(modules()[name]))
    package = name if _is_package(name) else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # "from package import module" imports the module; otherwise the package
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules() else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] == "server":
                resolved = _resolve(target)
                if resolved and resolved != name:
                    found.add(resolved)
    return frozenset(found)


def _floor(name: str) -> int:
    best, floor = -1, None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, floor = len(prefix), index
    assert floor is not None, f"{name} is on no floor of LAYERS"
    return floor


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(imports(v)):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(modules()):
        if v not in index:
            visit(v)
    return out


def _imports_of_parent(name: str, target: str) -> bool:
    """A package's modules may import the package itself (its __init__) without a cycle
    being meant; only real module-to-module edges count."""
    return name.startswith(target + ".") and _is_package(target)


def test_no_import_cycles():
    cycles = [c for c in _cycles()
              if not all(_imports_of_parent(a, b) or _imports_of_parent(b, a)
                         for a in c for b in c if a != b and b in imports(a))]
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_imports_flow_down_the_floors():
    wrong = sorted(f"{name} imports {target}"
                   for name in modules() for target in imports(name)
                   if _floor(target) > _floor(name) and not _imports_of_parent(name, target))
    assert not wrong, "imports that go up a floor:\n" + "\n".join(wrong)


@pytest.mark.parametrize("package", ["web", "sync", "addin"])
def test_crm_does_not_import(package):
    wrong = sorted(f"{name} imports {target}" for name in modules() if name.startswith("server.crm")
                   for target in imports(name) if target.startswith(f"server.{package}"))
    assert not wrong, "\n".join(wrong)


# Codecs of the ground floor that import nothing of the project: a connector may use them as
# it would a library (one RFC 5545 text codec for the connectors, the mail and the items).
CODECS = ("server.ical_text",)


def test_connectors_import_only_their_helpers_and_base():
    wrong = sorted(f"{name} imports {target}"
                   for name in modules() if name.startswith("server.sync.connectors.")
                   for target in imports(name)
                   if not target.startswith("server.sync.connectors") and target not in CODECS)
    assert not wrong, "\n".join(wrong)


def test_the_codecs_import_nothing_of_the_project():
    assert {codec: sorted(imports(codec)) for codec in CODECS} == {codec: [] for codec in CODECS}


def test_web_is_imported_only_by_the_app_factory():
    wrong = sorted(f"{name} imports {target}" for name in modules()
                   if name != "server" and not name.startswith("server.web")
                   for target in imports(name) if target.startswith("server.web"))
    assert not wrong, "\n".join(wrong)


def test_no_composition_by_string():
    wrong = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(n.split(".")[0] == "importlib" for n in names):
                    wrong.append(f"{name}:{node.lineno} imports importlib")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id == "__import__":
                wrong.append(f"{name}:{node.lineno} calls __import__")
    assert not wrong, "\n".join(wrong)


def test_modules_are_small():
    large = sorted(f"{name}: {n} lines" for name, path in modules().items()
                   if (n := len(path.read_text().splitlines())) > MAX_LINES)
    assert not large, f"modules over {MAX_LINES} lines:\n" + "\n".join(large)


def test_every_module_says_what_it_is_for():
    silent = sorted(name for name, path in modules().items()
                    if path.stat().st_size and ast.get_docstring(ast.parse(path.read_text())) is None)
    assert not silent, "modules without a docstring:\n" + "\n".join(silent)
