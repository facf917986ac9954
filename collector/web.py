"""The web side's shared pieces: templates, static assets, security headers, page helpers.

Pages live in each package's ``views.py`` (registered by ``context=`` and ``name=`` on the
resource tree, so the same ACL decides as for the API). This module gives them Jinja2 with
a few filters, the app's own CSS/JS and Bootstrap (from the XStatic package, never a CDN),
the headers every response carries, and the storage gauge of the staff layout.
"""

import datetime as dt
import importlib.metadata
import importlib.resources
import re
import zoneinfo

import xstatic.pkg.bootstrap
from jinja2 import pass_context
from markupsafe import Markup
from pyramid import traversal
from pyramid.csrf import get_csrf_token
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.response import Response
from pyramid.view import view_config

from collector.accounts.services import PASSWORD_MIN_LENGTH
from collector.archives.storage import alerts
from collector.audit.presentation import describe_event
from collector.resources import Root

try:
    VERSION = importlib.metadata.version("logs-collector")
except importlib.metadata.PackageNotFoundError:  # running from a bare source tree
    VERSION = "dev"

# No inline script or style anywhere: every script and stylesheet is a file the app serves.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

# Everything that is not one of our pages (JSON, downloads, static files, the uploader
# script): nothing may load, run, or frame it, even when a browser opens it directly.
OTHER_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # The upload page's token travels in the URL fragment, which is never sent; still,
    # no page address leaves the site.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def strict_transport_security(max_age):
    """The HSTS value: https only, for ``max_age`` seconds, on this host and its subdomains
    (the service's own name; nothing above it). None when ``max_age`` is 0."""
    return f"max-age={max_age}; includeSubDomains" if max_age else None


# Pyramid keeps every path segment it ever quoted for a URL (``route_url``,
# ``resource_url``) in a module-level dict that nothing empties: one entry per tus upload
# id, archive id, ticket number … made into a link, ~150 bytes each, for the life of the
# process (its docstring warns of exactly this). Emptied when it passes this many entries
# (~2 MB); it is only a cache, refilled as links are made.
QUOTED_SEGMENTS_KEPT = 10_000


def bound_quoted_segments():
    if len(traversal._segment_cache) > QUOTED_SEGMENTS_KEPT:
        traversal._segment_cache.clear()


def security_headers_tween_factory(handler, registry):
    hsts = strict_transport_security(registry.settings["hsts.max_age"])

    def tween(request):
        bound_quoted_segments()
        response = handler(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        page = (response.content_type or "").startswith("text/html")
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY if page
                                    else OTHER_CONTENT_SECURITY_POLICY)
        # Only over https (wsgi.url_scheme: waitress sets it from X-Forwarded-Proto when
        # the proxy is trusted): browsers ignore it over http, and it would be a lie there.
        if hsts and request.scheme == "https":
            response.headers.setdefault("Strict-Transport-Security", hsts)
        return response

    return tween


# --- template filters --------------------------------------------------------------------

def filesize(value):
    """Bytes for people in binary units, as the settings count them (``4GiB`` is 4 GiB, not
    "4.3 GB"): ``512 B``, ``340.2 KiB``, ``1.5 GiB``, and no ``.0`` on a round number."""
    if value is None:
        return ""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        # 1023.96 KiB would round to "1024 KiB": from there on it is the next unit.
        if abs(round(size, 1)) < 1024 or unit == "TiB":
            break
        size /= 1024
    if unit == "B":
        return f"{int(size)} B"
    text = f"{size:.1f}"
    return f"{text.removesuffix('.0')} {unit}"


# Where a long address may wrap: after a "/" (not inside "//"), before "." "?" "&" "=" "#".
URL_BREAKS = re.compile(r"(?<=/)(?!/)|(?=[.?&=#])")


def url_breaks(value):
    """An address with ``<wbr>`` at its natural places, so that a narrow column wraps it
    between its parts, not letter by letter; the text itself is unchanged."""
    return Markup("<wbr>").join(part for part in URL_BREAKS.split(str(value)) if part)


@pass_context
def localtime(context, value, fmt="%Y-%m-%d %H:%M"):
    """An aware datetime shown in the configured TZ."""
    if value is None:
        return ""
    zone = zoneinfo.ZoneInfo(context["request"].registry.settings["tz"])
    return value.astimezone(zone).strftime(fmt)


def isotime(value):
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if value else ""


@pass_context
def csrf_input(context):
    token = get_csrf_token(context["request"])
    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(token)


# After each separator of a path or file name: where a long name may wrap. Never inside
# a word: "node3-logs.tar.gz" wraps as "node3-" "logs." "tar." "gz", not "nod" "e3".
NAME_SEPARATORS = re.compile(r"([/._-]+)")


