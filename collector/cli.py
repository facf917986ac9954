"""The ``collector`` console command: migrate, create-user, create-token, serve, purge,
deliver, audit export, import-original, backup, verify, restore.

Each command imports what it needs when it runs (alembic for ``migrate``, the app for
``serve``, the importer for ``import-original``), so that one command does not pay for
the others; no import here is inside a function to avoid a cycle (there is none: see
docs/architecture.md, "Layers")."""

import argparse
import configparser
import contextlib
import ctypes
import getpass
import importlib.metadata
import math
import os
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select

from collector import logs, webhooks
from collector import settings as settings_module
from collector.db import make_engine

# Shipped inside the package (wheel and source tree alike); alembic.ini at the top of the
# source tree points there too.
ALEMBIC_DIR = Path(__file__).resolve().parent / "migrations"


class OperatorError(Exception):
    """Something the operator can fix (a setting, the database, the disk, the network):
    printed as one line, ``error: …``, exit status 1. Anything else keeps its traceback."""


def _one_line(exc):
    return " ".join(str(exc).split())


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (argparse's exit status 2); ``-h`` shows the usage."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} -h)\n")


def _number(kind, minimum, unit, above=False):
    """An argparse type: an int or float of at least ``minimum`` (more than it with
    ``above``), ASCII digits only for ints."""
    from collector.numbers import parse_int

    unit = unit[:-1] if minimum == 1 else unit  # "1 day", "0 hours"
    wanted = f"{'more than' if above else 'at least'} {minimum} {unit}"

    def parse(text):
        if kind is int:
            number = parse_int(text, minimum, 10**18)
        else:
            try:
                number = float(text)
            except ValueError:
                number = None
            if number is not None and not (math.isfinite(number) and number >= minimum):
                number = None
        if number is None or (above and number <= minimum):
            raise argparse.ArgumentTypeError(f"must be {wanted}, not {text!r}")
        return number

    parse.__name__ = f"{kind.__name__} ({wanted})"
    return parse


def _settings(config_uri):
    from pyramid.paster import get_appsettings

    try:
        raw = get_appsettings(config_uri)
    # A file that does not parse, no [app:main], a `use =` naming no installed package.
    except (configparser.Error, LookupError, importlib.metadata.PackageNotFoundError) as exc:
        raise OperatorError(f"{config_uri}: {_one_line(exc)}") from None
    return settings_module.load({"here": str(Path(config_uri).resolve().parent), **raw})


def _make_dir(path, variable):
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OperatorError(f"{variable}: cannot create {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OperatorError(f"{variable}: {path} is not writable by this user")


def _check_data_dir(settings):
    """DATA_DIR (its tmp/, where staging and the server's body spool go) exists and is
    writable, or the command stops before it starts."""
    _make_dir(Path(settings["data_dir"]) / "tmp", "DATA_DIR")


@contextlib.contextmanager
def _engine(settings):
    url = settings["db_url"]
    if url.startswith("sqlite:///"):
        directory = Path(url[len("sqlite:///"):]).parent
        _make_dir(directory, "DATA_DIR" if directory == Path(settings["data_dir"])
                  else "DB_URL")
    engine = make_engine(url)
    try:
        # Connect once now: a database that is down, refuses us or does not exist is
        # reported before the command starts (the connection goes back to the pool).
        with engine.connect():
            pass
        yield engine
    finally:
        engine.dispose()


def migrate(engine):
    """Alembic upgrade to head; running it again does nothing."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextlib.contextmanager
def _session(settings):
    from sqlalchemy.orm import Session

    with _engine(settings) as engine, Session(engine, expire_on_commit=False) as session:
        yield session


def cmd_migrate(args, settings):
    with _engine(settings) as engine:
        migrate(engine)
    print(f"database at head: {_safe_url(settings['db_url'])}")


def _safe_url(url):
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _read_password(args):
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Again: "):
            raise SystemExit("passwords differ")
    return password


def cmd_create_user(args, settings):
    from collector.accounts import services
    from collector.errors import DomainError

    password = _read_password(args)
    with _session(settings) as session, session.begin():
        try:
            user = services.create_user(session, args.name, password, is_admin=args.admin,
                                        email=args.email or "")
        except DomainError as exc:
            raise SystemExit(f"error: {exc.detail}") from None
        uri = services.provisioning_uri(user)
    role = "admin" if args.admin else "staff"
    print(f"created {role} user {args.name}")
    print("Two-factor authentication is mandatory. Add this to an authenticator app:")
    print(uri)


def cmd_create_token(args, settings):
    from collector.accounts import services, tokens

    with _session(settings) as session, session.begin():
        user = services.get_user_by_name(session, args.user)
        if user is None:
            raise SystemExit(f"error: no user {args.user}")
        # Made by the operator at the server's console: trusted like a TOTP check.
        _, secret = tokens.create_personal_token(session, user, args.name, mfa=True,
                                                 lifetime_days=args.days)
    print(secret)


def _first_run_hint(settings, config_uri, listen=None):
    """While no user exists: a fresh one-time code for the web setup page, and the
    console alternative. Each start makes a new code (only its hash is on disk)."""
    from collector.accounts import services
    from collector.accounts.models import User

    with _session(settings) as session:
        if session.scalar(select(func.count()).select_from(User)):
            services.clear_setup_code(settings["data_dir"])
            return
    code = services.make_setup_code(settings["data_dir"])
    where = f"http://{listen}/setup" if listen else "/setup"
    command = "collector" if os.environ.get("VIRTUAL_ENV") else ".venv/bin/collector"
    print("No user exists yet. Create the first admin in the browser at\n"
          f"    {where}\n"
          f"with the one-time setup code\n    {code}\n"
          "or at the console with:\n"
          f"    {command} -c {config_uri} create-user admin --admin\n", flush=True)


class IdleTrim(threading.Thread):
    """Gives freed heap memory back to the system once the process has gone idle.

    glibc returns free memory to the system only from the top of a heap: what requests
    free in its middle stays resident, so the idle server's RSS crept with the requests it
    had served (measured: 90.9 → 105.8 MB over 200 uploads of 1–8 MiB, then flat) without
    any object being kept. ``malloc_trim(0)`` releases every free page of every arena.
    It runs once per idle spell: after a ``period`` in which the process used under 2 % of
    a CPU, following one in which it did more, never while it is busy.
    """

    def __init__(self, trim, period=2.0):
        super().__init__(name="idle-trim", daemon=True)
        self.trim, self.period = trim, period
        self.stopping = threading.Event()

    def run(self):
        last, trimmed = time.process_time(), True
        while not self.stopping.wait(self.period):
            now = time.process_time()
            busy, last = now - last > 0.02 * self.period, now
            if busy:
                trimmed = False
            elif not trimmed:
                self.trim(0)
                trimmed, last = True, time.process_time()  # not the trim's own CPU


def _tune_malloc(settings):
    """glibc gives each thread its own malloc arena; with 8 workers moving 1 MiB chunks the
    process grows by ~15 MB per big transfer (measured). Two arenas keep it flat.

    With S3 storage, blocks of 4 MiB and more (an upload's 8 MiB parts) also get pages of
    their own, given back when freed: glibc's default threshold rises to the size of each
    big block freed, after which such blocks are carved from the arenas and fragment them
    (measured: peak RSS 144 MB after 1 GiB to S3, 181 MB after 3 GiB; with the fixed
    threshold 143 and 144). Not on local disk, where nothing is that big and the fixed
    threshold slowed downloads (1,350 against 1,500–3,000 MB/s, measured)."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-8, 2)  # M_ARENA_MAX
        if settings["storage.url"]:
            libc.mallopt(-3, 4 * 1024 * 1024)  # M_MMAP_THRESHOLD
        IdleTrim(libc.malloc_trim).start()
    except (OSError, AttributeError):  # not glibc
        pass


def cmd_serve(args, settings):
    from pyramid.paster import get_app, setup_logging

    from collector import server

    # SIGTERM/SIGINT from here on drain the server (a signal during startup included).
    signals = server.Signals().install()
    setup_logging(args.config)
    # LOG_FORMAT=json / LOG_LEVEL over the ini's logging
    logs.configure(settings)
    options = settings_module.waitress_options(settings)
    _first_run_hint(settings, args.config, options.get("listen"))
    _tune_malloc(settings)
    app = get_app(args.config)
    # Connections bounded per client address, idle and slow-headed ones closed early; a
    # body that could not even be spooled to DATA_DIR/tmp is refused (507) at its headers.
    server.serve(app, options, Path(settings["data_dir"]) / "tmp", settings["storage.reserve"],
                 grace=settings["shutdown.grace"], signals=signals,
                 announce=lambda: print(f"serving on http://{options['listen']}", flush=True))


def cmd_purge(args, settings):
    """Remove what the retention rules, expiries and crashes left (``archives.maintenance``
    decides what), printing each item; then compute the md5s a crash left missing."""
    # Every mapper (Archive → Ticket → User …): the ORM resolves relationships by name.
    import collector.models  # noqa: F401
    from collector.archives import checksums, maintenance
    from collector.archives.storage import make_backend, make_upload_stores

    backend = make_backend(settings)
    verb = "would remove" if args.dry_run else "removed"
    count = 0
    with _engine(settings) as engine:
        for item in maintenance.purge(engine, backend, make_upload_stores(settings, backend),
                                      settings, stale_hours=args.stale_hours,
                                      dry_run=args.dry_run):
            print(f"{verb} {item}")
            count += 1
        # Archives a stopped server left without md5 (its background job never ran).
        for archive_id, md5 in checksums.fill_missing(engine, backend, dry_run=args.dry_run):
            print(f"would compute the md5 of archive {archive_id}" if args.dry_run
                  else f"computed the md5 of archive {archive_id}: {md5}")
    print(f"{verb} {count} file(s)")


def cmd_deliver(args, settings):
    """Deliver due webhook events (and check free space): one pass, or a loop for a
    process of its own beside servers started with WEBHOOK_WORKER=false."""
    import collector.models  # noqa: F401
    from collector.archives.storage import make_backend
    from collector.webhooks.worker import Worker

    with _engine(settings) as engine:
        worker = Worker(engine, make_backend(settings), settings)
        while True:
            for delivery_id, outcome in worker.run_once():
                print(f"delivery {delivery_id}: {outcome}", flush=True)
            if not args.loop:
                return
            try:
                time.sleep(args.interval or settings["webhooks.interval"])
            except KeyboardInterrupt:
                return


def cmd_audit_export(args, settings):
    """The audit events of a time range, oldest first, one JSON object a line on stdout."""
    import json

    from collector.audit import services
    from collector.errors import DomainError
    from collector.validation import parse_time

    try:
        filters = {"since": parse_time(args.since, "--since")}
        if args.until:
            filters["until"] = parse_time(args.until, "--until")
    except DomainError as exc:
        raise SystemExit(f"error: {exc.detail}") from None
    with _session(settings) as session:
        for row in services.iter_events(session, filters):
            sys.stdout.write(json.dumps(services.as_json(row), ensure_ascii=False) + "\n")
    sys.stdout.flush()


def cmd_import_original(args, settings):
    """Bring an installation of the original logs-collector into this one."""
    from collector.importer import services
    from collector.importer.source import SourceError

    try:
        summary = services.run_import(settings, args.db, args.archives, dry_run=args.dry_run,
                                      mode=args.mode, merge=args.merge,
                                      lifetime_days=args.lifetime_days)
    except SourceError as exc:
        raise SystemExit(f"error: {exc}") from None
    except KeyboardInterrupt:  # before the first item (the run itself reports its own)
        print("interrupted: run again to continue", file=sys.stderr)
        raise SystemExit(130) from None
    if summary.exit_code:
        raise SystemExit(summary.exit_code)


def _print_report(report):
    """A backup command's report: notes, then one problem a line, then the summary;
    exit status 1 when there is a problem."""
    for note in report.notes:
        print(note)
    for problem in report.problems:
        print(f"problem: {problem}")
    print(report.summary)
    if report.problems:
        raise SystemExit(1)


def cmd_backup(args, settings):
    """A consistent copy of the database and archives into a new directory."""
    from collector.backup import services
    from collector.backup.database import BackupError

    try:
        report = services.backup(settings, args.dest)
    except BackupError as exc:
        raise SystemExit(f"error: {exc}") from None
    _print_report(report)


def cmd_verify(args, settings):
    """Check every archive row against its file (or a backup against its manifest)."""
    from collector.archives.storage import make_backend
    from collector.backup import services
    from collector.backup.database import BackupError

    try:
        if args.backup:
            report = services.verify_backup(args.backup, hashes=args.hashes)
        else:
            backend = make_backend(settings) if settings["storage.url"] else None
            report = services.verify(settings, backend, hashes=args.hashes)
    except BackupError as exc:
        raise SystemExit(f"error: {exc}") from None
    _print_report(report)


def _revisions():
    """The schema revisions this version knows, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(ALEMBIC_DIR))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def cmd_restore(args, settings):
    """A backup into an empty database and an empty data dir."""
    from collector.archives.storage import make_backend
    from collector.backup import services
    from collector.backup.database import BackupError

    def migrate_url(db_url):
        engine = make_engine(db_url)
        try:
            migrate(engine)
        finally:
            engine.dispose()

    try:
        backend = make_backend(settings) if settings["storage.url"] else None
        report = services.restore(settings, args.src, _revisions(), migrate_url, backend)
    except BackupError as exc:
        raise SystemExit(f"error: {exc}") from None
    _print_report(report)


def _version():
    """The installed distribution's version (a wheel, or the editable source tree)."""
    from importlib import metadata

    try:
        return metadata.version("logs-collector")
    except metadata.PackageNotFoundError:  # pragma: no cover - imported from a bare tree
        return "unknown (not installed)"


def parser():
    main = _Parser(prog="collector", description="Logs Collector")
    main.add_argument("-c", "--config", default=os.environ.get("COLLECTOR_CONFIG",
                                                               "development.ini"),
                      help="ini file (default: $COLLECTOR_CONFIG or development.ini)")
    main.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = main.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply database migrations (idempotent)")
    user = commands.add_parser("create-user", help="create a user and enrol TOTP")
    user.add_argument("name")
    user.add_argument("--admin", action="store_true")
    user.add_argument("--email")
    user.add_argument("--password-stdin", action="store_true",
                      help="read the password from the first line of stdin")
    token = commands.add_parser("create-token", help="print a new personal API token")
    token.add_argument("user")
    token.add_argument("--name", default="cli")
    token.add_argument("--days", type=_number(int, 1, "days"), default=None,
                       help="lifetime (default: none)")
    commands.add_parser("serve", help="run the waitress server")
    purge = commands.add_parser("purge", help="remove orphan and stale files")
    purge.add_argument("--dry-run", action="store_true")
    purge.add_argument("--stale-hours", type=_number(float, 0, "hours"), default=6.0,
                       help="staging files, orphan upload files and tus uploads still "
                            "empty this many hours after their creation are stale "
                            "(default 6)")
    deliver = commands.add_parser("deliver", help="send due webhook events (one pass)")
    deliver.add_argument("--loop", action="store_true",
                         help="keep going, a pass every --interval seconds")
    deliver.add_argument("--interval", type=_number(float, 0, "seconds", above=True),
                         default=None,
                         help="seconds between passes (default: WEBHOOK_INTERVAL)")
    audit = commands.add_parser("audit", help="the audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    export = audit_commands.add_parser("export", help="write events as JSON lines to stdout")
    export.add_argument("--since", required=True, help="ISO 8601 date or time (UTC if no "
                        "offset); events at or after it")
    export.add_argument("--until", help="events before it (default: now)")
    imp = commands.add_parser(
        "import-original", help="import an installation of the original logs-collector",
        description="Import users, platforms, tickets (with their upload tokens) and "
        "archives of the original logs-collector. Idempotent: run it again to continue "
        "an interrupted import. Exit status 0: done; 2: done, some items skipped (see "
        "the problems); 130: interrupted.")
    imp.add_argument("--db", required=True, metavar="URL",
                     help="its database: a SQLite file (or sqlite:///path) or a PostgreSQL "
                     "URL (postgresql://, psql://); only read")
    imp.add_argument("--archives", required=True, metavar="DIR",
                     help="its DATA_DIR/archives directory; only read (unless --move)")
    imp.add_argument("--dry-run", action="store_true", help="print what would happen")
    mode = imp.add_mutually_exclusive_group()
    mode.add_argument("--link", dest="mode", action="store_const", const="link",
                      help="hard-link the old files instead of copying (same filesystem)")
    mode.add_argument("--move", dest="mode", action="store_const", const="move",
                      help="remove each old file once its archive is imported")
    imp.set_defaults(mode="copy")
    imp.add_argument("--merge", action="append", default=[], metavar="KIND=HOW",
                     help="resolve conflicts: platforms=existing, users=existing, "
                     "tickets=existing or tickets=offset:N (repeatable)")
    imp.add_argument("--lifetime-days", type=_number(int, 1, "days"), default=None,
                     metavar="DAYS",
                     help="token lifetime of the imported tickets, from now (default: "
                     "TICKET_LIFETIME_DAYS)")
    back = commands.add_parser(
        "backup", help="write a consistent backup into a new directory",
        description="Copy the database (SQLite: online backup; PostgreSQL: pg_dump) and "
        "then the archives its rows name (hard links on the same filesystem; S3: listed "
        "only) into DEST, with manifest.json. DEST must not exist or be empty. The "
        "backup holds password hashes and TOTP secrets: files 0600, directories 0700.")
    back.add_argument("dest", metavar="DEST")
    check = commands.add_parser(
        "verify", help="check that every archive row has its file (or check a backup)",
        description="Exit status 1 and one line per problem when a file is missing or "
        "its size (with --hashes: its sha256) differs from the row's.")
    check.add_argument("--hashes", action="store_true", help="also compare every sha256")
    check.add_argument("--backup", metavar="DIR",
                       help="check this backup directory against its manifest instead")
    rest = commands.add_parser(
        "restore", help="restore a backup into an empty database and data dir",
        description="Checks the backup against its manifest, refuses a database or "
        "DATA_DIR that is not empty, then restores (pg_restore on PostgreSQL), copies "
        "the archives and migrates an older schema forward.")
    rest.add_argument("src", metavar="SRC")
    return main


COMMANDS = {"migrate": cmd_migrate, "create-user": cmd_create_user,
            "create-token": cmd_create_token, "serve": cmd_serve, "purge": cmd_purge,
            "audit": cmd_audit_export, "deliver": cmd_deliver,
            "import-original": cmd_import_original, "backup": cmd_backup,
            "verify": cmd_verify, "restore": cmd_restore}


# Commands that use DATA_DIR whatever the database (the others only through SQLite).
NEEDS_DATA_DIR = {"serve", "purge", "deliver", "import-original"}


def _storage_errors():
    """S3 failures an operator fixes (credentials, endpoint, bucket, permissions). botocore
    is loaded only with an s3:// STORAGE_URL; without it none of these can happen."""
    botocore = sys.modules.get("botocore.exceptions")
    if botocore is None:
        return ()
    return (botocore.NoCredentialsError, botocore.PartialCredentialsError,
            botocore.EndpointConnectionError, botocore.ConnectTimeoutError,
            botocore.ClientError)


def run(args):
    """The command, with what the operator can fix turned into ``OperatorError``.

    The line drawn: settings that are refused (``SettingsError``, also those found late,
    such as boto3 missing for an s3:// URL), a config file that cannot be read, a data
    directory that cannot be written, the server's address, a database that cannot be
    reached or used (``OperationalError``: connection refused, wrong password, unknown
    database, a locked or read-only file — never a programming error such as bad SQL or
    a constraint), and S3's credential, endpoint and permission errors. Every other
    exception is a bug and keeps its traceback."""
    from collector.server import ListenError

    try:
        settings = _settings(args.config)
        if args.command in NEEDS_DATA_DIR:
            _check_data_dir(settings)
    except settings_module.SettingsError as exc:
        raise OperatorError(exc) from None
    # What a command records in the audit log reaches the webhooks, as in the server.
    webhooks.listen()
    try:
        COMMANDS[args.command](args, settings)
    except (settings_module.SettingsError, ListenError) as exc:
        raise OperatorError(exc) from None
    except (sa_exc.OperationalError, sa_exc.ProgrammingError) as exc:
        # A table missing: a database not migrated (SQLite says so with an
        # OperationalError, PostgreSQL with SQLSTATE 42P01); other ProgrammingErrors are bugs.
        missing_table = getattr(exc.orig, "sqlstate", None) == "42P01" or \
            "no such table" in str(exc.orig)
        if isinstance(exc, sa_exc.ProgrammingError) and not missing_table:
            raise
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else _one_line(exc)
        hint = " (has `collector migrate` run?)" if missing_table else ""
        raise OperatorError(f"DB_URL: {_safe_url(settings['db_url'])}: {reason}{hint}") \
            from None
    except _storage_errors() as exc:
        raise OperatorError(f"STORAGE_URL: {settings['storage.url']}: "
                            f"{_one_line(exc)}") from None


def main(argv=None):
    args = parser().parse_args(argv)
    if not Path(args.config).is_file():
        raise SystemExit(f"error: config file {args.config} not found")
    try:
        run(args)
    except OperatorError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":  # pragma: no cover
    main()
