"""Hostile file names, through every way a name comes in: the simple POST (multipart file
name, ``?filename=``, ``Content-Disposition``, the ``/archives/<name>`` path), tus
``Upload-Metadata`` (what the web upload page sends) — and member names inside zip and tar
archives.

Whatever the name: the bytes are stored under an id-built path inside DATA_DIR and nowhere
else, the name shown is sanitised (no path, no control or invisible characters, NFKC,
at most 255 UTF-8 bytes), and the download's ``Content-Disposition`` cannot be broken out
of. Members are listed and served under safe paths and never extracted to disk.
"""

import base64
import io
import re
import tarfile
import unicodedata
import urllib.parse
import zipfile

import pytest
from sqlalchemy import select

import collector.models  # noqa: F401  (every mapper, before any query is built)
from collector.archives.inspect import store
from collector.archives.models import Archive, TusUpload
from collector.audit.models import AuditEvent

# (what the client sends, what we keep) — ``None``: only the general rules are checked.
NAMES = [
    ("../../etc/passwd", "passwd"),
    ("/etc/shadow", "shadow"),
    ("..\\..\\windows\\system32\\evil.dll", "evil.dll"),
    ("C:\\Users\\x\\logs.zip", "logs.zip"),
    ("..", "archive"),
    ("./.", "archive"),
    ("a\x00b.log", "a_b.log"),
    ("bell\x07\x1b[31mred.log", "bell__[31mred.log"),
    ("crlf\r\nSet-Cookie: owned=1.log", "crlf__Set-Cookie_ owned=1.log"),
    ('q"uote"; filename="evil.exe', "q_uote_; filename=_evil.exe"),
    ("semi;colon,comma.log", "semi;colon,comma.log"),
    ("percent%22%0d%0a.log", "percent%22%0d%0a.log"),
    # NFKC: fullwidth solidus and letters, a ligature, a superscript.
    ("..\uff0f..\uff0fetc\uff0fpasswd", "passwd"),
    ("\uff45\uff56\uff49\uff4c.log", "evil.log"),
    ("\ufb01le\u00b2.log", "file2.log"),
    ("e\u0301te\u0301.log", "\u00e9t\u00e9.log"),
    # Invisible: a right-to-left override (shows as "evilexe.log"), zero-width characters,
    # a BOM, bidi isolates; line and paragraph separators are visible breaks.
    ("evil\u202egol.exe", "evilgol.exe"),
    ("a\u200bb\u200c\u200dc\u2060d\ufeff.log", "abcd.log"),
    ("\u2066x\u2069\u200f.log", "x.log"),
    ("line\u2028break\u2029.log", "line_break_.log"),
    ("division\u2215slash.log", "division_slash.log"),
    ("  spaced \t name . ", "spaced _ name"),
    ("<script>alert(1)</script>.log", "script_.log"),
    ("\u043b\u043e\u0433 \u65e5\u5fd7.txt", "\u043b\u043e\u0433 \u65e5\u5fd7.txt"),
    ("x" * 4096 + ".tar.gz", "x" * 248 + ".tar.gz"),
    ("\u65e5" * 1500 + ".log", "\u65e5" * 83 + ".log"),
    ("y" * 4096, "y" * 255),
]
IDS = [f"name{i}" for i in range(len(NAMES))]
# One name that is hostile in most ways at once, for the slower ways in.
WORST = "../\u202e\u200b\uff0f\x00\r\n\"; filename=evil.exe\"" + "z" * 3000 + ".log"

# A tus filetype with a NUL and a line break in it.
FILETYPE = base64.b64encode(b'text/plain; x="\x00\r\n"').decode()

DISPOSITION = re.compile(r"""attachment; filename="([^"\\\x00-\x1f\x7f;%]+)"; """
                         r"""filename\*=UTF-8''([A-Za-z0-9%._~-]+)""")


@pytest.fixture
def ticket(factory):
    return factory.ticket(factory.platform("vm6"), 66, attempts=100)


def assert_safe_name(name):
    """The rules every kept name follows, whatever came in."""
    assert name and name not in {".", ".."}
    assert not set(name) & set('/\\:*?"<>|'), name
    assert name == name.strip(" ."), name
    for ch in name:
        assert unicodedata.category(ch) not in {"Cc", "Cf", "Cs", "Zl", "Zp"}, (name, ch)
    assert unicodedata.is_normalized("NFKC", name), name
    assert len(name.encode("utf-8")) <= 255, name


