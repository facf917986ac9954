"""Settings: ini defaults, env overrides, production refusals, docs/configuration.md's table."""

import re
from pathlib import Path

import pytest

from collector import settings as s


def test_env_overrides_and_types():
    loaded = s.load({"debug": "true", "secret_key": "x", "data_dir": "/srv/lc"}, {
        "UPLOAD_MAX_SIZE": "2GiB", "WAITRESS_THREADS": "16", "ALLOWED_HOSTS": "a.example, b",
        "DB_URL": "psql://u:p@db/logs", "TICKET_ATTEMPTS": "9"})
    assert loaded["upload.max_size"] == 2 * 1024**3
    assert loaded["waitress.threads"] == 16
    assert loaded["allowed_hosts"] == ["a.example", "b"]
    assert loaded["db_url"] == "postgresql+psycopg://u:p@db/logs"
    assert loaded["ticket.attempts"] == 9
    assert loaded["waitress.max_request_body_size"] == 2 * 1024**3 + 1024**2


def test_default_database_is_sqlite_in_data_dir(tmp_path):
    loaded = s.load({"debug": "true", "data_dir": str(tmp_path)}, {})
    assert loaded["db_url"] == f"sqlite:///{tmp_path}/db.sqlite3"
    assert s.as_db_url("postgresql://h/db") == "postgresql+psycopg://h/db"


@pytest.mark.parametrize("secret", ["", "change-me", "dev-insecure-secret-key-change-me",
                                    "short"])
def test_production_refuses_weak_secret_key(secret):
    with pytest.raises(s.SettingsError, match="SECRET_KEY"):
        s.load({"debug": "false"}, {"SECRET_KEY": secret})


@pytest.mark.parametrize("variable,value", [("DEBUG", "perhaps"), ("UPLOAD_MAX_SIZE", "big"),
                                            ("TZ", "Mars/Olympus"), ("WAITRESS_THREADS", "x")])
def test_bad_values_name_the_variable(variable, value):
    with pytest.raises(s.SettingsError, match=variable):
        s.load({"debug": "true"}, {variable: value})


def test_configuration_doc_documents_exactly_the_variables_of_the_table():
    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    section = doc.split("<!-- settings-table -->")[1]
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", section, re.MULTILINE))
    assert documented == {variable for _, variable, _, _ in s.ENV_OVERRIDES}


def test_storage_url_is_local_or_s3_and_s3_needs_a_quota():
    assert s.load({"debug": "true"}, {})["storage.url"] == ""
    loaded = s.load({"debug": "true"}, {"STORAGE_URL": "s3://logs.example/collector",
                                        "STORAGE_QUOTA": "2TiB"})
    assert (loaded["storage.url"], loaded["storage.quota"]) == (
        "s3://logs.example/collector", 2 * 1024**4)
    with pytest.raises(s.SettingsError, match="STORAGE_QUOTA"):
        s.load({"debug": "true"}, {"STORAGE_URL": "s3://logs"})
    for bad in ("file:///srv/archives", "s3://", "s3://UPPER/x", "/srv/archives"):
        with pytest.raises(s.SettingsError, match="STORAGE_URL"):
            s.load({"debug": "true"}, {"STORAGE_URL": bad, "STORAGE_QUOTA": "1GiB"})


