"""Logs Collector: the WSGI application factory."""

import tempfile
import warnings
from pathlib import Path

# Pyramid 2.1 and cornice 6.1 import pkg_resources (setuptools<81 is pinned for it).
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from pyramid.config import Configurator  # noqa: E402

from collector import settings as settings_module  # noqa: E402
from collector.logs import AccessLog  # noqa: E402
from collector.resources import root_factory  # noqa: E402


def main(global_config, **settings):
    try:
        settings = settings_module.load({"here": global_config.get("here", "."), **settings})
        staging = Path(settings["data_dir"]) / "tmp"
        try:
            staging.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise settings_module.SettingsError(
                f"DATA_DIR: cannot create {staging}: {exc.strerror}") from None
    except settings_module.SettingsError as exc:
        # Built from an ini file (pserve, pshell, a paste loader): one line, as the console
        # says it, rather than a traceback. Called from code (tests): the exception.
        if "__file__" in global_config:
            raise SystemExit(f"error: {exc}") from None
        raise
    # waitress spools every request body to a tempfile before calling the app: keep that
    # spool on the archives' filesystem (never a small /tmp), see docs/architecture.md.
    tempfile.tempdir = str(staging)

    # Pyramid's CSRF origin check reads this name.
    settings["pyramid.csrf_trusted_origins"] = settings["csrf_trusted_origins"]
    config = Configurator(settings=settings, root_factory=root_factory)
    # request.dbsession joined to pyramid_tm's request.tm; retries on serialisation errors
    config.include("collector.db")
    # sessions, CSRF for cookie-authenticated writes, the one SecurityPolicy
    config.include("collector.security")
    # request.storage: the transaction-aware archive store
    config.include("collector.archives.storage")
    # the audit log of refused or failed uploads: a tween keyed on the upload routes
    config.include("collector.archives.uploads.refusals")
    # the md5 of archives over 4 MiB, computed by a thread after their upload commits
    config.include("collector.archives.checksums")
    # /metrics and the latency tween, only when METRICS_TOKEN is set
    config.include("collector.metrics")
    # help-desk webhooks: the worker thread (deliveries, low-space check), unless disabled
    config.include("collector.webhooks")
    # /livez and /readyz, the orchestrators' probes: public, cheap, any Host
    config.include("collector.probes")
    # Jinja2 pages, static assets (Bootstrap from XStatic), security headers
    config.include("collector.web")
    # cornice services (the REST API), then the v1 routes that traverse the resource tree
    config.include("cornice")
    config.include("collector.api.v1")
    # venusian imports every module it scans: the S3 backend and its tus segments (boto3,
    # ~8 MB of memory) only when STORAGE_URL asks for them (storage.make_backend); the
    # command line and the importer (`collector import-original`) not at all.
    config.scan("collector", ignore=["collector.cli", "collector.importer",
                                     "collector.archives.storage.s3",
                                     "collector.archives.storage.segments"])
    app = config.make_wsgi_app()
    if settings["access_log.enabled"]:
        app = AccessLog(app, settings["access_log.format"])
    return app