def assert_safe_disposition(header, name):
    """One ``attachment`` with a plain ASCII fallback and the exact name as ``filename*``."""
    match = DISPOSITION.fullmatch(header)
    assert match, header
    fallback, encoded = match.groups()
    assert fallback.isascii() and fallback.isprintable() and fallback.strip(" .") == fallback
    assert urllib.parse.unquote(encoded, errors="strict") == name


def assert_stored_by_id_only(dbsession, data_dir, tmp_path, archive_id):
    """The bytes are under DATA_DIR/archives, in a file named by the storage key, and no
    file anywhere in the test's directory is named after the client's name."""
    dbsession.expire_all()
    row = dbsession.get(Archive, archive_id)
    stored = [p for p in (data_dir / "archives").rglob("*") if p.is_file()]
    assert row.storage_key in {p.name for p in stored}
    keys = set(dbsession.scalars(select(Archive.storage_key)))
    for path in tmp_path.rglob("*"):
        assert path.resolve().is_relative_to(tmp_path.resolve())
        if path.is_file() and path.is_relative_to(data_dir / "archives"):
            assert path.name in keys, path
    assert not [p for p in tmp_path.rglob("*") if p.name in {"passwd", "shadow", "evil.dll"}
                or "evil" in p.name or "\u202e" in p.name]
    return row


