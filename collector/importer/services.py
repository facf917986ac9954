"""Importing an installation of the original logs-collector: the rules.

Everything is found again by a natural key, so no mapping table is needed and a second run
imports nothing twice: users by username (the same person when the email matches too),
platforms by name (the same when the pretty name matches too), tickets by their old
upload token (a UUID no ticket made here can have), archives by ticket, name, md5 and
size. Each item is committed on its own, so an interrupted run continues where it stopped.
Something that exists here but differs is a conflict: reported and skipped, unless
``--merge`` says how to resolve it. The old installation is only read (``--move``
removes each old file once its copy has committed, when asked).
"""

import contextlib
import datetime as dt
from pathlib import Path, PurePosixPath

import transaction
from sqlalchemy import inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from zope.sqlalchemy import register

# Every mapper first (Archive → Ticket → User …): the ORM resolves relationships by name.
import collector.models  # noqa: F401, I001
from collector.accounts import services as accounts
from collector.accounts.models import User
from collector.archives.models import Archive
from collector.archives.services import sanitise_name
from collector.archives.storage import StorageManager, make_backend
from collector.audit.services import record
from collector.db import make_engine, utcnow
from collector.importer import files
from collector.importer.source import Source, SourceError, open_source
from collector.importer.summary import KINDS, Skip, Summary
from collector.tickets import services as tickets
from collector.tickets.models import Platform, Ticket

MERGES = {"platforms": ("existing",), "users": ("existing",),
          "tickets": ("existing", "offset:N")}
AUDIT_LIST_LIMIT = 100


def parse_merge(values):
    """``["tickets=offset:1000000", "platforms=existing"]`` → ``{kind: how}``."""
    merge = {}
    for value in values or ():
        kind, _, how = value.partition("=")
        allowed = MERGES.get(kind)
        if allowed is None or not how:
            raise SourceError(f"--merge {value}: expected KIND=HOW, KIND one of "
                              f"{', '.join(MERGES)}")
        if kind == "tickets" and how.startswith("offset:"):
            try:
                how = ("offset", int(how[len("offset:"):]))
            except ValueError:
                raise SourceError(f"--merge {value}: the offset must be a number") from None
        elif how not in allowed:
            raise SourceError(f"--merge {value}: {kind} can be merged by "
                              f"{' or '.join(allowed)}")
        merge[kind] = how
    return merge


