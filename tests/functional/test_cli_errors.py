"""What an operator can fix is one line on stderr (``error: …``) naming the setting or
argument, exit status 1 (2 for arguments), for every command; a bug keeps its traceback.
And ``pserve`` runs the same server as ``collector serve``; ``pshell`` gets the session.

The commands run as processes of their own (forked from the fork server, which imported
the collector once: a tenth of a new interpreter's start), so that a traceback would
reach their stderr as it would the terminal."""

import errno
import os
import socket
import subprocess
import sys
import time
from configparser import ConfigParser
from pathlib import Path

import pytest
from forkserver import ForkServer

from collector import cli, server
from collector.settings import ENV_OVERRIDES

ROOT = Path(__file__).parents[2]
INI = """[app:main]
use = egg:logs-collector
debug = true
secret_key = cli-errors-secret-0123456789
data_dir = {data_dir}
webhooks.worker = false
{extra}
[server:main]
use = call:collector.server:paste_server

[pshell]
setup = collector.shell.setup
"""


def _clean_env(**changes):
    """The test's environment without any setting's variable, with ``changes``."""
    ours = {variable for _, variable, _, _ in ENV_OVERRIDES}
    return {**{k: v for k, v in os.environ.items() if k not in ours}, **changes}


def write_ini(directory, extra="", name="test.ini"):
    path = directory / name
    path.write_text(INI.format(data_dir=directory / "data", extra=extra))
    return path


@pytest.fixture(scope="module")
def ini(tmp_path_factory):
    """A development-style ini on a migrated SQLite database of its own."""
    path = write_ini(tmp_path_factory.mktemp("cli-errors"))
    code, lines = collector(path, "migrate")
    assert code == 0, lines
    return path


def collector(ini, *args, **env):
    """Run ``collector -c INI ARGS`` with these variables: (exit status, stderr lines);
    its stdout is left in ``stdout`` beside the ini."""
    out, err = ini.parent / "stdout", ini.parent / "stderr"
    out.unlink(missing_ok=True)
    err.unlink(missing_ok=True)
    child = ForkServer.get().spawn(["-c", str(ini), *args], _clean_env(**env), out, err)
    code = child.wait(timeout=60)
    return code, err.read_text().splitlines()


def assert_one_line(lines, *words):
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and "Traceback" not in lines[0]
    for word in words:
        assert word in lines[0], (word, lines)


@pytest.mark.parametrize("args,env,words", [
    # Engines other than SQLite and PostgreSQL: refused before a driver is looked for; the
    # password never shown.
    (["migrate"], {"DB_URL": "mysql://logs:s3cret@db/logs"}, ["DB_URL", "mysql://…"]),
    (["create-user", "x", "--password-stdin"], {"DB_URL": "postgresql://u@127.0.0.1:1/x"},
     ["DB_URL", "127.0.0.1:1", "refused"]),
    # A database never migrated.
    (["create-token", "nobody"], {"DATA_DIR": "{tmp}/fresh"},
     ["DB_URL", "no such table", "collector migrate"]),
    (["purge"], {"DATA_DIR": "{tmp}/test.ini/data"}, ["DATA_DIR", "Not a directory"]),
    (["migrate"], {"DATA_DIR": "{tmp}/test.ini/data"}, ["DATA_DIR", "Not a directory"]),
    (["serve"], {"WAITRESS_LISTEN": "nonsense"}, ["WAITRESS_LISTEN", "'nonsense'"]),
    (["serve"], {"WAITRESS_LISTEN": "127.0.0.1:65536"}, ["WAITRESS_LISTEN", "0–65535"]),
    (["audit", "export", "--since", "2024-01-01"], {"TICKET_ATTEMPTS": "-1"},
     ["TICKET_ATTEMPTS", "1 or more", "-1"]),
    (["deliver"], {"RETENTION_MAX_DAYS": "-3"}, ["RETENTION_MAX_DAYS", "0 or more"]),
    (["migrate"], {"WEBHOOK_INTERVAL": "nan"}, ["WEBHOOK_INTERVAL"]),
    (["migrate"], {"STORAGE_URL": "s3://logs"}, ["STORAGE_QUOTA"]),
    # The old database of an import: the same rules, the password never shown.
    (["import-original", "--db", "mysql://u:s3cret@h/x", "--archives", "/"], {},
     ["--db", "mysql://…"]),
    (["import-original", "--db", "postgresql://u:s3cret@127.0.0.1:1/x", "--archives", "/"],
     {}, ["cannot read the old database", "refused"]),
], ids=lambda value: value[0] if isinstance(value, list) else None)
def test_settings_the_database_and_the_disk(ini, args, env, words):
    env = {key: value.format(tmp=ini.parent) for key, value in env.items()}
    code, lines = collector(ini, *args, **env)
    assert code == 1
    assert_one_line(lines, *words)
    assert "s3cret" not in lines[0]


