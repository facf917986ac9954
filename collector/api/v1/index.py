"""``/api/v1/``: where things are, for a person or a script that opens the API's URL."""

from cornice import Service

from collector.api.v1 import error_handler

api_index = Service(name="api_index", pyramid_route="api.index",
                    description="Where the API's parts are", error_handler=error_handler)


@api_index.get()
def get_index(request):
    return {
        "service": "logs-collector",
        "api": request.route_url("api.openapi").rsplit("/", 1)[0] + "/",
        "openapi": request.route_url("api.openapi"),
        # The explorer is a page (collector/apidocs.py), known here by its route's name only.
        "docs": request.route_url("apidocs", slash=""),
        "health": request.route_url("api.check.health", slash="/"),
    }
