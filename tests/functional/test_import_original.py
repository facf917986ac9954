"""`collector import-original`: a real installation of the original logs-collector
(../shared/fixtures/original-install, made by running the original app) brought in.

Every test works on a copy of the fixture, except the one that proves a run against the
fixture itself leaves it byte for byte unchanged. The expected values below are the ones
the fixture's README lists.
"""

import datetime as dt
import hashlib
import os
import shutil
import sqlite3
import stat
import time
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import func, select

import collector.models  # noqa: F401  (every mapper, before any query is built)
from collector.accounts.models import User
from collector.archives.models import Archive
from collector.audit.models import AuditEvent
from collector.cli import main
from collector.importer import files
from collector.importer import services as importer
from collector.tickets.models import Platform, Ticket

FIXTURE = Path(os.environ.get(
    "ORIGINAL_INSTALL",
    Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "original-install"))

ALICE_SECRET = "D3LZKCLTPYPNBZUOKG4OLRQATN5OJD3F"
USERS = {  # username: (admin, email, password, TOTP secret, last_login, date_joined)
    "alice": (True, "alice@example.org", "Alice-Original-2023!", ALICE_SECRET,
              "2026-11-26 14:38:50.614949", "2026-11-26 14:38:45.981019"),
    "bob": (False, "bob@example.org", "Bob-Original-2023!", None,
            "2026-11-26 14:38:51.240501", "2026-11-26 14:38:46.342911"),
}
PLATFORMS = {"vm6": "VMmanager 6", "dci": "DCImanager", "bill": "BILLmanager"}
TICKETS = {  # number: (platform, owner, attempts, resolved, token, archives, note)
    1488228: ("vm6", "alice", 0, False, "4532de44-37eb-4ab2-9fbe-4ec5a78576b9", 2,
              "Падение VM после обновления до 6.80 — клиент «ООО Ромашка» 🚑"),
    2000001: ("dci", "bob", 2, True, "61e6fd11-b5e0-40e3-b1a7-d7ec153e0097", 1,
              "<script>alert(\"owned\")</script> — проверка экранирования & <b>bold</b>"),
    2000002: ("bill", "alice", 5, False, "4cfe0215-40da-49fe-999f-741c5a7138e3", 1,
              "Счета не формируются; see billmgr.log ✓"),
    2000003: ("vm6", "bob", 2, False, "94b64d46-7016-45a5-8962-7e8b9c8cc599", 1,
              "Kernel panic on host node3\nвторая строка заметки\twith a tab"),
    1000: ("dci", "alice", 5, False, "48775514-7ce8-463e-80aa-8a2e6bba96cd", 0, ""),
    42: ("bill", "bob", 0, True, "ed505ba1-18b0-4f36-98ce-1be2f2330993", 0,
         "Закрыт без логов: клиент не ответил. Ünïcödé — 日本語"),
}
ARCHIVES = [  # (ticket, stored path, size, md5, sha256, time_create)
    (1488228, "1488228/logs.tar.gz", 7752, "29b3bad3017a63124473360bf66045b8",
     "f21e939bbfcf313bd2db0e9c25d7d8f1ad0234a7bc50f3688a49917aed8cd173",
     "2026-11-26 14:38:48.090453"),
    (1488228, "1488228/logs.tar_mckd359.gz", 181544, "1b0b9b322a1d43ec402743952eed6354",
     "8037555ba2554c051e126ffe1a08f8479d72a5a717f0d6f9b10cc36b1d395110",
     "2026-11-26 14:38:48.176742"),
    (2000001, "2000001/Логи_сервера_копия.zip", 6231, "cfdf8af1461f55fda35c011c7a86a7ce",
     "ebaa3e1e67e7d0ffc41aecd1365d600cdba6420674fad10e7a411c1052ecc613",
     "2026-11-26 14:38:48.240653"),
    (2000002, "2000002/billmgr.log", 4211, "0a5b04f3b30d9def372a388c72d3083f",
     "03200b1e6e72d88fddcddbea3f27044becf1935d9126a387c7e968daa4c187f9",
     "2026-11-26 14:38:48.318398"),
    (2000003, "2000003/dmesg.gz", 6352, "8e322f2813c9bd7ab0dd07f28b25b720",
     "a4bd14920ac2d4f0012f40fc41e4b8a685b827c97ab90148ff2a193286eee6a6",
     "2026-11-26 14:38:48.417559"),
]

