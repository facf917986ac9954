"""The release: a wheel built from the sdist, installed alone, runs the whole service.

No source tree is involved once the wheel is built: a fresh virtualenv outside the checkout
gets the wheel and the pinned runtime dependencies (uv, from its cache), and its own
``collector`` command (cwd a temp dir, no PYTHONPATH) migrates, serves, takes an upload and
renders every kind of page, so a template, a migration or ``uploader.sh`` missing from the
wheel fails here (docs/install.md, "From a release (wheel)").
"""

import hashlib
import re
import socket
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pyotp
import pytest
import requests

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "collector"
PASSWORD = "wheel-test-password-0123"

INI = """[app:main]
use = egg:logs-collector
debug = false
secret_key = wheel-test-secret-key-0123456789
data_dir = %(here)s/data
allowed_hosts = 127.0.0.1
waitress.listen = 127.0.0.1:{port}
"""


def _run(*command, **options):
    return subprocess.run(command, capture_output=True, text=True, timeout=240, check=True,
                          **options)


def _uv(*arguments):
    pytest.importorskip("uv", reason="uv (pinned in constraints.txt) builds and installs")
    return _run(sys.executable, "-m", "uv", *arguments)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """sdist and wheel (the wheel built from the sdist, as ``make dist`` does)."""
    out = tmp_path_factory.mktemp("dist")
    _uv("build", "--quiet", "--build-constraint", str(ROOT / "build-constraints.txt"),
        "--out-dir", str(out), str(ROOT))
    (sdist,) = out.glob("logs_collector-*.tar.gz")
    (wheel,) = out.glob("logs_collector-*.whl")
    return sdist, wheel


def _package_files():
    """What the service reads besides its modules, as paths inside the package."""
    return sorted(str(path.relative_to(ROOT)) for path in PACKAGE.rglob("*")
                  if path.is_file() and "__pycache__" not in path.parts
                  and path.suffix != ".pyc")


def test_sdist_and_wheel_hold_every_file_of_the_package(release):
    sdist, wheel = release
    expected = _package_files()
    assert {"collector/scripts/uploader.sh", "collector/migrations/env.py",
            "collector/templates/accounts/login.jinja2"} <= set(expected)
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert [name for name in expected if name not in in_wheel] == []
    assert any(name.endswith("/licenses/LICENSE") for name in in_wheel)
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        in_sdist = {name.removeprefix(top + "/") for name in archive.getnames()}
    assert [name for name in expected if name not in in_sdist] == []
    assert {"LICENSE", "CHANGELOG.md", "constraints.txt", "build-constraints.txt",
            "production.ini", "docs/install.md"} <= in_sdist


