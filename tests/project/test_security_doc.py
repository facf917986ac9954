"""docs/security.md links each defence to tests: every link must name a test that exists."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"
LINK = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _rows():
    text = DOC.read_text()
    table = text.split("## Defences and the tests that check them", 1)[1].split("\n## ", 1)[0]
    return [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]


def _test_names(path):
    tree = ast.parse((ROOT / path).read_text())
    return {node.name for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_every_defence_names_at_least_one_test():
    rows = _rows()
    assert len(rows) >= 20
    for row in rows:
        assert LINK.search(row), f"no test linked in: {row[:80]}"


def test_every_linked_test_exists():
    missing = []
    for path, name in LINK.findall(DOC.read_text()):
        if not (ROOT / path).is_file() or name not in _test_names(path):
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/security.md links tests that do not exist: {missing}"