INI = """[app:main]
use = egg:logs-collector
debug = true
secret_key = import-test-secret-0123456789
data_dir = {data_dir}
db_url = {db_url}
"""

# Commits: the command line opens the database itself. On SQLite as well as PostgreSQL:
# the importer reads an SQLite database and writes through either engine.
pytestmark = [pytest.mark.skipif(not (FIXTURE / "db.sqlite3").is_file(),
                                 reason=f"the original-install fixture is not at {FIXTURE} "
                                 "(set ORIGINAL_INSTALL)"),
              pytest.mark.commits, pytest.mark.sqlite]


def _utc(text):
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def _tree_state(root):
    """Every file and directory under ``root``: hash, size, mode and mtime."""
    state = {}
    for path in sorted(Path(root).rglob("*")) + [Path(root)]:
        info = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        state[str(path.relative_to(root))] = (digest, info.st_size, stat.S_IMODE(info.st_mode),
                                              info.st_mtime_ns)
    return state


@pytest.fixture
def ini(tmp_path, settings):
    path = tmp_path / "test.ini"
    storage = "".join(f"{key} = {settings[key]}\n" for key in (
        "storage.url", "storage.endpoint_url", "storage.region", "storage.quota")
        if key in settings)
    path.write_text(INI.format(data_dir=settings["data_dir"],
                               db_url=settings["db_url"].replace("%", "%%")) + storage)
    return str(path)


@pytest.fixture
def old(tmp_path):
    """A writable copy of the fixture (tests break it on purpose)."""
    copy = tmp_path / "original-install"
    shutil.copytree(FIXTURE, copy)
    for path in [copy, *copy.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return copy


@pytest.fixture
def run(ini, capsys, app):
    """``run(old_dir, *options)`` → (exit status, output) of the real console command."""

    def run_import(old_dir, *options, db=None):
        argv = ["-c", ini, "import-original", "--db", str(db or old_dir / "db.sqlite3"),
                "--archives", str(old_dir / "archives"), *options]
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    return run_import


def _count(session, model):
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model))


def _stored_files(data_dir):
    return sorted(p for p in (Path(data_dir) / "archives").rglob("*") if p.is_file())


# --- what moves --------------------------------------------------------------------------

