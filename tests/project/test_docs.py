"""The README and docs/*.md: links resolve, shell snippets parse, the API example runs.

- Links: every Markdown link or image outside code blocks whose target is not a URL
  (``scheme:…``) must name a file or directory of the repository, relative to the page,
  and its ``#anchor`` a heading of the target page, as GitHub spells the slug (lower
  case, punctuation other than ``-`` and ``_`` dropped, spaces turned into ``-``, a
  repeated heading getting ``-1``, ``-2`` …).
- Snippets: each ```` ```sh ````, ```` ```bash ```` and ```` ```console ```` block must pass
  ``bash -n``. In a console block only the lines starting with ``$ `` are commands (the
  prompt is stripped; a line ending in ``\\`` carries on to the next); every other line is
  output and is not checked. Placeholders such as ``…`` and ``<upload token>`` are left
  as they are: they parse as words and redirections.
- The README's "The API in three steps": each ``curl`` of its block is translated, option
  by option, into a request through the real app (webtest), in order. ``$BASE`` becomes
  ``/api/v1``, ``$TOKEN`` a personal token of an admin with two-factor (what
  ``collector create-token admin`` prints), ``<upload token>`` the token the first call
  returned, and the archive id ``1`` the id the upload returned.
"""

import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _blocks(text):
    """(info string, lines) of each fenced code block, and the lines outside them."""
    blocks, outside, current = [], [], None
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current = (line[3:].strip(), [])
            else:
                blocks.append(current)
                current = None
        elif current is None:
            outside.append(line)
        else:
            current[1].append(line)
    return blocks, outside


def _slug(heading):
    heading = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return heading.replace(" ", "-")


def _anchors(page):
    anchors, seen = set(), {}
    for line in _blocks(page.read_text())[1]:
        if match := re.match(r"#{1,6} (.*)", line):
            slug = _slug(match.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links():
    for page in PAGES:
        for line in _blocks(page.read_text())[1]:
            for target in LINK.findall(line):
                if not re.match(r"[a-z][a-z0-9+.-]*:", target):
                    yield page, target


def test_every_relative_link_and_anchor_resolves():
    links = list(_links())
    assert len(links) > 50
    broken = []
    for page, target in links:
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{page.name}: {target} (no such file)")
        elif anchor and anchor not in _anchors(resolved):
            broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def _console_commands(lines):
    commands, carrying = [], False
    for line in lines:
        if line.startswith("$ ") or carrying:
            commands.append(line[2:] if line.startswith("$ ") and not carrying else line)
            carrying = line.endswith("\\")
    return commands


def _snippets():
    for page in PAGES:
        for number, (info, lines) in enumerate(_blocks(page.read_text())[0]):
            if info in {"sh", "bash"}:
                yield pytest.param("\n".join(lines), id=f"{page.name}-{number}")
            elif info == "console":
                yield pytest.param("\n".join(_console_commands(lines)),
                                   id=f"{page.name}-{number}")


def test_every_shell_snippet_parses():
    snippets = list(_snippets())
    assert len(snippets) >= 10
    failures = []
    for snippet in snippets:
        result = subprocess.run(["bash", "-n"], input=snippet.values[0], text=True,
                                capture_output=True)
        if result.returncode:
            failures.append(f"{snippet.id}: {result.stderr.strip()}")
    assert not failures, "\n".join(failures)


def _readme_api_calls():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## The API in three steps\n", 1)[1].split("\n## ", 1)[0]
    block = next(lines for info, lines in _blocks(section)[0] if info == "sh")
    joined = "\n".join(block).replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip().startswith("curl ")]


def _request(testapp, command, values):
    """One curl command line (the options the README uses) as a webtest request."""
    for name, value in values.items():
        command = command.replace(name, value)
    args = shlex.split(command)[1:]
    method, headers, data, files, url = None, {}, None, [], None
    while args:
        arg = args.pop(0)
        if arg.startswith("-X"):
            method = arg[2:] or args.pop(0)
        elif arg == "-H":
            name, _, value = args.pop(0).partition(":")
            headers[name.strip()] = value.strip()
        elif arg == "-d":
            data = args.pop(0)
        elif arg == "-F":
            field, _, source = args.pop(0).partition("=@")
            files.append((field, source, b"the customer's logs\n" * 1000))
        elif arg in {"-s", "-OJ"}:
            pass
        elif arg.startswith("-"):
            raise AssertionError(f"an option the translation does not know: {arg}")
        else:
            url = arg
    if files:
        return testapp.post(url, upload_files=files, headers=headers, expect_errors=True)
    if data is not None:
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return testapp.request(url, method=method or "POST", body=data.encode(),
                               headers=headers, expect_errors=True)
    return testapp.request(url, method=method or "GET", headers=headers,
                           expect_errors=True)


def test_the_readme_api_example_runs(testapp, factory):
    admin = factory.user("admin", admin=True)
    token = factory.token(admin)["Authorization"].removeprefix("Bearer ")
    factory.platform("vm6")
    create, upload, listing, download = _readme_api_calls()
    values = {"$BASE": "/api/v1", "$TOKEN": token}

    ticket = _request(testapp, create, values)
    assert ticket.status_int == 201, ticket.text
    assert ticket.json["number"] == 1488228
    values["<upload token>"] = ticket.json["token"]

    archive = _request(testapp, upload, values)
    assert archive.status_int == 201, archive.text
    assert archive.json["ticket"] == 1488228 and archive.json["name"] == "logs.tar.gz"

    archives = _request(testapp, listing, values)
    assert archives.status_int == 200
    assert [item["id"] for item in archives.json] == [archive.json["id"]]

    assert "/archives/1/download" in download
    download = download.replace("/archives/1/", f"/archives/{archive.json['id']}/")
    body = _request(testapp, download, values)
    assert body.status_int == 200
    assert body.body == b"the customer's logs\n" * 1000
    assert "logs.tar.gz" in body.headers["Content-Disposition"]
