"""docs/nginx.conf, run: Debian's nginx with TLS in front of a real ``collector serve``.

The documented file is used as it is, with only its ports, upstream address and certificate
paths swapped (each swap must find its line, so the test follows the file). Through it: a
single POST, a tus upload by scripts/uploader.sh, a download, the client address from
X-Forwarded-For in the app's access log, https URLs from X-Forwarded-Proto. SQLite only:
nothing here depends on the database. Skipped without nginx or openssl, unless
REQUIRE_NGINX=1 (set by .ci/run, which installs nginx).
"""

import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
OPENSSL = shutil.which("openssl")
COLLECTOR = Path(sys.executable).with_name("collector")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _needs_nginx():
    if NGINX and OPENSSL:
        return
    reason = "nginx and openssl are needed (apt-get install nginx openssl)"
    if os.environ.get("REQUIRE_NGINX") == "1":
        pytest.fail(f"REQUIRE_NGINX=1 but {reason}")
    pytest.skip(reason)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(url, context=None, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as res:
                return res.status
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _site_conf(app_port, http_port, https_port, cert, key):
    text = (ROOT / "docs" / "nginx.conf").read_text()
    for old, new in (("server 127.0.0.1:6543;", f"server 127.0.0.1:{app_port};"),
                     ("listen 80;", f"listen 127.0.0.1:{http_port};"),
                     ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
                     ("/etc/ssl/certs/logs.example.com.pem", str(cert)),
                     ("/etc/ssl/private/logs.example.com.key", str(key))):
        assert text.count(old) == 1, f"docs/nginx.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """nginx on https://127.0.0.1:PORT in front of `collector serve`; yields the details."""
    tmp = tmp_path_factory.mktemp("nginx")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True,
                   capture_output=True)
    app_port, http_port, https_port = _free_port(), _free_port(), _free_port()
    (tmp / "site.conf").write_text(_site_conf(app_port, http_port, https_port, cert, key))
    temp_paths = "\n".join(f"    {kind}_temp_path {tmp / kind};"
                           for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"pid {tmp / 'nginx.pid'};\nerror_log {tmp / 'error.log'} info;\ndaemon off;\n"
        "worker_processes 1;\nevents { worker_connections 64; }\n"
        f"http {{\n    access_log {tmp / 'access.log'};\n{temp_paths}\n"
        f"    include {tmp / 'site.conf'};\n}}\n")

    env = {**os.environ, "SECRET_KEY": "nginx-test-secret-key-0123456789",
           "DATA_DIR": str(tmp / "data"), "WAITRESS_LISTEN": f"127.0.0.1:{app_port}",
           "WAITRESS_TRUSTED_PROXY": "127.0.0.1", "UPLOAD_MAX_SIZE": "64MiB",
           "ALLOWED_HOSTS": "127.0.0.1",
           "STORAGE_RESERVE": "0"}
    for name in ("DB_URL", "LOG_FORMAT", "ACCESS_LOG", "ACCESS_LOG_FORMAT", "METRICS_TOKEN"):
        env.pop(name, None)
    ini = str(ROOT / "production.ini")

    def cli(*args, stdin=None):
        return subprocess.run([str(COLLECTOR), "-c", ini, *args], env=env, input=stdin,
                              capture_output=True, text=True, check=True).stdout

    cli("migrate")
    cli("create-user", "admin", "--admin", "--password-stdin", stdin="a-password-for-nginx\n")
    api_token = cli("create-token", "admin").strip()

    app_log = open(tmp / "app.log", "wb")
    app = subprocess.Popen([str(COLLECTOR), "-c", ini, "serve"], env=env,
                           stdout=app_log, stderr=subprocess.STDOUT)
    nginx = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf"),
                              "-e", str(tmp / "error.log")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    context = ssl.create_default_context(cafile=str(cert))
    base = f"https://127.0.0.1:{https_port}"
    try:
        _wait_for(f"http://127.0.0.1:{app_port}/api/v1/check/health/")
        _wait_for(base + "/api/v1/check/health/", context)
        yield {"base": base, "http": f"http://127.0.0.1:{http_port}", "cert": cert,
               "context": context, "auth": {"Authorization": f"Bearer {api_token}"},
               "app_log": tmp / "app.log", "tmp": tmp}
    finally:
        for process in (nginx, app):
            process.terminate()
        for process in (nginx, app):
            process.wait(timeout=20)
        app_log.close()


