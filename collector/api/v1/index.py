"""``/`` and ``/api/v1/``: where things are, for a person who opens the service's URL."""

from pyramid.view import view_config

from collector.resources import Root


@view_config(context=Root, renderer="json", request_method=("GET", "HEAD"))
def index(request):
    return {
        "service": "logs-collector",
        "api": request.route_url("api.openapi").rsplit("/", 1)[0] + "/",
        "openapi": request.route_url("api.openapi"),
        "health": request.route_url("api.check.health", slash="/"),
    }