def test_everything_moves_with_its_fields(run, old, dbsession, testapp, admin, data_dir):
    before = dt.datetime.now(dt.UTC)
    code, out = run(old)
    after = dt.datetime.now(dt.UTC)
    assert code == 0, out
    assert "problems: 0" in out and "not reference (not imported): 0" in out

    users = {u.username: u for u in dbsession.scalars(select(User))}
    assert set(users) == {"alice", "bob", "root"}
    for name, (is_admin, email, _, secret, last_login, joined) in USERS.items():
        user = users[name]
        assert (user.is_admin, user.email, user.is_active, user.totp_secret) == \
            (is_admin, email, True, secret)
        assert user.last_login == _utc(last_login) and user.time_create == _utc(joined)
        # Verified at the first sign-in, then replaced by argon2.
        assert user.password_hash.startswith("pbkdf2_sha256$600000$")
    # The step alice's last code used stays used.
    assert users["alice"].totp_last_step == 59856797

    platforms = {p.name: p.pretty_name for p in dbsession.scalars(select(Platform))}
    assert platforms == PLATFORMS

    tickets = {t.number: t for t in dbsession.scalars(select(Ticket))}
    assert set(tickets) == set(TICKETS)
    lifetime = dt.timedelta(days=7)  # the usual lifetime, from the import
    for number, (platform, owner, attempts, resolved, token, _, note) in TICKETS.items():
        ticket = tickets[number]
        assert (ticket.platform.name, ticket.user.username, ticket.attempts, ticket.resolved,
                ticket.token, ticket.note) == (platform, owner, attempts, resolved, token, note)
        assert before + lifetime <= ticket.expires_at <= after + lifetime
        assert ticket.time_create.date() == dt.date(2026, 11, 26)

    archives = dbsession.scalars(select(Archive).order_by(Archive.time_create)).all()
    assert [(a.ticket.number, a.name, a.size, a.md5, a.sha256, a.time_create)
            for a in archives] == [(t, Path(p).name, s, m, h, _utc(c))
                                   for t, p, s, m, h, c in ARCHIVES]
    assert len(_stored_files(data_dir)) == 5
    # Every archive downloads byte-identical, under its original stored name.
    for archive, (_, stored, *_) in zip(archives, ARCHIVES):
        res = testapp.get(f"/api/v1/archives/{archive.id}/download", headers=admin.headers)
        assert res.body == (old / "archives" / stored).read_bytes()
        assert hashlib.sha256(res.body).hexdigest() == archive.sha256
        assert "filename*=UTF-8''" in res.headers["Content-Disposition"]

    # The API shows them like any other ticket.
    listed = testapp.get("/api/v1/tickets/?number=2000003", headers=admin.headers).json
    assert listed[0]["token"] == TICKETS[2000003][4] and listed[0]["user"] == "bob"

    events = dbsession.scalars(select(AuditEvent).where(
        AuditEvent.action == "import.original")).all()
    assert len(events) == 1 and events[0].outcome == "ok"
    counts = events[0].detail["counts"]
    assert {kind: counts[kind]["imported"] for kind in counts} == \
        {"users": 2, "platforms": 3, "tickets": 6, "archives": 5}
    assert events[0].detail["bytes"] == sum(a[2] for a in ARCHIVES)


def test_old_tokens_upload_and_keep_their_rules(run, old, testapp, dbsession):
    assert run(old)[0] == 0
    dashed = TICKETS[2000002][4]
    res = testapp.post("/api/v1/archives/", upload_files=[("file", "new.log", b"after move")],
                       headers={"Upload-Token": dashed}, status=201)
    assert res.json["ticket"] == 2000002
    # The original showed the dashed form; it stored 32 hex digits: both work.
    testapp.post("/api/v1/archives/", upload_files=[("file", "b.log", b"hex form")],
                 headers={"Upload-Token": dashed.replace("-", "")}, status=201)
    assert testapp.get(f"/api/v1/check/token/{dashed}").json["attempts"] == 3
    # attempts 0 and resolved answer as the original did.
    no_attempts = testapp.post("/api/v1/archives/", upload_files=[("file", "x", b"x")],
                               headers={"Upload-Token": TICKETS[1488228][4]}, status=423)
    assert "no upload attempts left" in no_attempts.json["detail"]
    resolved = testapp.post("/api/v1/archives/", upload_files=[("file", "x", b"x")],
                            headers={"Upload-Token": TICKETS[2000001][4]}, status=423)
    assert resolved.json["detail"] == "ticket 2000001 already resolved"
    # A resumable upload with an old token too.
    created = testapp.post("/api/v1/uploads/", headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": "3",
        "Upload-Token": TICKETS[2000003][4]}, status=201)
    testapp.patch(created.location, b"tus", headers={
        "Tus-Resumable": "1.0.0", "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream",
        "Upload-Token": TICKETS[2000003][4]}, status=204)
    ticket = dbsession.scalars(select(Ticket).where(Ticket.number == 2000003)).one()
    dbsession.refresh(ticket)
    assert ticket.attempts == 1


