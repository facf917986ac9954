"""Settings: ini defaults, environment overrides, production refusals, README table."""

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


def test_readme_documents_exactly_the_variables_of_the_table():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("<!-- settings-table -->")[1]
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", section, re.MULTILINE))
    assert documented == {variable for _, variable, _, _ in s.ENV_OVERRIDES}


def test_waitress_options():
    loaded = s.load({"debug": "true"}, {"WAITRESS_TRUSTED_PROXY": "10.0.0.1"})
    options = s.waitress_options(loaded)
    assert options["trusted_proxy"] == "10.0.0.1"
    assert options["max_request_body_size"] == loaded["upload.max_size"] + 1024**2
