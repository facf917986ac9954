"""Who may import whom: the web pages, the console command and the domain packages take
their schemas and commands from the domain packages, never from the API (collector.api);
the API and the pages are two ways into the same rules."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "collector"
# Everything but the API itself (the app factory includes it by name, not by import).
OUTSIDE_THE_API = sorted(path for path in PACKAGE.rglob("*.py")
                         if path.relative_to(PACKAGE).parts[0] != "api")


def imported_modules(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


@pytest.mark.parametrize("path", OUTSIDE_THE_API,
                         ids=[str(p.relative_to(PACKAGE)) for p in OUTSIDE_THE_API])
def test_nothing_outside_the_api_imports_it(path):
    offending = sorted({name for name in imported_modules(path)
                        if name == "collector.api" or name.startswith("collector.api.")})
    assert not offending, f"{path.relative_to(PACKAGE)} imports {offending}"


def test_the_pages_and_the_console_command_are_checked():
    names = {str(p.relative_to(PACKAGE)) for p in OUTSIDE_THE_API}
    assert {"cli.py", "tickets/views.py", "accounts/views.py", "webhooks/views.py",
            "audit/views.py", "web.py", "validation.py"} <= names
    assert not any(name.startswith("api/") for name in names)