def test_alice_signs_in_with_her_old_password_and_authenticator(run, old, testapp,
                                                                dbsession):
    assert run(old)[0] == 0
    page = testapp.get("/login")
    form = page.forms["login-form"]
    form["username"], form["password"] = "alice", "wrong password"
    form.submit(status=401)
    alice = dbsession.scalars(select(User).where(User.username == "alice")).one()
    assert alice.password_hash.startswith("pbkdf2_sha256$")

    form = testapp.get("/login").forms["login-form"]
    form["username"], form["password"] = "alice", USERS["alice"][2]
    res = form.submit(status=303)
    assert res.location.endswith("/verify")
    form = res.follow().forms["verify-form"]
    form["code"] = pyotp.TOTP(ALICE_SECRET).now()  # what her authenticator shows
    form.submit(status=303)
    testapp.get("/account/", status=200)
    dbsession.refresh(alice)
    assert alice.password_hash.startswith("$argon2id$")

    # The new hash verifies the same password, and the API takes it with the next code
    # (from a client without the page's session cookie).
    testapp.reset()
    pair = testapp.post_json("/api/v1/auth/token/", {
        "username": "alice", "password": USERS["alice"][2],
        "otp": pyotp.TOTP(ALICE_SECRET).at(time.time() + 30)}, status=200).json
    assert testapp.get("/api/v1/tickets/", headers={
        "Authorization": f"Bearer {pair['access']}"}).json


def test_bob_enrols_two_factor_at_first_sign_in(run, old, testapp, dbsession):
    assert run(old)[0] == 0
    form = testapp.get("/login").forms["login-form"]
    form["username"], form["password"] = "bob", USERS["bob"][2]
    res = form.submit(status=303)
    assert res.location.endswith("/enrol")
    page = testapp.get("/enrol")
    secret = page.html.select_one("#totp-secret").text.strip()
    form = page.forms["enrol-form"]
    form["code"] = pyotp.TOTP(secret).now()
    form.submit(status=200)
    bob = dbsession.scalars(select(User).where(User.username == "bob")).one()
    dbsession.refresh(bob)
    assert bob.totp_secret == secret and bob.password_hash.startswith("$argon2id$")


# --- how it behaves ----------------------------------------------------------------------

def test_second_run_imports_nothing(run, old, dbsession, data_dir):
    assert run(old)[0] == 0
    files = _stored_files(data_dir)
    code, out = run(old)
    assert code == 0, out
    for kind in ("users", "platforms", "tickets", "archives"):
        line = next(line for line in out.splitlines() if line.strip().startswith(kind))
        assert line.split()[1:3] == ["0", str({"users": 2, "platforms": 3, "tickets": 6,
                                               "archives": 5}[kind])], line
    assert _stored_files(data_dir) == files
    assert (_count(dbsession, User), _count(dbsession, Ticket), _count(dbsession, Archive)) \
        == (2, 6, 5)
    assert _count(dbsession, AuditEvent) == 2


def test_interrupted_run_continues(run, old, dbsession, data_dir, monkeypatch):
    real = importer.Importer._archive
    calls = []

    def interrupted_at_the_third(self, row):
        calls.append(row["file"])
        if len(calls) == 3:
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of a copy
        return real(self, row)

    monkeypatch.setattr(importer.Importer, "_archive", interrupted_at_the_third)
    code, out = run(old)
    assert code == 130 and "interrupted: run again to continue" in out
    assert _count(dbsession, Archive) == 2 and len(_stored_files(data_dir)) == 2
    assert not list((Path(data_dir) / "tmp").iterdir())  # no staging file left behind
    event = dbsession.scalars(select(AuditEvent).where(
        AuditEvent.action == "import.original")).one()
    assert (event.outcome, event.reason) == ("failed", "interrupted")

    monkeypatch.setattr(importer.Importer, "_archive", real)
    code, out = run(old)
    assert code == 0, out
    line = next(line for line in out.splitlines() if line.strip().startswith("archives"))
    assert line.split()[1:3] == ["3", "2"]
    assert _count(dbsession, Archive) == 5 and len(_stored_files(data_dir)) == 5
    names = dbsession.scalars(select(Archive.name).order_by(Archive.name)).all()
    assert names == sorted(Path(a[1]).name for a in ARCHIVES)


