"""Shared fixtures: one app per session and backend, one rolled-back transaction per test.

The functional suite runs on PostgreSQL (``TEST_DB_URL``; ``.ci/run`` sets it). Tests marked
``sqlite`` run on SQLite as well: they cover what differs between the engines (locking, WAL,
migrations, concurrency, the importer, dialect-specific SQL). Without ``TEST_DB_URL`` the
whole functional suite runs on SQLite instead, and the session header says so.

The schema is built once per backend by the real alembic migrations (tests/databases.py).
By default a test runs inside one outer transaction that is rolled back at its end: every
transaction the app, the throttles, the audit log or the factory begins is a savepoint in
it. Tests marked ``commits`` (and every test that uses ``live_server``) commit for real and
the tables are emptied after them. The app is built once per backend and settings, not per
test; its data dir is emptied and its settings restored after each test.
"""

import os
import re
import shutil
import sys
import threading

import pyotp
import pytest
import webtest
from cornice.service import get_services
from databases import Database, ThrowawayPostgres
from pyramid.interfaces import IExceptionResponse
from sqlalchemy.orm import Session

from collector import main
from collector import resources as _r


def _postgres_url():
    url = os.environ.get("TEST_DB_URL", "")
    if not url:
        return None
    from collector.settings import as_db_url

    return as_db_url(url)


def pytest_configure(config):
    """Without TEST_DB_URL: a throwaway PostgreSQL server when the local binaries allow it
    (started here, in the main process, before the xdist workers that inherit the URL)."""
    config._throwaway_postgres = None
    if os.environ.get("TEST_DB_URL") or hasattr(config, "workerinput"):
        return
    server = ThrowawayPostgres()
    url = server.start()
    if url is None:
        config._no_postgres_reason = server.missing
        return
    config._throwaway_postgres = server
    os.environ["TEST_DB_URL"] = url


def pytest_unconfigure(config):
    server = getattr(config, "_throwaway_postgres", None)
    if server is not None:
        server.stop()
        os.environ.pop("TEST_DB_URL", None)


def pytest_report_header(config):
    if _postgres_url() is None:
        reason = getattr(config, "_no_postgres_reason", "")
        return ("database: TEST_DB_URL is not set and no PostgreSQL could be started "
                f"({reason}): THE FUNCTIONAL SUITE RUNS ON SQLITE ONLY (set "
                "TEST_DB_URL=postgresql://… to run it on PostgreSQL, as CI does)")
    if getattr(config, "_throwaway_postgres", None) is not None:
        return ("database: a throwaway PostgreSQL server (TEST_DB_URL was not set); tests "
                "marked sqlite on SQLite too")
    return "database: PostgreSQL (TEST_DB_URL); tests marked sqlite on SQLite too"


def pytest_terminal_summary(terminalreporter, config):
    if _postgres_url() is None and not hasattr(config, "workerinput"):
        terminalreporter.write_line(
            "NOTE: the functional suite ran on SQLite only (no TEST_DB_URL, no local "
            "PostgreSQL); CI runs it on PostgreSQL.", yellow=True, bold=True)


def _backends(definition):
    if _postgres_url() is None:
        return ["sqlite"]
    if definition.get_closest_marker("sqlite") is not None:
        return ["sqlite", "postgresql"]
    return ["postgresql"]


def pytest_generate_tests(metafunc):
    if "db_backend" in metafunc.fixturenames:
        metafunc.parametrize("db_backend", _backends(metafunc.definition), indirect=True)


@pytest.fixture
def db_backend(request):
    """"sqlite" or "postgresql": see ``pytest_generate_tests``."""
    return request.param


@pytest.fixture(scope="session")
def _databases(tmp_path_factory):
    """{backend: Database}, each made (and migrated) when a test first needs it."""
    made = {}

    def get(backend):
        if backend not in made:
            if backend == "sqlite":
                made[backend] = Database.sqlite(tmp_path_factory.mktemp("db"))
            else:
                made[backend] = Database.postgresql(_postgres_url())
        return made[backend]

    yield get
    for database in made.values():
        database.close()


def _commits(request):
    return (request.node.get_closest_marker("commits") is not None
            or "live_server" in request.fixturenames)


