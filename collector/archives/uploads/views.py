"""The public upload page, ``/upload``: a customer sends log archives from a browser.

The page itself holds nothing secret and needs no sign-in: the upload token travels in the
link's ``#token=`` fragment (never sent to the server, so never in its logs) and the page's
script sends it in the ``Upload-Token`` header of the same API the console client uses: tus
1.0.0 at ``/api/v1/uploads/``, in chunks of ``CHUNK_SIZE`` (one request body each, so never
more than waitress accepts).
"""

from pyramid.view import view_config

from collector.resources import Root

CHUNK_SIZE = 8 * 1024 * 1024


@view_config(context=Root, name="upload", request_method="GET",
             renderer="upload.jinja2")
def upload_page(request):
    settings = request.registry.settings
    return {
        "nav": None,
        "max_size": settings["upload.max_size"],
        "check_url": request.application_url + "/api/v1/check/token/",
        "upload_url": request.application_url + "/api/v1/uploads/",
        "archive_url": request.application_url + "/api/v1/archives/",
        "chunk_size": min(CHUNK_SIZE, settings.get("waitress.max_request_body_size")
                          or CHUNK_SIZE),
    }