def test_dry_run_writes_nothing(run, old, dbsession, data_dir):
    code, out = run(old, "--dry-run")
    assert code == 0, out
    assert "user alice: would be imported as admin" in out
    assert "archive 2000001/Логи_сервера_копия.zip: 6231 bytes would be copied" in out
    assert "dry run: nothing was written" in out
    for model in (User, Platform, Ticket, Archive, AuditEvent):
        assert _count(dbsession, model) == 0, model
    assert _stored_files(data_dir) == []


def test_link_and_move(run, old, dbsession, data_dir, tmp_path):
    code, out = run(old, "--link")
    assert code == 0, out
    for path in _stored_files(data_dir):
        assert path.stat().st_nlink == 2  # the old file's second name
    source = old / "archives" / ARCHIVES[0][1]
    assert source.read_bytes()

    moved = tmp_path / "moved"
    shutil.copytree(old, moved)
    dbsession.expire_all()
    for archive in dbsession.scalars(select(Archive)):
        dbsession.delete(archive)
    dbsession.commit()
    for path in _stored_files(data_dir):
        path.unlink()
    db_before = hashlib.sha256((moved / "db.sqlite3").read_bytes()).hexdigest()
    code, out = run(moved, "--move")
    assert code == 0, out
    assert "moved (5/5)" in out
    assert [p for p in (moved / "archives").rglob("*") if p.is_file()] == []
    assert hashlib.sha256((moved / "db.sqlite3").read_bytes()).hexdigest() == db_before
    sums = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in _stored_files(data_dir))
    assert sums == sorted(a[4] for a in ARCHIVES)


@pytest.mark.parametrize("storage_kind", ["s3"])
@pytest.mark.parametrize("mode", ["copy", "move"])
def test_import_into_s3(run, old, dbsession, stored, mode):
    """The imported files become objects (copied, or sent and then removed with
    ``--move``); nothing is left in staging."""
    code, out = run(old, *(["--move"] if mode == "move" else []))
    assert code == 0, out
    dbsession.expire_all()
    rows = dbsession.scalars(select(Archive)).all()
    assert sorted(row.storage_key for row in rows) == stored.keys()
    sums = sorted(hashlib.sha256(stored.read(row.storage_key)).hexdigest() for row in rows)
    assert sums == sorted(a[4] for a in ARCHIVES)
    assert stored.leftovers() == []
    left = [p for p in (old / "archives").rglob("*") if p.is_file()]
    assert (left == []) if mode == "move" else len(left) >= 5


def test_conflicts_are_reported_and_merged_on_request(run, old, factory, dbsession):
    ours = factory.platform("vm6")  # pretty name "VM6", not "VMmanager 6"
    local = factory.ticket(factory.platform("local"), 1000, note="ours")
    factory.user("alice")  # another alice (no email)
    code, out = run(old)
    assert code == 2
    assert "platform vm6: platform vm6 exists here as 'VM6'" in out
    assert "ticket 1000: another ticket 1000 exists here" in out
    assert "user alice: another user alice exists here" in out
    assert "ticket 1488228: its platform vm6 was not imported" in out
    assert "archive 1488228/logs.tar.gz: its ticket 1488228 was not imported" in out
    dbsession.expire_all()
    assert dbsession.get(Platform, ours.id).pretty_name == "VM6"
    kept = dbsession.get(Ticket, local.id)
    assert (kept.note, kept.token, kept.platform.name) == ("ours", local.token, "local")
    # alice's imported tickets have no owner; nothing of the alice here changed.
    assert dbsession.scalars(select(Ticket).where(Ticket.number == 2000002)).one().user \
        is None

    merge = ["--merge", "platforms=existing", "--merge", "users=existing",
             "--merge", "tickets=offset:5000000"]
    code, out = run(old, *merge)
    assert code == 0, out
    dbsession.expire_all()
    moved = dbsession.scalars(select(Ticket).where(Ticket.number == 5001000)).one()
    assert moved.token == TICKETS[1000][4] and moved.user.username == "alice"
    vm6 = dbsession.scalars(select(Ticket).where(Ticket.number == 1488228)).one()
    assert vm6.platform_id == ours.id and vm6.user.username == "alice"
    assert _count(dbsession, Archive) == 5
    assert dbsession.get(Ticket, local.id).note == "ours"
    # Merged once, found again: the third run imports nothing.
    code, out = run(old, *merge)
    assert code == 0 and "imported as" not in out and "copied" not in out