@pytest.fixture
def engine(request, db_backend, _databases):
    """The test's engine: the rolled-back one, or the real one for ``commits`` tests."""
    database = _databases(db_backend)
    if _commits(request):
        yield database.engine
        # An index builder still running would write into the next test's tables.
        from collector.archives.inspect import store

        store.wait_for_builders()
        database.empty()
    else:
        roll_back = database.rolled_back()
        try:
            yield database.rollback_engine
        finally:
            roll_back()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server on 127.0.0.1 (tests/s3server.py), one per session, credentials in
    the environment as boto3 expects them; stopped by its PID at the end."""
    from s3server import ENVIRON, S3Server

    server = S3Server(tmp_path_factory.mktemp("s3") / "moto.log")
    try:
        with pytest.MonkeyPatch.context() as patch:
            for variable, value in ENVIRON.items():
                patch.setenv(variable, value)
            yield server
    finally:
        server.stop()


@pytest.fixture
def storage_kind():
    """Where the app keeps archives: the local disk, unless a test is marked
    ``@on_both_storages`` (tests/s3server.py), which runs it on S3 as well."""
    return "local"


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing():
    """argon2 at production cost takes ~0.1 s a hash; tests hash hundreds of passwords."""
    import argon2

    from collector.accounts import services

    production = services._hasher
    services._hasher = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    services._hasher = production


@pytest.fixture(scope="session")
def _data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def data_dir(_data_root):
    """The app's DATA_DIR, the same for every test of the session (the app is), emptied
    after each test."""
    path = _data_root / "data"
    path.mkdir(exist_ok=True)
    yield path
    _empty_dir(path)


def _empty_dir(path):
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            child.chmod(0o700)  # a test may have made it read-only
            shutil.rmtree(child)
        else:
            child.unlink()


@pytest.fixture(scope="session")
def _s3_storage(s3_server):
    """The S3 settings of the session's app on S3: one prefix of the bucket for all its
    tests (the app is built once), emptied after each (``settings``)."""
    return s3_server.settings()


@pytest.fixture
def settings(engine, data_dir, storage_kind, request):
    storage = {}
    if storage_kind == "s3":
        storage = request.getfixturevalue("_s3_storage")
        s3_server = request.getfixturevalue("s3_server")
        prefix = storage["storage.url"].split("/", 3)[3] + "/"
        request.addfinalizer(lambda: s3_server.empty(prefix))
    return {**storage,
        "debug": "true",
        "secret_key": "test-secret-key-0123456789",
        "db_url": str(engine.url.render_as_string(hide_password=False)),
        "data_dir": str(data_dir),
        "collector.engine": engine,
        "storage.reserve": "0",
        # No webhook/low-space worker thread: tests run its passes themselves.
        "webhooks.worker": "false",
        # No md5 thread either: it would write from another thread into the rolled-back
        # transaction; the md5 tests turn it on with real commits (test_md5_background).
        "md5.worker": "false",
        "upload.max_size": "64MiB",
    }


def _settings_key(settings):
    return tuple(sorted((name, value if isinstance(value, (str, int, float, bool)) else id(value))
                        for name, value in settings.items()))


@pytest.fixture(scope="session")
def _apps():
    """{settings key: (app, its settings, its storage's state)}: ``main()`` takes ~0.2 s."""
    return {}


@pytest.fixture
def app(settings, _apps, data_dir):
    """The app for these settings, built once per session. What a test may change in it —
    settings, the storage backend's attributes (a quota, the cached "writable" and
    usage) — is put back afterwards. Built per test with metrics on (its counters would
    carry over from test to test)."""
    if settings.get("metrics.token"):
        yield main({}, **settings)
        return
    key = _settings_key(settings)
    if key not in _apps:
        application = main({}, **settings)
        registry = _registry_of(application)
        _apps[key] = (application, dict(registry.settings),
                      dict(vars(registry["archive_storage"])))
    application, built_settings, built_storage = _apps[key]
    # The data dir was emptied after the last test: what main() made in it, again.
    for name in ("tmp", "uploads", "index", "archives"):
        (data_dir / name).mkdir(exist_ok=True)
    yield application
    registry = _registry_of(application)
    registry.settings.clear()
    registry.settings.update(built_settings)
    storage = vars(registry["archive_storage"])
    storage.clear()
    storage.update(built_storage)


@pytest.fixture
def testapp(app):
    return webtest.TestApp(app, extra_environ={"HTTP_HOST": "localhost",
                                               "REMOTE_ADDR": "127.0.0.1"})


class StoredArchives:
    """What the app's archive backend holds, whichever it is (local disk or S3)."""

    def __init__(self, backend):
        self.backend = backend

    def keys(self):
        return sorted(self.backend.keys())

    def read(self, key):
        with self.backend.open(key) as handle:
            return handle.read()

    def leftovers(self):
        """Staging a failed request left behind (files in DATA_DIR/tmp, multipart uploads)."""
        return [str(item) for item in self.backend.stale_staging(0)]


@pytest.fixture
def stored(app):
    return StoredArchives(app.registry["archive_storage"])


@pytest.fixture
def dbsession(engine, app):
    session = Session(engine, expire_on_commit=False)
    yield session
    session.close()


class Factory:
    """Makes rows through the real services and commits them."""

    def __init__(self, session, app):
        self.session = session
        self.settings = app.registry.settings
        self.count = 0

    def user(self, name=None, admin=False, password="correct horse battery", totp=True):
        from collector.accounts import services

        self.count += 1
        user = services.create_user(self.session, name or f"user{self.count}", password,
                                    is_admin=admin, totp=totp)
        self.session.commit()
        user.password = password
        return user

    def otp(self, user, step_offset=0):
        totp = pyotp.TOTP(user.totp_secret)
        import time

        return totp.at(time.time() + step_offset * totp.interval)

    def token(self, user, mfa=True):
        from collector.accounts import tokens

        _, secret = tokens.create_personal_token(self.session, user, "test", mfa=mfa)
        self.session.commit()
        return {"Authorization": f"Bearer {secret}"}

    def platform(self, name="vm6", restricted=False, members=()):
        from collector.tickets import services

        platform = services.create_platform(self.session, name, name.upper(), restricted,
                                            [m.id for m in members])
        self.session.commit()
        return platform

    def ticket(self, platform, number=None, user=None, **kwargs):
        from collector.tickets import services

        self.count += 1
        ticket = services.create_ticket(self.session, self.settings, user, platform,
                                        number or 1000 + self.count, **kwargs)
        self.session.commit()
        return ticket


@pytest.fixture
def factory(dbsession, app):
    return Factory(dbsession, app)


@pytest.fixture
def staff(factory):
    user = factory.user("staff")
    user.headers = factory.token(user)
    return user


@pytest.fixture
def admin(factory):
    user = factory.user("root", admin=True)
    user.headers = factory.token(user)
    return user


@pytest.fixture
def web_login(factory):
    """``login(testapp, user)``: sign in through the real pages, /login then /verify.

    The testapp keeps the session cookie (user_id + mfa) and is returned. ``user`` needs
    ``.password`` (factory users have it) or pass ``password=``.
    """

    def login(testapp, user, password=None):
        page = testapp.get("/login")
        form = page.forms["login-form"]
        form["username"] = user.username
        form["password"] = password or user.password
        page = form.submit(status=303).follow()
        form = page.forms["verify-form"]
        form["code"] = _unused_totp_code(factory.session, user)
        form.submit(status=303)
        return testapp

    return login


def _unused_totp_code(session, user):
    """A code of a time step the user has not used yet (a code is accepted only once)."""
    import time

    session.refresh(user)
    totp = pyotp.TOTP(user.totp_secret)
    now_step = int(time.time() // totp.interval)
    step = next((s for s in (now_step, now_step + 1) if s > user.totp_last_step), None)
    if step is None:
        # A third sign-in of the same user within one step: a test helper may forget the
        # last step (the replay rule itself is tested without this helper).
        user.totp_last_step = -1
        step = now_step
    session.commit()
    return totp.at(step * totp.interval)


@pytest.fixture
def live_server(app):
    """The app under a real waitress server on 127.0.0.1 (a random free port)."""
    import waitress.server

    server = waitress.server.create_server(app, host="127.0.0.1", port=0, threads=8,
                                           channel_timeout=10, ident="test")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    host, port = server.effective_host, server.effective_port
    yield f"http://{host}:{port}"
    # Workers first (they poke the trigger), then every socket, closed by the loop thread
    # itself so it never selects on a closed descriptor; the loop ends when none is left.
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=10)

    def close_all():
        for channel in list(server._map.values()):
            if channel is not server.trigger:
                channel.close()
        server.trigger.close()

    try:
        server.trigger.pull_trigger(close_all)
    except OSError as exc:
        # The trigger's descriptor is already gone (seen once in 1,600 tests under
        # xdist: EBADF): nothing can wake the loop to close its channels. What the test
        # checked stands; the daemon thread is left with its sockets and ends with the
        # worker.
        print(f"live_server: could not wake the server loop to stop it: {exc}",
              file=sys.stderr)
        return
    thread.join(timeout=10)
    assert not thread.is_alive(), "the test server did not stop"


# --- the app's endpoints, read from its registry (the ACL matrix, CSRF and header tests) ---
#
# Pages are registered by ``context=`` and ``name=`` on the traversal tree: a page's pattern
# is its context's canonical path (PAGE_PATHS) plus the view name. API routes and static
# views come from the introspector's routes; their views (cornice's, one per method) from
# its views. Cornice's own catch-all views (its 405 answer) and exception views are not
# endpoints. A view added anywhere in the app shows up here, and so in those tests' tables.

# The canonical address of every traversal context that has pages.
PAGE_PATHS = {
    _r.Root: "/",
    _r.PlatformContainer: "/platforms/",
    _r.PlatformNode: "/platforms/{name}/",
    _r.TicketContainer: "/tickets/",
    _r.TicketNode: "/platforms/{name}/tickets/{number}/",
    _r.ArchiveNode: "/platforms/{name}/tickets/{number}/archives/{id}/",
    _r.AccountNode: "/account/",
    _r.AdminContainer: "/admin/",
    _r.UserContainer: "/admin/users/",
    _r.UserNode: "/admin/users/{id}/",
    _r.WebhookContainer: "/admin/webhooks/",
    _r.WebhookNode: "/admin/webhooks/{id}/",
}

# A view without a request_method predicate answers every method; these are the ones a
# client can send it (HEAD is GET's).
ANY_METHOD = ("GET", "POST")


def _registry_of(app):
    while not hasattr(app, "registry"):
        app = app.app  # the access-log middleware
    return app.registry


def _pattern(route_pattern):
    """``/api/v1/tickets/{number}{slash:/?}`` → ``/api/v1/tickets/{number}/``."""
    pattern = route_pattern.replace("{slash:/?}", "/")
    pattern = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", pattern)
    return pattern if pattern.startswith("/") else "/" + pattern


def _is_exception_view(context):
    if isinstance(context, type):
        return issubclass(context, BaseException) or IExceptionResponse.implementedBy(context)
    return context is not None and context.isOrExtends(IExceptionResponse)


def _endpoints(app):
    """{(method, pattern): kind} for every endpoint; kind is "page", "api" or "static".

    Raises AssertionError, readably, for a page whose context has no canonical path.
    """
    introspector = _registry_of(app).introspector
    routes = {item["introspectable"]["name"]: item["introspectable"]
              for item in introspector.get_category("routes")}
    found, unknown = {}, []
    for item in introspector.get_category("views"):
        view = item["introspectable"]
        context, route_name = view["context"], view["route_name"]
        if _is_exception_view(context):
            continue
        methods = view["request_methods"]
        methods = (methods,) if isinstance(methods, str) else (methods or ANY_METHOD)
        if route_name is not None:
            if "fallback_view" in getattr(view["callable"], "__qualname__", ""):
                continue  # cornice's 405 for the methods a service does not define
            route = routes[route_name]
            pattern = _pattern(route["pattern"])
            kind = "static" if route_name.startswith("__static") else "api"
            if kind == "static":
                methods = ("GET",)
        else:
            if context not in PAGE_PATHS:
                unknown.append(f"{context.__name__} (view {view['name']!r})")
                continue
            pattern = PAGE_PATHS[context] + view["name"]
            kind = "page"
        for method in methods:
            found[(method, pattern)] = kind
    assert not unknown, ("pages on contexts without a canonical path in "
                         f"tests/conftest.py PAGE_PATHS: {unknown}")
    return found


def _cornice_endpoints(app):
    """{(method, pattern)} of every cornice service's defined methods (a cross-check)."""
    routes = {item["introspectable"]["name"]: item["introspectable"]
              for item in _registry_of(app).introspector.get_category("routes")}
    result = set()
    for service in get_services():
        route = routes[service.pyramid_route]
        for method, _, _ in service.definitions:
            result.add((method, _pattern(route["pattern"])))
    return result


def _compare_endpoints(found, table, what):
    """A readable message for keys found but not in the table, and stale table keys."""
    missing = sorted(set(found) - set(table))
    stale = sorted(set(table) - set(found))
    lines = []
    if missing:
        lines.append(f"served by the app but missing from {what}:")
        lines += [f"    {m} {p}" for m, p in missing]
    if stale:
        lines.append(f"in {what} but no longer served by the app:")
        lines += [f"    {m} {p}" for m, p in stale]
    return "\n".join(lines)


@pytest.fixture
def app_endpoints(app):
    """{(method, pattern): "page" | "api" | "static"} of every endpoint the app serves."""
    return _endpoints(app)


@pytest.fixture
def app_cornice_endpoints(app):
    return _cornice_endpoints(app)


@pytest.fixture
def endpoint_table_diff():
    """``diff(found, table, what)``: a readable list of missing and stale table keys."""
    return _compare_endpoints