def test_download_redirects_need_s3_and_a_bounded_expiry():
    loaded = s.load({"debug": "true"}, {})
    assert (loaded["storage.download"], loaded["storage.download_expiry"]) == ("stream", 300)
    s3 = {"STORAGE_URL": "s3://logs.example/c", "STORAGE_QUOTA": "1TiB"}
    loaded = s.load({"debug": "true"}, {**s3, "STORAGE_DOWNLOAD": " Redirect ",
                                        "STORAGE_DOWNLOAD_EXPIRY": "600"})
    assert (loaded["storage.download"], loaded["storage.download_expiry"]) == ("redirect", 600)
    # A local disk has no URL to send anyone to: refused at startup, not ignored.
    with pytest.raises(s.SettingsError, match="STORAGE_DOWNLOAD: `redirect` needs an s3://"):
        s.load({"debug": "true"}, {"STORAGE_DOWNLOAD": "redirect"})
    with pytest.raises(s.SettingsError, match="STORAGE_DOWNLOAD"):
        s.load({"debug": "true"}, {**s3, "STORAGE_DOWNLOAD": "proxy"})
    for bad in ("0", "-5", "604801", "soon"):
        with pytest.raises(s.SettingsError, match="STORAGE_DOWNLOAD_EXPIRY"):
            s.load({"debug": "true"}, {**s3, "STORAGE_DOWNLOAD_EXPIRY": bad})


def test_waitress_options():
    loaded = s.load({"debug": "true"}, {"WAITRESS_TRUSTED_PROXY": "10.0.0.1"})
    options = s.waitress_options(loaded)
    assert options["trusted_proxy"] == "10.0.0.1"
    assert options["max_request_body_size"] == loaded["upload.max_size"] + 1024**2


# A value of each type that differs from every default, to show a variable is honoured.
_SAMPLES = {str: "from-the-environment-42", int: "7777", float: "12.5", s.as_size:
            "3MiB", s.as_list: "a.example, b.example", s.as_db_url: "psql://u@db/logs",
            s.as_tz: "Europe/Berlin", s.as_percent: "55", s.as_secure: "true",
            s.as_networks: "10.0.0.0/8", s.as_log_format: "json", s.as_log_level: "ERROR",
            s.as_access_log_format: "{status} {path}",
            s.as_storage_url: "s3://a-bucket/logs", s.as_download_mode: "redirect",
            s.as_expiry: "60", s.as_free_space: "3MiB", s.as_listen: "127.0.0.1:7777"}
# Variables that only load together with another one.
_NEEDS = {"STORAGE_URL": {"STORAGE_QUOTA": "1GiB"},
          "DEBUG": {"ALLOWED_HOSTS": "logs.example.com"},
          "STORAGE_DOWNLOAD": {"STORAGE_URL": "s3://a-bucket/logs", "STORAGE_QUOTA": "1GiB"}}


def _documented_rows():
    """(variable, setting, default) of each row of the table of docs/configuration.md."""
    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    section = doc.split("<!-- settings-table -->")[1]
    return re.findall(r"^\| `([A-Z0-9_]+)` \| `([a-z0-9_.]+)` \| ([^|]*) \|", section,
                      re.MULTILINE)


def test_every_variable_of_the_documented_table_is_honoured():
    base = {"debug": "true", "secret_key": "a-long-enough-secret-key"}
    default = s.load(base, {})
    coercers = {variable: (key, coercer) for key, variable, coercer, _ in s.ENV_OVERRIDES}
    rows = _documented_rows()
    assert len(rows) == len(s.ENV_OVERRIDES)
    for variable, setting, _ in rows:
        key, coercer = coercers[variable]
        assert setting == key, variable
        sample = ("false" if default[key] else "true") if coercer is s.as_bool else \
            _SAMPLES[coercer]
        loaded = s.load(base, {variable: sample, **_NEEDS.get(variable, {})})
        assert loaded[key] != default[key], variable


def test_metrics_token_and_allow_list():
    with pytest.raises(s.SettingsError, match="METRICS_TOKEN"):
        s.load({"secret_key": "a-long-enough-secret-key"}, {"METRICS_TOKEN": "short"})
    loaded = s.load({"debug": "true"}, {"METRICS_ALLOW": "10.0.0.0/8 192.0.2.7 ::1"})
    assert [str(n) for n in loaded["metrics.allow"]] == ["10.0.0.0/8", "192.0.2.7/32",
                                                        "::1/128"]
    for variable, value in (("METRICS_ALLOW", "10.0.0.300/8"), ("LOG_FORMAT", "xml"),
                            ("LOG_LEVEL", "LOUD")):
        with pytest.raises(s.SettingsError, match=variable):
            s.load({"debug": "true"}, {variable: value})