def test_merge_into_an_existing_ticket(run, old, factory, dbsession):
    here = factory.ticket(factory.platform("bill", ), 2000002, note="ours")
    dbsession.execute(Platform.__table__.update().values(pretty_name="BILLmanager"))
    dbsession.commit()
    code, out = run(old, "--merge", "tickets=existing")
    assert code == 0, out
    assert "the old token does not work" in out
    dbsession.expire_all()
    kept = dbsession.get(Ticket, here.id)
    assert kept.token == here.token and kept.note == "ours"
    assert [a.name for a in dbsession.scalars(select(Archive).where(
        Archive.ticket_id == here.id))] == ["billmgr.log"]


def test_missing_damaged_and_unreferenced_files(run, old, dbsession):
    (old / "archives" / "2000003" / "dmesg.gz").unlink()
    damaged = old / "archives" / "2000002" / "billmgr.log"
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"!")
    (old / "archives" / "2000001" / "left-over.zip").write_bytes(b"never in the db")
    code, out = run(old)
    assert code == 2
    assert "archive 2000003/dmesg.gz: the file is missing" in out
    assert "archive 2000002/billmgr.log: the file differs from what the old database " \
        "recorded" in out
    assert "- 2000001/left-over.zip" in out and "Traceback" not in out
    assert _count(dbsession, Archive) == 3 and _count(dbsession, Ticket) == 6


@pytest.mark.parametrize("mode", ["copy", "link"])
def test_the_md5_of_a_big_file_is_still_checked(run, old, dbsession, mode):
    """The upload path leaves the md5 of an archive over 4 MiB to a background job; the
    importer hashes every file itself, so a damaged big file is still refused and a
    sound one keeps the md5 the old database recorded."""
    big = os.urandom(5 * 1024 * 1024 + 1)
    sound, damaged = "2000002/billmgr.log", "2000003/dmesg.gz"
    for stored in (sound, damaged):
        (old / "archives" / stored).write_bytes(big)
    with sqlite3.connect(old / "db.sqlite3") as db:
        db.execute("UPDATE collector_archive SET size = ?, md5 = ? WHERE file = ?",
                   (len(big), hashlib.md5(big).hexdigest(), sound))
        # The right size, the md5 of other bytes: only hashing the file can tell.
        db.execute("UPDATE collector_archive SET size = ?, md5 = ? WHERE file = ?",
                   (len(big), hashlib.md5(big[:-1] + b"!").hexdigest(), damaged))
    db.close()
    code, out = run(old, *(["--link"] if mode == "link" else []))
    assert code == 2, out
    assert f"archive {damaged}: the file differs from what the old database recorded " \
        f"(md5 {hashlib.md5(big).hexdigest()}" in out
    dbsession.expire_all()
    row = dbsession.scalars(select(Archive).where(Archive.size == len(big))).one()
    assert (row.md5, row.sha256) == (hashlib.md5(big).hexdigest(),
                                     hashlib.sha256(big).hexdigest())


