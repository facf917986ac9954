"""docs/tus-conformance.md cannot rot: each row of its table names a test that exists, its
level and status are of the known kinds, and the counts the page states are the table's."""

import ast
import collections
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "tus-conformance.md"
ROW = re.compile(r"^\| ([a-z-]+-\d+) \| (.+?) \| (MUST|MUST NOT|SHOULD|SHOULD NOT|MAY) \| "
                 r"(.+?) \| (.+) \|$")
PROOF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
STATUSES = ("met", "not applicable", "deviation")
COUNTS = re.compile(
    r"\*\*Counts\*\*: (\d+) requirements\. MUST / MUST NOT: (\d+) \(met (\d+), not "
    r"applicable (\d+), deviations (\d+)\); SHOULD / SHOULD NOT: (\d+) \(met (\d+), not "
    r"applicable (\d+), deviations (\d+)\); MAY, listed: (\d+) \(met (\d+), not applicable "
    r"(\d+), deviations (\d+)\)\.")


ROW_START = re.compile(r"^\| [a-z-]+-\d+ \|")  # a requirement's row, not the heading


def _rows():
    text = PAGE.read_text()
    lines = [line for line in text.splitlines() if ROW_START.match(line)]
    rows = [ROW.match(line) for line in lines]
    assert rows and all(rows), [line for line in lines if not ROW.match(line)]
    return text, rows


def _functions(path, cache={}):  # noqa: B006 (a cache for this module's runs)
    if path not in cache:
        tree = ast.parse((ROOT / path).read_text())
        cache[path] = {node.name for node in tree.body
                       if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
    return cache[path]


def test_every_row_names_tests_that_exist():
    _, rows = _rows()
    ids = [row[1] for row in rows]
    assert len(ids) == len(set(ids)), "an id is used twice"
    for row in rows:
        proofs = PROOF.findall(row[5])
        assert proofs, f"{row[1]} names no test"
        for path, name in proofs:
            assert (ROOT / path).is_file(), f"{row[1]}: no file {path}"
            assert name in _functions(path), f"{row[1]}: {path} defines no {name}"


def test_statuses_are_known_and_the_counts_are_the_tables():
    text, rows = _rows()
    counts = collections.Counter()
    for row in rows:
        status = next((s for s in STATUSES if row[4].startswith(s)), None)
        assert status, f"{row[1]}: status {row[4]!r} is none of {STATUSES}"
        if status != "met":
            assert ":" in row[4], f"{row[1]}: a {status} says why"
        level = row[3].split()[0]
        counts[level] += 1
        counts[level, status] += 1
    stated = COUNTS.search(text)
    assert stated, "the page states no counts in the expected form"
    expected = [len(rows)]
    for level in ("MUST", "SHOULD", "MAY"):
        expected += [counts[level]] + [counts[level, status] for status in STATUSES]
    assert [int(n) for n in stated.groups()] == expected