class Importer:
    """One run; ``run()`` returns its Summary."""

    def __init__(self, source, session, tm, storage, settings, archives_dir, *,
                 dry_run=False, mode="copy", merge=None, lifetime_days=None, out=print):
        self.source, self.session, self.tm, self.storage = source, session, tm, storage
        self.settings = settings
        self.archives_dir = Path(archives_dir).resolve()
        self.dry_run, self.mode, self.merge = dry_run, mode, merge or {}
        days = settings["ticket.lifetime_days"] if lifetime_days is None else lifetime_days
        # The usual lifetime of a new ticket, counted from the import.
        self.expires_at = utcnow() + dt.timedelta(days=days)
        self.out = out
        self.summary = Summary(dry_run=dry_run)
        # Old key → id here, filled as items commit (or are found to be here already).
        self.ids = {kind: {} for kind in KINDS}
        self.transfer = files.Transfer(storage, mode, settings["storage.reserve"], out)

    # --- the run ---

    def run(self):
        if self.dry_run:
            self.tm.begin()  # one transaction for the whole dry run, rolled back at the end
        try:
            self.devices = self.source.totp_devices()
            self.backup_codes = self.source.backup_codes()
            self._each("users", self.source.users(), lambda r: r["username"],
                       lambda r: r["id"], self._user)
            self._each("platforms", self.source.platforms(), lambda r: r["name"],
                       lambda r: r["name"], self._platform)
            self._each("tickets", self.source.tickets(), lambda r: r["number"],
                       lambda r: r["number"], self._ticket)
            archives = self.source.archives()
            self.total = len(archives)
            self._each("archives", archives, lambda r: r["file"], lambda r: r["id"],
                       self._archive)
            self.summary.unreferenced = files.unreferenced(
                self.archives_dir, [row["file"] for row in archives])
        except KeyboardInterrupt:
            self.summary.interrupted = True
        finally:
            if self.dry_run:
                self.tm.abort()
        if not self.dry_run:
            self._audit()
        return self.summary

    def _each(self, kind, rows, label, key, handle):
        for index, row in enumerate(rows, 1):
            name = label(row)
            self.position = index
            if not self.dry_run:
                self.tm.begin()
            try:
                outcome, message, our_id = handle(row)
                if not self.dry_run:
                    self.tm.commit()
                    self.transfer.committed()
            except Skip as skip:
                outcome, message, our_id = skip.outcome, skip.message, None
                self._abort()
                self.summary.problem(kind, name, message)
            except (SQLAlchemyError, OSError) as exc:
                outcome, our_id = "skipped", None
                message = f"{exc.__class__.__name__}: {getattr(exc, 'orig', None) or exc}"
                self._abort()
                self.summary.problem(kind, name, message)
            except BaseException:
                self._abort()
                raise
            if our_id is not None:
                self.ids[kind][key(row)] = our_id
            self.summary.counts[kind][outcome] += 1
            self.out(f"{kind[:-1]} {name}: {message}", flush=True)

    def _abort(self):
        if not self.dry_run:
            self.tm.abort()
        self.transfer.aborted()

    def _did(self, verb):
        return f"would be {verb}" if self.dry_run else verb

    def _audit(self):
        """One event for the whole run, with its summary."""
        detail = self.summary.as_dict()
        # The event stays small: the first of each list, and how many there were.
        for key in ("problems", "unreferenced"):
            detail[f"{key}_count"] = len(detail[key])
            detail[key] = detail[key][:AUDIT_LIST_LIMIT]
        detail = {**detail, "mode": self.mode,
                  "merge": {k: v if isinstance(v, str) else f"offset:{v[1]}"
                            for k, v in self.merge.items()}}
        if self.summary.interrupted:
            record(self.session, "import.original", outcome="failed", reason="interrupted",
                   detail=detail)
            return
        self.tm.begin()
        record(self.session, "import.original", detail=detail)
        self.tm.commit()

    # --- users ---

    def _user(self, row):
        username = row["username"]
        here = accounts.get_user_by_name(self.session, username)
        if here is not None:
            if (here.email or "").casefold() == (row["email"] or "").casefold():
                return "present", "already here", here.id
            if self.merge.get("users") == "existing":
                return "merged", "the user of that name here stands for it (unchanged)", here.id
            raise Skip("conflict", f"another user {username} exists here (email "
                       f"{here.email or 'none'}); the old one's tickets get no owner. "
                       "--merge users=existing takes the user here as the old one")
        password_hash, problem = accounts.imported_password_hash(row["password"])
        if problem:
            self.summary.problem("users", username, problem)
        secret, last_step, second = self._totp(username, self.devices.get(row["id"]))
        role = "admin" if row["is_superuser"] else "staff"
        user = User(username=username, email=row["email"] or "", password_hash=password_hash,
                    is_admin=bool(row["is_superuser"]), is_active=bool(row["is_active"]),
                    totp_secret=secret, totp_last_step=last_step,
                    time_create=row["date_joined"] or utcnow(), last_login=row["last_login"])
        self.session.add(user)
        self.session.flush()
        if secret:
            self.summary.totp += 1
            second += self._backup_codes(username, user, self.backup_codes.get(row["id"], ()))
        state = "" if row["is_active"] else ", inactive"
        return "imported", f"{self._did('imported')} as {role}{state}; {second}", user.id

    def _totp(self, username, device):
        """(base32 secret, last accepted step, what it means) from a django_otp device."""
        if device is None:
            return None, -1, "enrols two-factor at first sign-in"
        # Our codes: 6 digits, 30 s steps from the Unix epoch (pyotp's defaults).
        if (device["step"], device["digits"], device["t0"]) != (30, 6, 0):
            self.summary.problem("users", username, "TOTP device with step "
                                 f"{device['step']}, {device['digits']} digits, t0 "
                                 f"{device['t0']} is not supported: enrols at first sign-in")
            return None, -1, "enrols two-factor at first sign-in"
        secret = accounts.totp_secret_from_hex(device["key"])
        if secret is None:
            self.summary.problem("users", username, "TOTP key is not a usable hex secret: "
                                 "enrols at first sign-in")
            return None, -1, "enrols two-factor at first sign-in"
        return secret, max(int(device["last_t"]), -1), "keeps their authenticator"

    def _backup_codes(self, username, user, codes):
        """django_otp backup codes become recovery codes (they stand in for the same
        authenticator, so only beside a TOTP secret carried over)."""
        kept = accounts.import_recovery_codes(self.session, user, codes)
        if len(kept) < len(codes):
            self.summary.problem("users", username, f"{len(codes) - len(kept)} backup "
                                 "code(s) too short or too long to use here: not imported")
        self.summary.backup_codes += len(kept)
        return f" and {len(kept)} backup code(s)" if kept else ""

    # --- platforms ---

    def _platform(self, row):
        name, pretty = row["name"], row["pretty_name"] or row["name"]
        here = tickets.get_platform(self.session, name)
        if here is not None:
            if here.pretty_name == pretty:
                return "present", "already here", here.id
            if self.merge.get("platforms") == "existing":
                return "merged", f"its tickets go to the platform here ({here.pretty_name})", \
                    here.id
            raise Skip("conflict", f"platform {name} exists here as {here.pretty_name!r}, "
                       f"not {pretty!r}; its tickets are skipped. --merge platforms=existing "
                       "puts them on the platform here")
        if not tickets.PLATFORM_NAME.fullmatch(name or ""):
            raise Skip("skipped", "name not valid here (lowercase letters, digits, - and _, "
                       "at most 20); its tickets are skipped")
        platform = Platform(name=name, pretty_name=pretty[:100])
        self.session.add(platform)
        self.session.flush()
        return "imported", self._did("imported"), platform.id

    # --- tickets ---

    def _ticket(self, row):
        number = row["number"]
        token = tickets.original_token(row["token"])
        if token is None:
            raise Skip("skipped", "its token is not a UUID")
        here = tickets.find_ticket_by_token(self.session, token)
        if here is not None:
            return "present", f"already here (as ticket {here.number})", here.id
        platform_id = self.ids["platforms"].get(row["platform_name"])
        if platform_id is None:
            raise Skip("skipped", f"its platform {row['platform_name']} was not imported")
        existing = tickets.get_ticket(self.session, number)
        how = self.merge.get("tickets")
        if existing is not None and how == "existing":
            return "merged", (f"its archives go to ticket {number} here, whose token, "
                              "attempts and note stay: the old token does not work"), existing.id
        if existing is not None and isinstance(how, tuple):
            number += how[1]
            if tickets.get_ticket(self.session, number) is not None:
                raise Skip("conflict", f"ticket {row['number']} and {number} exist here")
        elif existing is not None:
            raise Skip("conflict", f"another ticket {number} exists here; its archives are "
                       "skipped. --merge tickets=existing adds them to it, --merge "
                       "tickets=offset:N imports it as number+N")
        created = row["time_create"] or utcnow()
        ticket = Ticket(number=number, platform_id=platform_id,
                        user_id=self.ids["users"].get(row["user_id"]), token=token,
                        attempts=max(int(row["attempts"] or 0), 0),
                        resolved=bool(row["resolved"]), note=row["note"] or "",
                        expires_at=self.expires_at, time_create=created,
                        time_update=row["time_update"] or created)
        self.session.add(ticket)
        self.session.flush()
        renumbered = f" as {number}" if number != row["number"] else ""
        return "imported", (f"{self._did('imported')}{renumbered}, {ticket.attempts} "
                            f"attempt(s) left{', resolved' if ticket.resolved else ''}"), \
            ticket.id

    # --- archives ---

    def _archive(self, row):
        ticket_id = self.ids["tickets"].get(row["ticket_number"])
        if ticket_id is None:
            raise Skip("skipped", f"its ticket {row['ticket_number']} was not imported")
        stored = str(row["file"] or "")
        name = sanitise_name(PurePosixPath(stored).name)
        md5, size = (row["md5"] or "").strip().lower(), int(row["size"] or 0)
        present = self.session.scalar(select(Archive.id).where(
            Archive.ticket_id == ticket_id, Archive.name == name, Archive.md5 == md5,
            Archive.size == size))
        if present is not None:
            return "present", "already here", present
        path = self._source_path(stored)
        if self.dry_run:
            self.summary.bytes += size
            return "imported", f"{size} bytes would be {self._verb()}", None
        staged, found_md5 = self.transfer.bring(path, size)
        if found_md5 != md5 or staged.size != size:
            raise Skip("skipped", f"the file differs from what the old database recorded "
                       f"(md5 {found_md5}, {staged.size} bytes; expected md5 {md5}, {size} "
                       "bytes): damaged? not imported")
        archive = Archive(ticket_id=ticket_id, storage_key=staged.key, name=name,
                          size=size, md5=md5, sha256=staged.sha256,
                          time_create=row["time_create"] or utcnow(),
                          time_update=row["time_update"] or row["time_create"] or utcnow())
        self.session.add(archive)
        self.session.flush()
        self.summary.bytes += size
        return "imported", (f"{self._verb()} ({self.position}/{self.total}), {size} bytes, "
                            f"sha256 {staged.sha256}"), archive.id

    def _verb(self):
        return files.VERBS[self.mode]

    def _source_path(self, stored):
        path = (self.archives_dir / stored).resolve()
        if not stored or not path.is_relative_to(self.archives_dir):
            raise Skip("skipped", f"path {stored!r} is outside {self.archives_dir}")
        if not path.is_file():
            raise Skip("skipped", f"the file is missing from {self.archives_dir}: not "
                       "imported (put it back and run again)")
        return path