def breakable(value):
    """A file name or path, escaped, with ``<wbr>`` after each run of ``/ . _ -``."""
    if value is None:
        return ""
    pieces = NAME_SEPARATORS.split(str(value))
    return Markup("").join(Markup("{}<wbr>").format(piece) if NAME_SEPARATORS.fullmatch(piece)
                           else Markup("{}").format(piece) for piece in pieces if piece)


FILTERS = {"filesize": filesize, "localtime": localtime, "isotime": isotime,
           "breakable": breakable, "event_details": describe_event, "url_breaks": url_breaks}
# The password rule's length, so that the forms say and check the number the server does.
GLOBALS = {"csrf_input": csrf_input, "version": VERSION,
           "password_min_length": PASSWORD_MIN_LENGTH}


# --- request helpers ---------------------------------------------------------------------

def staff_user(request):
    """The signed-in staff user (session or bearer), or None."""
    identity = request.identity
    return identity.user if identity is not None else None


# The gauge's colour for each level of the low-space rule (archives/storage/alerts.py).
GAUGE_COLOURS = {"full": "danger", "low": "warning", "ok": "ok"}


def storage_gauge(request):
    """Disk usage for the staff layout's gauge, coloured by the low-space rule, and its
    banner while storage is low."""
    settings = request.registry.settings
    usage = request.storage.backend.usage()
    total = usage["total"] or 1
    percent = round(100.0 * usage["used"] / total, 1)
    threshold = alerts.low_threshold(settings, usage["total"])
    # The banner: from the free space read here anyway (the alert's audit event and webhook
    # come from the worker, once per crossing).
    return {**usage, "percent": percent,
            "level": GAUGE_COLOURS[alerts.level(usage, settings)],
            "low": alerts.is_low(usage, settings), "reserve": settings["storage.reserve"],
            "threshold": threshold,
            # Where the meter turns amber: the share in use once the threshold is reached.
            "low_percent": round(100.0 - 100.0 * threshold / total, 1) if threshold else 100}


def nav_section(request):
    """The navigation item of the page asked for, from its address: every page, error
    pages too, marks its own section without each view having to say so."""
    parts = [part for part in request.path_info.split("/") if part]
    first = parts[0] if parts else ""
    if first == "admin":
        return parts[1] if len(parts) > 1 and parts[1] in ADMIN_SECTIONS else ""
    if first == "platforms":
        # A ticket lives under its platform (/platforms/vm6/tickets/4711/): it is a ticket
        # page. The platform's own ticket list and settings are the platform's.
        return "tickets" if len(parts) > 3 and parts[2] == "tickets" else "platforms"
    return SECTIONS.get(first, "")


# The first part of an address and its navigation item.
SECTIONS = {"tickets": "tickets", "archives": "tickets", "account": "account",
            "upload": "upload"}
ADMIN_SECTIONS = ("users", "audit", "webhooks")


def is_api(request):
    return request.path_info.startswith("/api/")


@view_config(context=Root, name="", renderer=None)
def home(request):
    """``/``: staff land on the tickets, everybody else on the sign-in page."""
    target = "/tickets/" if request.staff_user is not None else "/login"
    return HTTPSeeOther(request.application_url + target)


# Read once: browsers and tools ask for /favicon.ico on their own, whatever a page links.
FAVICON = importlib.resources.files("collector").joinpath("static/favicon.svg").read_bytes()


@view_config(context=Root, name="favicon.ico", request_method="GET")
def favicon(request):
    """``/favicon.ico``: the icon the pages link (an SVG), so that nobody gets a 404 here."""
    return Response(FAVICON, content_type="image/svg+xml", cache_control="public, max-age=86400")


def includeme(config):
    # A misspelt name in a template is an error, not an empty string.
    config.get_settings().setdefault("jinja2.undefined", "strict")
    config.include("pyramid_jinja2")
    config.add_jinja2_renderer(".jinja2")
    config.add_jinja2_search_path("collector:templates", name=".jinja2")

    def add_template_helpers():
        environment = config.get_jinja2_environment(".jinja2")
        environment.filters.update(FILTERS)
        environment.globals.update(GLOBALS)

    # After pyramid_jinja2's own action has created the environment.
    config.action(None, add_template_helpers, order=999)

    config.add_static_view("static/bootstrap", xstatic.pkg.bootstrap.BASE_DIR,
                           cache_max_age=86400)
    # /api/v1/docs, the API explorer: its Swagger UI assets live under /static/ too, so
    # their route comes before the app's own static view.
    config.include("collector.apidocs")
    config.add_static_view("static", "collector:static", cache_max_age=3600)
    config.add_request_method(staff_user, reify=True)
    config.add_request_method(storage_gauge, reify=True)
    config.add_request_method(is_api, reify=True)
    config.add_request_method(nav_section, reify=True)
    config.add_tween("collector.web.security_headers_tween_factory")
