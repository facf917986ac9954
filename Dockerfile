# Logs Collector in one container: waitress on :6543, data (SQLite, archives) in /data.
#   docker build -t logs-collector .
#   docker run -d -p 6543:6543 -v lc-data:/data -e SECRET_KEY=... \
#       -e ALLOWED_HOSTS=logs.example.com --init logs-collector
# See docs/install.md, "Container", for what was verified without a Docker engine, and how.

# --- build: the wheel, then a virtualenv with it and the pinned dependencies -------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# --build-constraint (below) needs pip 25.3; the base image's pip is older.
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --upgrade 'pip>=25.3'
COPY pyproject.toml MANIFEST.in constraints.txt build-constraints.txt README.md LICENSE ./
COPY collector ./collector
# The release's wheel (what `make dist` builds): the package with its templates, static
# files, migrations and uploader.sh, so the runtime stage needs no source tree.
RUN /opt/venv/bin/pip wheel --no-deps --build-constraint build-constraints.txt \
        --wheel-dir /wheels .
# Optional extras: `docker build --build-arg EXTRAS=s3 …` adds boto3 for archives in an
# S3-compatible object store (STORAGE_URL=s3://…; about 35 MB more). Empty: local disk only.
ARG EXTRAS=""
RUN wheel="$(ls /wheels/logs_collector-*.whl)" \
    && /opt/venv/bin/pip install -c constraints.txt --build-constraint build-constraints.txt \
        "${wheel}${EXTRAS:+[$EXTRAS]}" \
    # What only building needed: pip itself, tests shipped inside packages, byte code
    # (written again at first import, in the image's own layer it would only add size).
    && /opt/venv/bin/pip uninstall -y pip \
    && find /opt/venv -depth \( -name tests -o -name test -o -name __pycache__ \) \
         -type d -exec rm -rf {} + \
    # Bootstrap's source maps (6 MB): only a browser's developer tools ask for them.
    && find /opt/venv -name '*.map' -type f -delete

# --- runtime --------------------------------------------------------------------------------
FROM python:3.11-slim
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    COLLECTOR_CONFIG=/app/production.ini \
    DATA_DIR=/data \
    WAITRESS_LISTEN=0.0.0.0:6543
RUN useradd --uid 1000 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin collector \
    && mkdir /data && chown collector:collector /data
# The virtualenv alone holds the app (installed from its wheel); of the source tree only
# the configuration.
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY production.ini ./
USER 1000:1000
VOLUME /data
# Keep 6543 inside the container (map another port outside): the health check asks it.
EXPOSE 6543
# It asks with the first of ALLOWED_HOSTS as its Host: any other is refused (400).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; host = (os.environ.get('ALLOWED_HOSTS', '').replace(',', ' ').split() or ['127.0.0.1'])[0]; u.urlopen(u.Request('http://127.0.0.1:6543/api/v1/check/health/', headers={'Host': host}), timeout=4)"]
# Migrations on every start (idempotent), then the server as PID 1's child under --init.
CMD ["sh", "-c", "collector migrate && exec collector serve"]