def _multipart(name):
    """A multipart body as browsers and curl send it: UTF-8 name, ``"``/CR/LF escaped."""
    quoted = name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
    body = (b"--b0und\r\nContent-Disposition: form-data; name=\"file\"; filename=\""
            + quoted.encode("utf-8") + b"\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            + b"log line\n" + b"\r\n--b0und--\r\n")
    return body, {"Content-Type": "multipart/form-data; boundary=b0und"}


def _download(testapp, staff, archive_id):
    return testapp.get(f"/api/v1/archives/{archive_id}/download", headers=staff.headers)


@pytest.mark.parametrize("sent, kept", NAMES, ids=IDS)
def test_multipart_names(testapp, ticket, staff, dbsession, data_dir, tmp_path, sent, kept):
    body, headers = _multipart(sent)
    res = testapp.post("/api/v1/archives/", body,
                       headers={**headers, "Upload-Token": ticket.token}, status=201)
    name = res.json["name"]
    assert_safe_name(name)
    # In a multipart header a NUL ends the name, a backslash escapes the next character
    # (so the Windows paths lose their separators) and %22 is a browser's escaped quote.
    if not {"\x00", "\\", "%"} & set(sent):
        assert name == kept
    row = assert_stored_by_id_only(dbsession, data_dir, tmp_path, res.json["id"])
    assert row.name == name
    got = _download(testapp, staff, row.id)
    assert got.body == b"log line\n"
    assert_safe_disposition(got.headers["Content-Disposition"], name)


@pytest.mark.parametrize("sent, kept", NAMES, ids=IDS)
def test_tus_metadata_names(testapp, ticket, staff, dbsession, data_dir, tmp_path, sent, kept):
    """What the web upload page and every tus client send: the name in base64 metadata."""
    encoded = base64.b64encode(sent.encode("utf-8")).decode()
    res = testapp.post("/api/v1/uploads/", b"tus bytes\n", headers={
        "Tus-Resumable": "1.0.0", "Upload-Token": ticket.token, "Upload-Length": "10",
        "Content-Type": "application/offset+octet-stream",
        "Upload-Metadata": f"filename {encoded},filetype {FILETYPE}"},
        status=(201,) if len(encoded) < 4000 else (400,))
    if res.status_int == 400:  # the 4 KB names do not fit the 4096-character header
        assert "longer than 4096" in res.json["detail"]
        return
    dbsession.expire_all()
    upload = dbsession.scalars(select(TusUpload)).one()
    # Sanitised when the upload is created, not only once it is an archive.
    assert upload.filename == kept
    assert "\x00" not in upload.filetype and "\r" not in upload.filetype
    started = dbsession.scalars(select(AuditEvent).where(
        AuditEvent.action == "upload.started")).one()
    assert started.detail["name"] == kept
    row = assert_stored_by_id_only(dbsession, data_dir, tmp_path, upload.archive_id)
    assert row.name == kept
    got = _download(testapp, staff, row.id)
    assert got.body == b"tus bytes\n"
    assert_safe_disposition(got.headers["Content-Disposition"], kept)


def _raw(testapp, ticket, how, name):
    headers = {"Upload-Token": ticket.token, "Content-Type": "application/octet-stream"}
    if how == "query":
        return testapp.post("/api/v1/archives/?" + urllib.parse.urlencode({"filename": name}),
                            b"raw\n", headers=headers, status=201)
    if how == "disposition":
        headers["Content-Disposition"] = ("attachment; filename*=UTF-8''"
                                          + urllib.parse.quote(name, safe=""))
        return testapp.post("/api/v1/archives/", b"raw\n", headers=headers, status=201)
    return testapp.put("/api/v1/archives/" + urllib.parse.quote(name, safe=""), b"raw\n",
                       headers=headers, status=201)


@pytest.mark.parametrize("how", ["query", "disposition", "path"])
@pytest.mark.parametrize("sent, kept", [
    ("../../etc/passwd", "passwd"), ("crlf\r\nX-Evil: 1.log", "crlf__X-Evil_ 1.log"),
    ("a\x00b.log", "a_b.log"), ("evil\u202egol.exe", "evilgol.exe"),
    ("..\uff0f..\uff0fetc\uff0fpasswd", "passwd"), (WORST, None),
], ids=["dotdot", "crlf", "nul", "rtl", "fullwidth", "worst"])
def test_raw_body_names(testapp, ticket, staff, dbsession, data_dir, tmp_path, how, sent, kept):
    if how == "path" and sent.startswith("../"):
        sent = "x/" + sent  # a path of only "..", "/" parts is another route
    res = _raw(testapp, ticket, how, sent)
    name = res.json["name"]
    assert_safe_name(name)
    if kept is not None:
        assert name == kept
    else:  # what is left of WORST: its tail, with every separator and quote replaced
        assert name.endswith("zzz.log") and name.startswith("____; filename=evil.exe_")
    row = assert_stored_by_id_only(dbsession, data_dir, tmp_path, res.json["id"])
    assert_safe_disposition(_download(testapp, staff, row.id).headers["Content-Disposition"],
                            row.name)


def test_renaming_through_the_api_is_sanitised_too(testapp, ticket, staff, dbsession):
    res = _raw(testapp, ticket, "query", "ok.log")
    renamed = testapp.patch_json(f"/api/v1/archives/{res.json['id']}/", {"name": WORST[:250]},
                                 headers=staff.headers, status=200).json["name"]
    assert_safe_name(renamed)
    assert_safe_disposition(
        _download(testapp, staff, res.json["id"]).headers["Content-Disposition"], renamed)


def test_the_ticket_page_shows_the_sanitised_name(testapp, ticket, staff, web_login):
    res = _raw(testapp, ticket, "query", "evil\u202egol\u200b.exe")
    web_login(testapp, staff)
    page = testapp.get(f"/platforms/vm6/tickets/{ticket.number}/")
    assert "evilgol.exe" in page.text and "\u202e" not in page.text
    assert res.json["name"] == "evilgol.exe"


def test_malformed_tus_metadata_is_refused(testapp, ticket, dbsession):
    headers = {"Tus-Resumable": "1.0.0", "Upload-Token": ticket.token, "Upload-Length": "5"}
    for metadata in ("filename not-base64!", "k\x01ey " + base64.b64encode(b"x").decode(),
                     "f\u00e9 " + base64.b64encode(b"x").decode()):
        res = testapp.post("/api/v1/uploads/", headers={**headers, "Upload-Metadata": metadata},
                           status=400)
        assert res.json["detail"].startswith("Upload-Metadata")
    assert dbsession.scalars(select(TusUpload)).all() == []


# --- member names inside archives --------------------------------------------------------

MEMBER_NAMES = ["../../evil.log", "/abs/root.log", "..\\..\\win.log", "./a/./../../b.log",
                "ctrl\r\n\x01.log", "evil\u202egol.exe", "zero\u200bwidth.log",
                "q\"uote\";x=.log", "%2e%2e%2fenc.log", "what?x=1#frag.log",
                "<img src=x onerror=alert(1)>.log", "\u043b\u043e\u0433.log", "..", "."]


def _zip(names):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n, name in enumerate(names):
            archive.writestr(zipfile.ZipInfo(name), f"member {n}\n".encode())
    return buffer.getvalue()


def _tar(names):
    buffer = io.BytesIO()
    # GNU format: names as raw bytes (the latin-1 one is not UTF-8 at all).
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT,
                      encoding="utf-8", errors="surrogateescape") as archive:
        for n, name in enumerate(names + ["caf\udce9-latin1.log"]):
            data = f"member {n}\n".encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, kind, target in [("link-out", tarfile.SYMTYPE, "/etc/passwd"),
                                   ("../hard-out", tarfile.LNKTYPE, "../../etc/shadow")]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            archive.addfile(info)
    return buffer.getvalue()