def _api(stack, method, path, body=None):
    request = urllib.request.Request(
        stack["base"] + path, method=method, headers={**stack["auth"],
                                                      "Content-Type": "application/json"},
        data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(request, context=stack["context"], timeout=30) as res:
        return json.loads(res.read())


@pytest.fixture(scope="module")
def ticket(stack):
    _api(stack, "POST", "/api/v1/platforms/", {"name": "vm6", "pretty_name": "VM 6"})
    return _api(stack, "POST", "/api/v1/tickets/", {"number": 4242, "platform": "vm6",
                                                     "attempts": 5})


def _file(tmp, name, size):
    path = tmp / name
    path.write_bytes(os.urandom(size))
    return path


def test_plain_http_is_sent_to_https(stack):
    done = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                           stack["http"] + "/upload"], capture_output=True, text=True,
                          check=True)
    assert done.stdout == "301 https://127.0.0.1/upload"


def test_single_post_through_nginx(stack, ticket):
    path = _file(stack["tmp"], "single.bin", 5 * 1024 * 1024 + 7)
    # From 127.0.0.2: nginx passes it in X-Forwarded-For, the app's peer is nginx.
    done = subprocess.run(
        ["curl", "-sS", "--interface", "127.0.0.2", "--cacert", str(stack["cert"]),
         "-F", f"file=@{path}", "-H", f"Upload-Token: {ticket['token']}",
         "-A", "nginx-test-single", stack["base"] + "/api/v1/archives/"],
        capture_output=True, text=True, check=True)
    archive = json.loads(done.stdout)
    assert archive["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    # X-Forwarded-Proto and the Host with its port: the link the client gets works.
    assert archive["file"] == f"{stack['base']}/api/v1/archives/{archive['id']}/download"
    request = urllib.request.Request(archive["file"], headers=stack["auth"])
    with urllib.request.urlopen(request, context=stack["context"], timeout=30) as res:
        assert res.read() == path.read_bytes()
    log = stack["app_log"].read_text()
    line = next(line for line in log.splitlines() if "nginx-test-single" in line)
    assert '127.0.0.2 - - [' in line and '"POST /api/v1/archives/ HTTP/1.1" 201 ' in line


def test_tus_upload_with_uploader_sh(stack, ticket):
    path = _file(stack["tmp"], "resumable.bin", 3 * 1024 * 1024 + 11)
    done = subprocess.run(
        ["sh", str(ROOT / "scripts" / "uploader.sh"), "-f", str(path), "-t", ticket["token"],
         "-u", stack["base"], "--chunk-size", "1M"],
        env={**os.environ, "CURL_CA_BUNDLE": str(stack["cert"])}, capture_output=True,
        text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: the server has exactly this file." in done.stdout
    log = stack["app_log"].read_text()
    assert log.count('"PATCH /api/v1/uploads/') == 4  # 3 MiB + 11 bytes in 1 MiB chunks


def _head_lines(url, cacert=None, extra=()):
    """The answer's header lines (lower-case names) from curl, for one URL."""
    done = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-D", "-", *extra,
                           *(["--cacert", str(cacert)] if cacert else []), url],
                          capture_output=True, text=True, check=True, timeout=60)
    return [line.strip().lower() for line in done.stdout.splitlines()]


def test_hsts_over_https_only_and_once(stack):
    """Every https answer — the app's (2xx and errors) and nginx's own (413) — carries
    exactly one Strict-Transport-Security; the plain-http redirect none."""
    hsts = "strict-transport-security: max-age=31536000; includesubdomains"
    for path, extra, status in (("/api/v1/check/health/", (), "200"),
                                ("/api/v1/tickets/", (), "401"),
                                ("/api/v1/no/such/thing", (), "404"),
                                ("/api/v1/archives/", ("-X", "POST", "-H",
                                                       "Content-Length: 99999999999"), "413")):
        lines = _head_lines(stack["base"] + path, stack["cert"], extra)
        assert lines[0].split()[1] == status, (path, lines)
        assert [line for line in lines if line.startswith("strict-transport")] == [hsts]
    lines = _head_lines(stack["http"] + "/upload")
    assert lines[0].split()[1] == "301"
    assert not [line for line in lines if line.startswith("strict-transport")]