def test_unusable_old_installation_is_a_clear_error(run, old, dbsession, tmp_path):
    with sqlite3.connect(old / "db.sqlite3") as db:
        db.execute("ALTER TABLE collector_ticket RENAME COLUMN token TO upload_token")
        db.execute("DROP TABLE collector_archive")
    code, out = run(old)
    assert code == "error: this does not look like a logs-collector database (missing " \
        "collector_ticket: column(s) token; table collector_archive)"
    assert _count(dbsession, User) == 0
    not_db = tmp_path / "notes.txt"
    not_db.write_text("hello")
    code, _ = run(old, db=not_db)
    assert code.startswith("error: cannot read the old database")
    code, _ = run(old, db=tmp_path / "absent.sqlite3")
    assert code.startswith("error: --db: no SQLite database file at")
    code, _ = run(old, "--merge", "tickets=offset:x")
    assert code == "error: --merge tickets=offset:x: the offset must be a number"
    code, _ = run(old, "--merge", "archives=existing")
    assert code.startswith("error: --merge archives=existing: expected KIND=HOW")
    code, _ = run(tmp_path / "nowhere")
    assert code.startswith("error: --archives: no directory")


def test_the_fixture_itself_is_never_written(run, dbsession):
    """Run against the real (read-only) fixture: it stays the same, byte for byte."""
    before = _tree_state(FIXTURE)
    code, out = run(FIXTURE)
    assert code == 0, out
    assert _count(dbsession, Archive) == 5
    code, out = run(FIXTURE, "--dry-run")
    assert code == 0, out
    assert _tree_state(FIXTURE) == before


def test_progress_lines_for_long_copies(run, old, monkeypatch):
    # Long copies are the big ones; here every copy counts as long, reported at each chunk.
    monkeypatch.setattr(files, "PROGRESS_FROM", 0)
    monkeypatch.setattr(files, "PROGRESS_EVERY", 0)
    code, out = run(old)
    assert code == 0, out
    assert "  … 181544 of 181544 bytes (100 %)" in out


def test_the_old_database_is_opened_read_only(old):
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from collector.importer.source import open_source

    engine = open_source(old / "db.sqlite3")
    try:
        with engine.connect() as connection:
            assert connection.execute(text("select count(*) from collector_ticket")).scalar() \
                == 6
            with pytest.raises(OperationalError, match="readonly"):
                connection.execute(text("delete from collector_ticket"))
    finally:
        engine.dispose()


@pytest.fixture
def postgres_source(engine, old):
    """The fixture's rows in PostgreSQL tables of the original's names (in the test
    database, beside ours), as a PostgreSQL installation of the original would have them."""
    if engine.dialect.name != "postgresql":
        pytest.skip("the PostgreSQL source runs with the PostgreSQL backend")
    from collector.importer import source

    sqlite = source.open_source(old / "db.sqlite3")
    try:
        rows = {table: source.Source(sqlite)._rows(select(table))
                for table in source.REQUIRED + source.OPTIONAL}
    finally:
        sqlite.dispose()
    source._meta.create_all(engine)
    with engine.begin() as connection:
        for table, values in rows.items():
            for row in values:
                for key, value in row.items():
                    if isinstance(value, dt.datetime):  # Django's naive UTC
                        row[key] = value.replace(tzinfo=None)
            if values:
                connection.execute(table.insert(), values)
    yield engine.url.render_as_string(hide_password=False).replace("+psycopg", "")
    source._meta.drop_all(engine)


def test_postgresql_source(run, old, postgres_source, dbsession, testapp):
    code, out = run(old, db=postgres_source)
    assert code == 0, out
    tickets = {t.number: (t.token, t.note, t.user.username) for t in
               dbsession.scalars(select(Ticket))}
    assert tickets == {n: (v[4], v[6], v[1]) for n, v in TICKETS.items()}
    assert _count(dbsession, Archive) == 5
    alice = dbsession.scalars(select(User).where(User.username == "alice")).one()
    assert alice.totp_secret == ALICE_SECRET
    # Read-only: the importer's sessions on the old database cannot write.
    from sqlalchemy import text
    from sqlalchemy.exc import InternalError

    from collector.importer.source import open_source

    readonly = open_source(postgres_source)
    try:
        with readonly.connect() as connection, pytest.raises(InternalError,
                                                             match="read-only"):
            connection.execute(text("DELETE FROM collector_ticket"))
    finally:
        readonly.dispose()


