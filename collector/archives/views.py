"""Staff pages of one archive: its download and its deletion (listing is the ticket page's).

The download is the API's own response (``archives.download``), behind the same
``download`` permission, which only a two-factor verified principal holds.
"""

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.view import view_config

from collector.archives import services
from collector.archives.download import archive_response
from collector.resources import ArchiveNode
from collector.security import Permission


def _ticket_url(request):
    # ArchiveNode → the ticket's "archives" → the TicketNode
    return request.resource_url(request.context.__parent__.__parent__)


@view_config(context=ArchiveNode, name="", permission=Permission.VIEW, request_method="GET")
def archive_page(request):
    """An archive is shown in its ticket's table: go there."""
    return HTTPSeeOther(f"{_ticket_url(request)}#archive-{request.context.archive.id}")


@view_config(context=ArchiveNode, name="download", permission=Permission.DOWNLOAD,
             request_method="GET")
def download(request):
    return archive_response(request, request.context.archive)


@view_config(context=ArchiveNode, name="delete", permission=Permission.DELETE,
             request_method="GET", renderer="archives/delete.jinja2")
def delete_confirm(request):
    return {"archive": request.context.archive,
            "ticket_url": _ticket_url(request)}


@view_config(context=ArchiveNode, name="delete", permission=Permission.DELETE,
             request_method="POST")
def delete(request):
    archive = request.context.archive
    name, target = archive.name, _ticket_url(request)
    # The row goes now; the file after the commit (the storage manager's hook).
    services.delete_archive(request.dbsession, request.storage, archive)
    request.session.flash(f"Archive {name} deleted.", "success")
    return HTTPSeeOther(target + "#archives")