def test_unknown_database_and_role_on_postgresql(ini):
    url = os.environ.get("TEST_DB_URL")
    if not url or not url.startswith(("postgresql", "psql")):
        pytest.skip("needs TEST_DB_URL on PostgreSQL")
    base = url.rsplit("/", 1)[0]
    code, lines = collector(ini, "migrate", DB_URL=f"{base}/no_such_database_here")
    assert code == 1
    assert_one_line(lines, "DB_URL", "no_such_database_here", "does not exist")
    host = base.split("@", 1)[-1]
    code, lines = collector(ini, "migrate", DB_URL=f"postgresql://nobody:pw@{host}/x")
    assert code == 1
    assert_one_line(lines, "DB_URL", "nobody:***@", '"nobody"')


def test_the_listen_address_is_busy(ini):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, lines = collector(ini, "serve", WAITRESS_LISTEN=f"127.0.0.1:{port}")
    assert code == 1
    assert_one_line(lines, "WAITRESS_LISTEN", f"127.0.0.1:{port}", "Address already in use")
    # Not "serving on …" first: that is said once the address is ours.
    assert "serving on" not in (ini.parent / "stdout").read_text()


def test_a_low_port_without_the_privilege(monkeypatch, tmp_path):
    """As root the test cannot be refused a port below 1024: bind() is made to answer as
    the kernel answers everyone else."""
    def refuse(self):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(server.GuardedServer, "bind_server_socket", refuse)
    options = {"listen": "127.0.0.1:80", "threads": 1, "connection_limit_per_address": 1,
               "idle_timeout": 1, "header_timeout": 1}
    with pytest.raises(server.ListenError, match="WAITRESS_LISTEN: cannot listen on "
                       r"127.0.0.1:80: Permission denied \(ports below 1024 need root"):
        server.create(None, options, tmp_path, 0)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_data_dir_this_user_cannot_write(ini, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, lines = collector(ini, "purge", DATA_DIR=str(locked / "data"))
    assert code == 1
    assert_one_line(lines, "DATA_DIR", "Permission denied")


@pytest.mark.parametrize("text,words", [
    ("not an ini file\n", ["no section headers"]),
    ("[app:other]\nuse = egg:logs-collector\n", ["No section 'main'"]),
    ("[app:main]\nuse = egg:logs-collector\ndata_dir = %(nowhere)s/x\n", ["nowhere"]),
    ("[app:main]\nuse = egg:logs-collector\n  stray continuation\nx\n", ["parsing errors"]),
])
def test_a_config_file_that_does_not_parse(tmp_path, text, words):
    path = tmp_path / "broken.ini"
    path.write_text(text)
    code, lines = collector(path, "migrate")
    assert code == 1
    assert_one_line(lines, str(path), *words)


def test_unknown_keys_of_the_app_section_are_refused(tmp_path):
    """A typo would run with the default; pyramid's own keys and paste's stay allowed."""
    extra = "pyramid.includes =\npyramid.reload_templates = true\n"
    code, lines = collector(write_ini(tmp_path, extra + "waitress.thread = 4\n"), "migrate")
    assert code == 1
    assert_one_line(lines, "waitress.thread:", "unknown setting", "did you mean "
                    "waitress.threads?")
    code, lines = collector(write_ini(tmp_path, extra + "waitress.threads = 4\n"), "migrate")
    assert code == 0, lines


@pytest.mark.parametrize("args,argument", [
    (["purge", "--stale-hours", "-5"], "--stale-hours"),
    (["purge", "--stale-hours", "inf"], "--stale-hours"),
    (["create-token", "admin", "--days", "-3"], "--days"),
    (["create-token", "admin", "--days", "0"], "--days"),
    (["deliver", "--interval", "0"], "--interval"),
    (["import-original", "--db", "x", "--archives", "y", "--lifetime-days", "-1"],
     "--lifetime-days"),
])
def test_negative_numbers_on_the_command_line(ini, args, argument):
    code, lines = collector(ini, *args)
    assert code == 2
    assert_one_line(lines, f"argument {argument}:", "must be", f"collector {args[0]} -h")


def test_s3_without_boto3(tmp_path):
    """A real interpreter (boto3 must not be imported yet): the import refused as if the
    package were not installed."""
    code = ("import sys; sys.modules['boto3'] = None; from collector.cli import main; "
            f"main(['-c', {str(write_ini(tmp_path))!r}, 'purge'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_clean_env(STORAGE_URL="s3://logs/x", STORAGE_QUOTA="1GiB"),
                          timeout=60)
    assert done.returncode == 1
    assert_one_line(done.stderr.splitlines(), "STORAGE_URL", "boto3", "logs-collector[s3]")


def test_a_bug_keeps_its_traceback(ini, monkeypatch):
    """Only the errors named in ``cli.run`` become one line."""
    def broken(args, settings):
        raise ZeroDivisionError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "migrate", broken)
    with pytest.raises(ZeroDivisionError):
        cli.main(["-c", str(ini), "migrate"])


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pserve(ini, **env):
    return subprocess.Popen([sys.executable, "-m", "pyramid.scripts.pserve", str(ini)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_clean_env(**env))


def test_pserve_runs_the_collector_server_with_the_environment(ini):
    """``WAITRESS_LISTEN`` is honoured, and a body that cannot fit beside the reserve is
    refused at its headers (507), before waitress spools a byte: collector.server's."""
    port = _free_port()
    proc = _pserve(ini, WAITRESS_LISTEN=f"127.0.0.1:{port}", STORAGE_RESERVE="1000000TiB")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, \
                    proc.communicate()
                time.sleep(0.1)
        with conn:
            conn.sendall(b"POST /api/v1/archives/ HTTP/1.1\r\nHost: localhost\r\n"
                         b"Content-Length: 10485760\r\nUpload-Token: x\r\n\r\n")
            answer = b""
            while chunk := conn.recv(4096):  # the answer ends with the connection
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 507 ")
        assert b"not enough free space" in answer
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def _pserve_refusal(ini, monkeypatch, **env):
    """pserve's own command in this process, up to its refusal: the message its SystemExit
    carries, which Python prints as the one line on stderr (no traceback)."""
    from pyramid.scripts.pserve import main as pserve

    for variable in {variable for _, variable, _, _ in ENV_OVERRIDES}:
        monkeypatch.delenv(variable, raising=False)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as refused:
        pserve(["pserve", str(ini)], quiet=True)
    assert isinstance(refused.value.code, str)
    return refused.value.code.splitlines()


@pytest.mark.parametrize("extra,env,words", [
    ("", {"TICKET_ATTEMPTS": "-1"}, ["TICKET_ATTEMPTS"]),
    ("", {"WAITRESS_LISTEN": "127.0.0.1:65536"}, ["WAITRESS_LISTEN"]),
    ("", {"DATA_DIR": "/dev/null/data"}, ["DATA_DIR", "Not a directory"]),
    ("waitress.thread = 2\n", {}, ["waitress.thread:"]),
])
def test_pserve_refuses_bad_settings_in_one_line(tmp_path, monkeypatch, extra, env, words):
    assert_one_line(_pserve_refusal(write_ini(tmp_path, extra), monkeypatch, **env), *words)


def test_pserve_refuses_options_in_its_own_section(tmp_path, monkeypatch):
    path = write_ini(tmp_path)
    path.write_text(path.read_text().replace(
        "use = call:collector.server:paste_server\n",
        "use = call:collector.server:paste_server\nlisten = 127.0.0.1:6543\n"))
    assert_one_line(_pserve_refusal(path, monkeypatch), "[server:main] listen: ",
                    "waitress.*")


@pytest.mark.parametrize("name", ["development.ini", "production.ini"])
def test_the_shipped_ini_files_use_the_collector_server_and_shell(name):
    config = ConfigParser(interpolation=None)
    config.read(ROOT / name)
    assert dict(config["server:main"]) == {"use": "call:collector.server:paste_server"}
    assert config["pshell"]["setup"] == "collector.shell.setup"


def test_pshell_gets_the_session_the_models_and_the_storage(ini):
    """pshell's own command, with a shell that runs a few lines and leaves without
    committing: nothing it added is written."""
    from pyramid.scripts.pshell import PShellCommand
    from sqlalchemy import create_engine, func, select

    from collector.archives.storage import StorageManager
    from collector.settings import as_db_url

    seen = {}

    def shell(env, help):
        models = env["models"]
        env["dbsession"].add(models.Platform(name="from-pshell", pretty_name="P"))
        env["dbsession"].flush()
        seen["count"] = env["dbsession"].scalar(
            env["select"](func.count()).select_from(models.Platform))
        seen["storage"] = env["storage"]
        seen["help"] = help

    PShellCommand(["pshell", str(ini)], quiet=True).run(shell=shell)
    assert seen["count"] == 1
    assert isinstance(seen["storage"], StorageManager)
    assert "dbsession" in seen["help"] and "models" in seen["help"]
    engine = create_engine(as_db_url(f"sqlite:///{ini.parent / 'data' / 'db.sqlite3'}"))
    with engine.connect() as connection:
        from collector.tickets.models import Platform

        assert connection.scalar(select(func.count()).select_from(Platform)) == 0
    engine.dispose()


def test_every_numeric_option_has_a_bounded_type():
    """A new ``type=int``/``type=float`` option would take negative numbers: each numeric
    option of every command goes through ``cli._number``."""
    import argparse

    def actions(parser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from actions(sub)
            else:
                yield action

    types = [action.type for action in actions(cli.parser()) if action.type is not None]
    assert int not in types and float not in types
    assert len([t for t in types if " (at least" in t.__name__ or "more than" in t.__name__]) \
        == 4