def test_waitress_options_carry_every_waitress_setting():
    loaded = s.load({"debug": "true"}, {"WAITRESS_BACKLOG": "64",
                                        "WAITRESS_TRUSTED_PROXY": "10.0.0.1",
                                        "WAITRESS_TRUSTED_PROXY_COUNT": "2",
                                        "WAITRESS_OUTBUF_HIGH_WATERMARK": "1MiB"})
    options = s.waitress_options(loaded)
    assert (options["backlog"], options["trusted_proxy_count"]) == (64, 2)
    assert options["outbuf_high_watermark"] == 1024**2
    waitress_keys = {key for key, *_ in s.ENV_OVERRIDES if key.startswith("waitress.")}
    assert {key.split(".", 1)[1] for key in waitress_keys} <= set(options)


def test_the_documented_defaults_are_what_production_ini_gives():
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    parser.read(Path(__file__).parents[2] / "production.ini")
    loaded = s.load({**parser["app:main"], "secret_key": "a-long-enough-secret-key",
                     "allowed_hosts": "logs.example.com"}, {})
    coercers = {variable: coercer for _, variable, coercer, _ in s.ENV_OVERRIDES}
    checked = 0
    for variable, setting, default in _documented_rows():
        literal = re.fullmatch(r"`([^`]*)`", default.strip())
        if literal:
            assert coercers[variable](literal.group(1)) == loaded[setting], variable
            checked += 1
    assert checked >= 25  # the regex still finds the literals


@pytest.mark.parametrize("hosts", ["", "*", " ", "logs.example.com *", "*,logs.example.com"])
def test_production_refuses_any_host(hosts):
    """As with SECRET_KEY: production names the hosts it serves; from the ini or the
    environment, an empty list or `*` is refused (before anything else reads them)."""
    secret = {"SECRET_KEY": "a-long-enough-secret-key"}
    with pytest.raises(s.SettingsError, match="^ALLOWED_HOSTS: production"):
        s.load({"debug": "false", "allowed_hosts": hosts}, secret)
    with pytest.raises(s.SettingsError, match="^ALLOWED_HOSTS: production"):
        s.load({"debug": "false", "allowed_hosts": "logs.example.com"},
               {**secret, "ALLOWED_HOSTS": hosts})
    # Development keeps serving any host (development.ini says `*`).
    assert s.load({"debug": "true", "allowed_hosts": hosts}, {})["debug"] is True


def test_production_serves_the_hosts_it_is_given():
    loaded = s.load({"debug": "false", "allowed_hosts": ""},
                    {"SECRET_KEY": "a-long-enough-secret-key",
                     "ALLOWED_HOSTS": "logs.example.com, 192.0.2.7"})
    assert loaded["allowed_hosts"] == ["logs.example.com", "192.0.2.7"]
    assert s.load({"debug": "false", "allowed_hosts": "logs.example.com"},
                  {"SECRET_KEY": "a-long-enough-secret-key"})["allowed_hosts"] == [
        "logs.example.com"]


