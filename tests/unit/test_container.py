"""Dockerfile and compose files, checked without a Docker engine (README "Container")."""

import configparser
import fnmatch
import re
from pathlib import Path

import yaml

from collector import settings as s

ROOT = Path(__file__).parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _runtime_stage():
    return DOCKERFILE.split("\nFROM ")[-1]


def test_the_runtime_image_has_what_the_app_reads_from_its_source_tree():
    copied = set(re.findall(r"^COPY (?!--from)(\S+)", _runtime_stage(), re.MULTILINE))
    # alembic/ (collector migrate), scripts/uploader.sh (served at /uploader.sh), the ini.
    assert {"production.ini", "alembic", "collector", "scripts/uploader.sh"} <= copied
    ignored = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line and not line.startswith("#")]
    for path in copied | {"pyproject.toml", "constraints.txt", "build-constraints.txt",
                          "README.md"}:
        assert not any(fnmatch.fnmatch(path, pattern) for pattern in ignored), path
    for path in copied:
        assert (ROOT / path).exists(), path


def test_non_root_volume_healthcheck_and_migrations():
    runtime = _runtime_stage()
    assert runtime.startswith("python:3.11-slim")
    assert "USER 1000:1000" in runtime and "--uid 1000" in runtime
    assert "VOLUME /data" in runtime and "DATA_DIR=/data" in runtime
    assert "/api/v1/check/health/" in re.search(r"^HEALTHCHECK .*(?:\n .*)*", runtime,
                                                re.MULTILINE).group()
    assert re.search(r'^CMD .*collector migrate && exec collector serve', runtime,
                     re.MULTILINE)


def _environment(*files):
    """The collector service's environment, ``${X:-default}`` resolved to its default and
    ``${X:?message}`` to a sample value (what a user must set)."""
    environment = {}
    for name in files:
        service = yaml.safe_load((ROOT / name).read_text())["services"]["collector"]
        environment.update(service.get("environment", {}))
    samples = {"SECRET_KEY": "a-secret-key-from-compose-0123", "POSTGRES_PASSWORD": "pw"}

    def resolve(match):
        name, kind, default = match.groups()
        return default if kind == ":-" else samples[name]

    return {key: re.sub(r"\$\{(\w+)(:[-?])([^}]*)\}", resolve, str(value))
            for key, value in environment.items()}


def test_compose_variables_exist_and_load_with_production_ini():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "production.ini")
    known = {variable for _, variable, _, _ in s.ENV_OVERRIDES}
    for files in (["docker-compose.yaml"], ["docker-compose.yaml",
                                            "docker-compose.postgres.yaml"]):
        environment = _environment(*files)
        assert set(environment) <= known, set(environment) - known
        loaded = s.load(dict(parser["app:main"]), environment)
        assert loaded["secret_key"] == "a-secret-key-from-compose-0123"
        assert loaded["metrics.token"] == "" and loaded["waitress.trusted_proxy"] == ""
    assert loaded["db_url"] == "postgresql+psycopg://collector:pw@db/collector"