def test_killed_run_completes_on_rerun(ini, old, run, dbsession, data_dir):
    """kill -9 as soon as the first archive is reported: whatever committed stays, the
    rerun brings the rest, and every archive row has its file, byte for byte."""
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "collector.cli", "-c", ini, "import-original",
         "--db", str(old / "db.sqlite3"), "--archives", str(old / "archives")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith("archive "):
            process.kill()
            break
    process.wait(timeout=60)
    process.stdout.close()
    assert any(line.startswith("archive ") for line in seen), "".join(seen)
    code, out = run(old)
    assert code == 0, out
    line = next(line for line in out.splitlines() if line.strip().startswith("archives"))
    imported, present = map(int, line.split()[1:3])
    assert imported + present == 5 and present >= 1
    dbsession.expire_all()
    archives = dbsession.scalars(select(Archive)).all()
    assert len(archives) == 5
    for archive in archives:
        path = Path(data_dir) / "archives" / archive.storage_key[:2] / archive.storage_key
        assert hashlib.sha256(path.read_bytes()).hexdigest() == archive.sha256


def _add_backup_codes(old, user_id, *tokens, confirmed=1, device_id=1):
    with sqlite3.connect(old / "db.sqlite3") as db:
        db.execute("INSERT INTO otp_static_staticdevice (id, name, confirmed, user_id, "
                   "throttling_failure_count) VALUES (?, 'backup', ?, ?, 0)",
                   (device_id, confirmed, user_id))
        db.executemany("INSERT INTO otp_static_statictoken (token, device_id) VALUES (?, ?)",
                       [(token, device_id) for token in tokens])


def test_backup_codes_become_recovery_codes(run, old, testapp, dbsession):
    """alice's django_otp backup codes sign her in once each; an unconfirmed device's and
    a code too short to be one of ours are not carried over (the short one is reported)."""
    _add_backup_codes(old, 1, "abcd2345", "q7rt5k2m", "ab")
    _add_backup_codes(old, 1, "unconfirm", confirmed=0, device_id=2)
    code, out = run(old)
    assert code == 2, out
    assert "backup codes carried over as recovery codes: 2" in out
    assert "user alice: 1 backup code(s) too short or too long to use here" in out
    assert "keeps their authenticator and 2 backup code(s)" in out

    def sign_in_with(recovery_code, status):
        testapp.reset()
        form = testapp.get("/login").forms["login-form"]
        form["username"], form["password"] = "alice", USERS["alice"][2]
        page = form.submit(status=303).follow()
        form = page.forms["recovery-form"]
        form["recovery_code"] = recovery_code
        return form.submit(status=status)

    sign_in_with("ABCD-2345", 303)  # as django_otp showed it, any case and dashes
    testapp.get("/account/", status=200)
    sign_in_with("abcd2345", 401)  # used up
    sign_in_with("unconfirm", 401)
    sign_in_with("q7rt5k2m", 303)
    # The rerun has nothing to add: the codes came with the user.
    code, out = run(old)
    assert "backup codes carried over as recovery codes: 0" in out


def test_unsupported_devices_and_hashes_are_reported(run, old, dbsession):
    _add_backup_codes(old, 1, "abcd2345")
    with sqlite3.connect(old / "db.sqlite3") as db:
        db.execute("UPDATE otp_totp_totpdevice SET digits = 8")
        db.execute("UPDATE account_user SET password = 'bcrypt_sha256$$2b$12$x' "
                   "WHERE username = 'bob'")
    code, out = run(old)
    assert code == 2, out
    assert "user alice: TOTP device with step 30, 8 digits, t0 0 is not supported" in out
    assert "user bob: password hash algorithm 'bcrypt_sha256' is not supported" in out
    # Backup codes stand in for the authenticator: without it, none are carried over.
    assert "backup codes carried over as recovery codes: 0" in out
    alice = dbsession.scalars(select(User).where(User.username == "alice")).one()
    assert alice.totp_secret is None  # enrols again at her first sign-in
    # Reported by the run that imported them; the next run has nothing to say.
    code, out = run(old)
    assert code == 0 and "problems: 0" in out