@pytest.mark.parametrize("command", ["migrate", "serve"])
def test_production_ini_as_shipped_refuses_to_start_without_allowed_hosts(tmp_path, command):
    """`collector -c production.ini …` with a good SECRET_KEY and no ALLOWED_HOSTS: one line
    naming the variable, no traceback, exit status 1; with it, it starts."""
    import os
    import subprocess
    import sys

    from collector.settings import ENV_OVERRIDES

    ini = Path(__file__).parents[2] / "production.ini"
    env = {k: v for k, v in os.environ.items()
           if k not in {variable for _, variable, _, _ in ENV_OVERRIDES}}
    env.update({"SECRET_KEY": "a-long-enough-secret-key", "DATA_DIR": str(tmp_path),
                "WAITRESS_LISTEN": "127.0.0.1:0"})
    done = subprocess.run([sys.executable, "-m", "collector.cli", "-c", str(ini), command],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: ALLOWED_HOSTS: production (DEBUG false) needs the host names served, e.g. "
        "ALLOWED_HOSTS=logs.example.com (empty or `*` is refused)"]
    done = subprocess.run([sys.executable, "-m", "collector.cli", "-c", str(ini), "migrate"],
                          env={**env, "ALLOWED_HOSTS": "logs.example.com"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


_NUMERIC = [(key, variable) for key, variable, coercer, _ in s.ENV_OVERRIDES
            if coercer in (int, float)]


@pytest.mark.parametrize("key,variable", _NUMERIC, ids=[v for _, v in _NUMERIC])
def test_no_count_age_or_duration_is_negative(key, variable):
    """Every number of the table, from the environment and from the ini alike."""
    with pytest.raises(s.SettingsError, match=f"^{variable}: must be "):
        s.load({"debug": "true"}, {variable: "-1"})
    with pytest.raises(s.SettingsError, match=f"^{variable}: must be "):
        s.load({"debug": "true", key: "-1"}, {})
    if coercer_of(key) is float:
        with pytest.raises(s.SettingsError, match=f"^{variable}: "):
            s.load({"debug": "true"}, {variable: "nan"})


def coercer_of(key):
    return {k: coercer for k, _, coercer, _ in s.ENV_OVERRIDES}[key]


def test_zero_where_it_means_nothing():
    for variable in ("TICKET_ATTEMPTS", "WAITRESS_THREADS", "ACCESS_TOKEN_LIFETIME",
                     "WEBHOOK_INTERVAL", "WAITRESS_RECV_BYTES"):
        with pytest.raises(s.SettingsError, match=f"^{variable}: must be"):
            s.load({"debug": "true"}, {variable: "0"})
    # 0 is meaningful here: off, never, no limit.
    loaded = s.load({"debug": "true"}, {"RETENTION_MAX_DAYS": "0", "HSTS_MAX_AGE": "0",
                                        "INSPECT_SEARCH_CONCURRENCY": "0"})
    assert loaded["retention.max_days"] == 0


def test_unknown_keys_are_refused_and_foreign_ones_allowed():
    with pytest.raises(s.SettingsError, match=r"^waitress\.thread: unknown setting .*did you "
                       r"mean waitress\.threads\?"):
        s.load({"debug": "true", "waitress.thread": "4"}, {})
    with pytest.raises(s.SettingsError, match=r"^sqlalchemy\.url: unknown setting"):
        s.load({"debug": "true", "sqlalchemy.url": "sqlite://"}, {})
    s.load({"debug": "true", "use": "egg:logs-collector", "here": "/srv",
            "pyramid.includes": "", "pyramid.reload_templates": "true",
            "jinja2.filters": "", "tm.attempts": "3", "retry.attempts": "3"}, {})


@pytest.mark.parametrize("url", ["mysql://u:secret@db/logs", "oracle://db", "db.sqlite3",
                                 "postgresql+psycopg2://db/logs"])
def test_db_url_is_sqlite_or_postgresql(url):
    with pytest.raises(s.SettingsError, match="^DB_URL: ") as refused:
        s.load({"debug": "true"}, {"DB_URL": url})
    assert "secret" not in str(refused.value)


@pytest.mark.parametrize("listen,ok", [
    ("127.0.0.1:6543", True), ("*:6543 [::1]:6543", True), ("logs.example.com:0", True),
    ("nonsense", False), ("127.0.0.1:65536", False), ("127.0.0.1:", False),
    (":6543", False), ("", False), ("127.0.0.1:-1", False)])
def test_listen_is_host_port_pairs(listen, ok):
    if ok:
        assert s.load({"debug": "true"}, {"WAITRESS_LISTEN": listen})["waitress.listen"]
    else:
        with pytest.raises(s.SettingsError, match="^WAITRESS_LISTEN: "):
            s.load({"debug": "true"}, {"WAITRESS_LISTEN": listen})
