"""Dockerfile and compose files, checked without a Docker engine (docs/install.md, "Container")."""

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


def _build_stage():
    return DOCKERFILE.split("\nFROM ")[1]


def _copied(stage):
    """The source paths a stage's plain ``COPY`` lines take from the build context."""
    paths = set()
    for line in re.findall(r"^COPY (?!--from)(.+)$", stage, re.MULTILINE):
        paths |= set(line.split()[:-1])
    return paths


def test_the_runtime_image_is_the_wheel_in_a_venv_and_the_ini():
    """The build stage makes the wheel and installs it (not an editable source tree); the
    runtime stage copies that venv and, of the source tree, only the configuration."""
    build = _build_stage()
    assert re.search(r"pip wheel --no-deps .*\n?.*--wheel-dir /wheels \.", build)
    assert "logs_collector-*.whl" in build and " -e " not in build
    assert _copied(_runtime_stage()) == {"production.ini"}
    assert "COPY --from=build /opt/venv /opt/venv" in _runtime_stage()
    # What the wheel is built from: the package (its data listed in pyproject.toml) and the
    # files pyproject.toml names (readme, licence), with the pins.
    assert {"pyproject.toml", "MANIFEST.in", "README.md", "LICENSE", "constraints.txt",
            "build-constraints.txt", "collector"} <= _copied(build)
    ignored = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line and not line.startswith("#")]
    for path in _copied(build) | _copied(_runtime_stage()):
        assert not any(fnmatch.fnmatch(path, pattern) for pattern in ignored), path
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
    samples = {"SECRET_KEY": "a-secret-key-from-compose-0123", "POSTGRES_PASSWORD": "pw",
               "ALLOWED_HOSTS": "logs.example.com"}

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


def test_instances_compose_shares_what_must_be_shared_and_loads():
    """docker-compose.instances.yaml: both instances get one environment (the same
    SECRET_KEY, PostgreSQL, bucket), each its own DATA_DIR volume; the schema is migrated
    once before they start; the balancer's config is the tested docs/nginx-instances.conf,
    naming exactly the app services; the trusted proxy is the balancer's fixed address."""
    compose = yaml.safe_load((ROOT / "docker-compose.instances.yaml").read_text())
    services = compose["services"]
    apps = [name for name, service in services.items()
            if service.get("command") == ["collector", "serve"]]
    assert apps == ["app1", "app2"]
    assert services["app1"]["environment"] == services["app2"]["environment"]
    assert services["app1"]["volumes"] != services["app2"]["volumes"]
    for name in apps:
        assert services[name]["depends_on"]["migrate"]["condition"] == \
            "service_completed_successfully"
    assert services["migrate"]["command"] == ["collector", "migrate"]

    balancer = services["lb"]
    assert "./docs/nginx-instances.conf:/etc/nginx/conf.d/default.conf:ro" in \
        balancer["volumes"]
    upstream = re.findall(r"^\s*server (\S+):6543;", (ROOT / "docs" /
                                                      "nginx-instances.conf").read_text(),
                          re.MULTILINE)
    assert upstream == apps
    address = balancer["networks"]["default"]["ipv4_address"]

    samples = {"SECRET_KEY": "a-secret-key-from-compose-0123", "POSTGRES_PASSWORD": "pw",
               "S3_ACCESS_KEY": "access-key", "S3_SECRET_KEY": "secret-key",
               "ALLOWED_HOSTS": "logs.example.com"}

    def resolve(match):
        name, kind, default = match.groups()
        return default if kind == ":-" else samples[name]

    environment = {key: re.sub(r"\$\{(\w+)(:[-?])([^}]*)\}", resolve, str(value))
                   for key, value in services["app1"]["environment"].items()}
    # boto3 reads the credentials itself; everything else is one of our settings.
    boto3_own = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    known = {variable for _, variable, _, _ in s.ENV_OVERRIDES}
    assert set(environment) - boto3_own <= known, set(environment) - boto3_own - known
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "production.ini")
    loaded = s.load(dict(parser["app:main"]),
                    {k: v for k, v in environment.items() if k not in boto3_own})
    assert loaded["db_url"].startswith("postgresql+psycopg://collector:pw@db/")
    assert loaded["storage.url"] == "s3://logs-collector/archives"
    assert loaded["waitress.trusted_proxy"] == address