def _index(testapp, archive_id, headers):
    """The first look starts the build (503 meanwhile); wait for it, then list."""
    url = f"/api/v1/archives/{archive_id}/members/"
    if testapp.get(url, headers=headers, status=(200, 503)).status_int == 503:
        store.wait_for_builders()
    return testapp.get(url, headers=headers).json


@pytest.mark.parametrize("kind", ["zip", "tar"])
@pytest.mark.commits  # the member index is built by a thread of the app's own
def test_member_names_are_listed_and_served_safely(testapp, ticket, staff, web_login,
                                                   dbsession, data_dir, tmp_path, kind):
    data = _zip(MEMBER_NAMES) if kind == "zip" else _tar(MEMBER_NAMES)
    res = testapp.post("/api/v1/archives/", upload_files=[("file", f"m.{kind}", data)],
                       headers={"Upload-Token": ticket.token}, status=201)
    archive_id = res.json["id"]
    before = sorted(p for p in tmp_path.rglob("*") if p.is_file()
                    and not p.is_relative_to(data_dir / "index"))
    members = _index(testapp, archive_id, staff.headers)
    paths = [m["path"] for m in members]
    assert len(paths) == len(set(paths))
    for path in paths:
        assert not path.startswith("/") and "\\" not in path
        assert ".." not in path.split("/") and "." not in path.split("/")
        assert all(unicodedata.category(ch) not in {"Cc", "Cf", "Cs"} for ch in path), path
    assert {"evil.log", "abs/root.log", "win.log", "a/b.log"} <= set(paths)
    if kind == "tar":
        by_path = {m["path"]: m for m in members}
        assert "caf\ufffd-latin1.log" in by_path
        assert by_path["link-out"]["kind"] == "link"
        assert by_path["link-out"]["target"] == "/etc/passwd"

    web_login(testapp, staff)
    page = testapp.get(f"/platforms/vm6/tickets/{ticket.number}/archives/{archive_id}/members")
    assert "<img src=x" not in page.text and "&lt;img src=x" in page.text
    for member in members:
        if member["kind"] != "text":
            continue
        url = (f"/api/v1/archives/{archive_id}/members/"
               + urllib.parse.quote(member["path"], safe="/"))
        got = testapp.get(url, headers=staff.headers)
        assert got.body.startswith(b"member ")
        header = got.headers["Content-Disposition"]
        match = DISPOSITION.fullmatch(header)
        assert match, header
        assert_safe_name(urllib.parse.unquote(match.group(2)))
        viewer = testapp.get(f"/platforms/vm6/tickets/{ticket.number}/archives/{archive_id}"
                             "/view/" + urllib.parse.quote(member["path"], safe="/"))
        assert "member " in viewer.text
    # Looking inside wrote nothing but the index: no member was extracted anywhere.
    after = sorted(p for p in tmp_path.rglob("*") if p.is_file()
                   and not p.is_relative_to(data_dir / "index"))
    assert after == before
    for path in tmp_path.rglob("*"):
        assert path.resolve().is_relative_to(tmp_path.resolve())
        assert not re.search(r"evil|root\.log|win\.log|b\.log|passwd|shadow|hard-out",
                             path.name), path
