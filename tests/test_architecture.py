"""The package's shape: no import cycles, a core that imports no optional feature, a
light top-level import."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import asgi_jwt_session

PACKAGE = Path(asgi_jwt_session.__file__).parent
OPTIONAL = ("asgi_jwt_session.authjs", "asgi_jwt_session.freshness",
            "asgi_jwt_session.store.databases", "asgi_jwt_session.endpoints",
            "asgi_jwt_session.csrf", "asgi_jwt_session.cli", "asgi_jwt_session.testing",
            "asgi_jwt_session.impersonation", "asgi_jwt_session.registry",
            "asgi_jwt_session.dependencies", "asgi_jwt_session.betterauth",
            "asgi_jwt_session.integrations")
CORE = ("errors", "base64url", "config", "keys", "claims", "codec", "tokens", "cookies",
        "front", "session", "values", "context", "middleware", "issuing", "roles", "guards",
        "responses", "users")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def top_level_imports(path: Path) -> set[str]:
    """Package modules imported when the module loads (not inside functions, not
    under ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If) and not is_type_checking(node):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)

    visit(tree.body)
    return found


def all_imports(path: Path) -> set[str]:
    """Package modules the module uses at all: at load time, inside functions and for
    type checking."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found




def graph(imports: Callable[[Path], set[str]] = top_level_imports) -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges[name] = {imported for imported in imports(path)
                       if imported in modules and imported != name}
    return edges


def assert_no_cycle(edges: dict[str, set[str]]) -> None:
    done: set[str] = set()

    def walk(name: str, stack: list[str]) -> None:
        if name in stack:
            cycle = " -> ".join([*stack[stack.index(name):], name])
            raise AssertionError(f"import cycle: {cycle}")
        if name in done:
            return
        for imported in sorted(edges[name]):
            # A package's __init__ importing its own submodules is no cycle.
            if not name.startswith(imported + "."):
                walk(imported, [*stack, name])
        done.add(name)

    for name in sorted(edges):
        walk(name, [])


def test_no_import_cycle() -> None:
    assert_no_cycle(graph())


def test_no_module_depends_on_itself_through_others() -> None:
    # The whole package, imports inside functions and for type checking included: the
    # freshness policy, the registry and impersonation all use "apply a stored user"
    # (asgi_jwt_session.apply), below them, and none reaches back up.
    edges = graph(all_imports)
    assert_no_cycle(edges)
    apply = edges["asgi_jwt_session.apply"]
    assert not {name for name in apply if name.startswith(
        ("asgi_jwt_session.freshness", "asgi_jwt_session.registry",
         "asgi_jwt_session.impersonation"))}
    for user in ("asgi_jwt_session.freshness.policy", "asgi_jwt_session.registry",
                 "asgi_jwt_session.impersonation"):
        assert "asgi_jwt_session.apply" in edges[user]


def test_the_graph_sees_imports() -> None:
    # The walk above proves nothing if it finds no edges.
    edges = graph()
    assert "asgi_jwt_session.codec" in edges["asgi_jwt_session.middleware"]
    assert "asgi_jwt_session.freshness.feed" in edges["asgi_jwt_session.freshness.policy"]


def test_core_imports_no_optional_feature() -> None:
    edges = graph()
    for name in CORE:
        module = f"asgi_jwt_session.{name}"
        optional = {imported for imported in edges[module] if imported.startswith(OPTIONAL)}
        assert not optional, f"{module} imports {sorted(optional)}"


def test_top_level_import_loads_no_database_stack() -> None:
    code = ("import sys, asgi_jwt_session, asgi_jwt_session.store; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('databases', 'sqlalchemy', 'aiosqlite', 'asyncpg')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_moved_names_still_import() -> None:
    from asgi_jwt_session.freshness import VersionFeed

    assert asgi_jwt_session.VersionFeed is VersionFeed
    for name in asgi_jwt_session.MOVED:
        assert getattr(asgi_jwt_session, name) is not None


def test_public_api_is_small_and_complete() -> None:
    names = set(asgi_jwt_session.__all__)
    assert len(names) <= 30
    for error in ("AuthError", "NotAuthenticated", "PermissionDenied", "CSRFError",
                  "InvalidToken", "SessionTooLarge", "StoreUnavailable", "UnknownUser",
                  "UnknownRole"):
        assert error in names