@contextlib.contextmanager
def _target(settings):
    """A session on this installation's database joined to a transaction manager of its
    own (explicit: nothing starts by accident), and the storage manager joined to it."""
    engine = make_engine(settings["db_url"])
    try:
        tables = set(inspect(engine).get_table_names())
        if not {"users", "tickets", "archives"} <= tables:
            raise SourceError("this installation's database has no tables yet: run "
                              "`collector migrate` first")
        tm = transaction.TransactionManager(explicit=True)
        with Session(engine, expire_on_commit=False) as session:
            register(session, transaction_manager=tm, keep_session=True)
            storage = StorageManager(make_backend(settings), tm)
            yield session, tm, storage
    finally:
        engine.dispose()


def run_import(settings, db, archives_dir, *, dry_run=False, mode="copy", merge=(),
               lifetime_days=None, out=print):
    """Import the installation at ``db`` + ``archives_dir`` into the one ``settings``
    describe; prints progress and returns the Summary. Raises SourceError (nothing
    imported) when either side cannot be used."""
    if mode not in files.MODES:
        raise SourceError(f"unknown mode {mode}")
    merge = parse_merge(merge)
    if lifetime_days is not None and lifetime_days <= 0:
        raise SourceError("--lifetime-days must be at least 1")
    archives_dir = Path(archives_dir)
    if not archives_dir.is_dir():
        raise SourceError(f"--archives: no directory {archives_dir}")
    engine = open_source(db)
    try:
        source = Source(engine)
        where = make_url(str(engine.url)).render_as_string(hide_password=True)
        out(f"importing from {where} and {archives_dir.resolve()}"
            f"{' (dry run: nothing is written)' if dry_run else ''}", flush=True)
        with _target(settings) as (session, tm, storage):
            importer = Importer(source, session, tm, storage, settings, archives_dir,
                                dry_run=dry_run, mode=mode, merge=merge,
                                lifetime_days=lifetime_days, out=out)
            summary = importer.run()
    finally:
        engine.dispose()
    for line in summary.lines():
        out(line, flush=True)
    return summary
