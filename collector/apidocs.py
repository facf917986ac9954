"""``/api/v1/docs``: the API explorer, Swagger UI over ``/api/v1/openapi.json``.

Swagger UI comes from a Python package (``swagger-ui-bundle-v2``: the files of the
``swagger-ui-dist`` npm release, byte for byte), never from a CDN, and only the two files
the page uses are served. The page's own start-up is a static file (``static/apidocs.js``),
so the page keeps the site's Content-Security-Policy: no inline script or style. It is a
page about the API, not part of it: it knows the document by its route name and imports
nothing of ``collector.api``.

Anyone may open it, as anyone may read the document. "Try it out" sends what a script
could send from this origin: credentials typed into Authorize stay in the tab's memory
(``persistAuthorization: false``), the API's rules and CORS are untouched
(docs/security.md).
"""

import swagger_ui_bundle
from pyramid.httpexceptions import HTTPNotFound
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.static import static_view
from pyramid.view import view_config

SWAGGER_UI_DIR = swagger_ui_bundle.swagger_ui_path
# "swagger-ui-5.31.0": the version in the assets' URL, so a new one is never a cached old one.
SWAGGER_UI_VERSION = SWAGGER_UI_DIR.name
# What the page loads; the rest of the package (its demo index.html that loads an outside
# document, the OAuth2 redirect page, the other builds) is not served.
SWAGGER_UI_FILES = frozenset({"swagger-ui-bundle.js", "swagger-ui.css"})

_swagger_ui_files = static_view(str(SWAGGER_UI_DIR), cache_max_age=86400, use_subpath=True)


def swagger_ui_asset(context, request):
    if "/".join(request.subpath) not in SWAGGER_UI_FILES:
        raise HTTPNotFound()
    return _swagger_ui_files(context, request)


@view_config(route_name="apidocs", renderer="apidocs.jinja2", request_method=("GET", "HEAD"),
             permission=NO_PERMISSION_REQUIRED)
def api_explorer(request):
    def swagger_ui(name):
        return request.route_url("apidocs.swagger_ui", subpath=(name,))

    return {"openapi_url": request.route_url("api.openapi"), "swagger_ui": swagger_ui}


def includeme(config):
    config.add_route("apidocs", "/api/v1/docs{slash:/?}")
    # Before the app's own /static/ view (collector/web.py), which would take any path below.
    config.add_route("apidocs.swagger_ui", f"/static/{SWAGGER_UI_VERSION}/*subpath")
    config.add_view(swagger_ui_asset, route_name="apidocs.swagger_ui",
                    request_method=("GET", "HEAD"), permission=NO_PERMISSION_REQUIRED)