@pytest.fixture(scope="module")
def venv(release, tmp_path_factory):
    """A virtualenv outside the source tree with the wheel and the pinned runtime pins."""
    where = tmp_path_factory.mktemp("venv") / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", str(where))
    _uv("pip", "install", "--quiet", "--python", str(where / "bin" / "python"),
        "-c", str(ROOT / "constraints.txt"),
        "--build-constraint", str(ROOT / "build-constraints.txt"), str(release[1]))
    return where


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _csrf(page):
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def test_the_installed_wheel_runs_the_service(venv, tmp_path):
    home = tmp_path / "site"
    home.mkdir()
    port = _free_port()
    (home / "collector.ini").write_text(INI.format(port=port))
    # Only what a shell would have: no PYTHONPATH, no test settings, cwd outside the tree.
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           "COLLECTOR_CONFIG": str(home / "collector.ini")}
    collector = str(venv / "bin" / "collector")

    def command(*arguments, **options):
        return _run(collector, *arguments, cwd=home, env=env, **options)

    import_path = _run(str(venv / "bin" / "python"), "-c",
                       "import collector; print(collector.__file__)", cwd=home, env=env)
    assert Path(import_path.stdout.strip()).is_relative_to(venv)
    assert command("--version").stdout.strip() == "collector 1.0.0"
    assert "database at head" in command("migrate").stdout
    created = command("create-user", "admin", "--admin", "--password-stdin",
                      input=PASSWORD + "\n").stdout
    totp = pyotp.parse_uri(re.search(r"otpauth://\S+", created).group())

    log = (home / "serve.log").open("w")
    server = subprocess.Popen([collector, "serve"], cwd=home, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _exercise(base, totp)
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
    served = (home / "serve.log").read_text()
    assert "TemplateNotFound" not in served and "Traceback" not in served, served[-3000:]


def _wait_until_up(base, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(base + "/api/v1/check/health/", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the server did not answer")
        time.sleep(0.2)


def _exercise(base, totp):
    _wait_until_up(base)
    # The API: a bearer token (password + TOTP), a platform, a ticket.
    api = requests.Session()
    answer = api.post(base + "/api/v1/auth/token/", json={
        "username": "admin", "password": PASSWORD, "otp": totp.now()})
    assert answer.status_code == 200, answer.text
    api.headers["Authorization"] = f"Bearer {answer.json()['access']}"
    assert api.post(base + "/api/v1/platforms/", json={
        "name": "wheel", "pretty_name": "Wheel"}).status_code == 201
    ticket = api.post(base + "/api/v1/tickets/", json={"number": 4242, "platform": "wheel"})
    assert ticket.status_code == 201, ticket.text
    token = ticket.json()["token"]

    # The customer: the console client as served, then an upload with the ticket's token.
    script = requests.get(base + "/uploader.sh")
    assert script.status_code == 200
    assert script.content == (PACKAGE / "scripts" / "uploader.sh").read_bytes()
    body = b"".join(b"line %d of the wheel test\n" % n for n in range(20_000))
    upload = requests.post(base + "/api/v1/archives/", headers={"Upload-Token": token},
                           files={"file": ("app.log", body)})
    assert upload.status_code == 201, upload.text
    archive = upload.json()["id"]
    download = api.get(f"{base}/api/v1/archives/{archive}/download")
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == hashlib.sha256(body).hexdigest()

    # Staff in the browser: sign-in with password, then the second factor.
    web = requests.Session()
    page = web.get(base + "/login")
    assert page.status_code == 200 and "</html>" in page.text
    web.post(base + "/login", data={"username": "admin", "password": PASSWORD,
                                    "csrf_token": _csrf(page)}).raise_for_status()
    page = web.get(base + "/verify")
    # The API took this step's code; a step is accepted once.
    verified = web.post(base + "/verify", data={"code": totp.at(time.time() + 30),
                                                "csrf_token": _csrf(page)})
    assert verified.status_code == 200 and verified.url.rstrip("/") != base + "/verify"
    ticket_url = f"{base}/platforms/wheel/tickets/4242/"
    # Inside the archive: the index is built in the background ("being indexed": 503,
    # a page of its own), then the member list.
    members = f"{ticket_url}archives/{archive}/members"
    deadline = time.monotonic() + 30
    while (page := web.get(members)).status_code == 503 and time.monotonic() < deadline:
        assert "</html>" in page.text
        time.sleep(0.2)
    pages = [
        "/tickets/", "/tickets/new", "/platforms/", "/platforms/wheel/", ticket_url,
        f"{ticket_url}archives/{archive}/", members,
        f"{ticket_url}archives/{archive}/search?q=wheel",
        f"{ticket_url}archives/{archive}/delete", "/account/", "/admin/users/",
        "/admin/audit", "/admin/webhooks/", "/upload", "/no-such-page",
    ]
    # A member in the viewer, by the link the member list gives.
    view = re.search(r'class="member-link" href="([^"]+)"', page.text).group(1)
    pages.append(view.replace("&amp;", "&"))
    for path in pages:
        url = path if path.startswith("http") else base + path
        page = web.get(url)
        expected = 404 if path == "/no-such-page" else 200
        assert page.status_code == expected, (url, page.status_code, page.text[-2000:])
        assert "</html>" in page.text, url
        assert not page.url.startswith(base + "/login"), url


def test_no_copy_of_the_migrations_or_uploader_outside_the_package():
    """The top-level paths of the source tree point into the package (one copy)."""
    assert (ROOT / "scripts" / "uploader.sh").resolve() == \
        PACKAGE / "scripts" / "uploader.sh"
    assert not (ROOT / "alembic").exists()
    assert "script_location = %(here)s/collector/migrations" in \
        (ROOT / "alembic.ini").read_text()
