"""Archive commands: what a caller asks of an archive where the tree's ACL decides about
another node (the ticket an archive moves to). The rules are in ``archives.services``."""

from collector.archives.filenames import sanitise_name
from collector.errors import NotFound
from collector.resources import require, ticket_node
from collector.security import Permission
from collector.tickets import services as tickets


def change_archive(request, archive, name=None, ticket=None):
    """Rename an archive (the name sanitised as an upload's), or move it to the ticket
    numbered ``ticket`` — which the caller must be allowed to edit, and never away from a
    ticket under legal hold (423): moved away, an archive would escape the hold."""
    if name is not None:
        archive.name = sanitise_name(name)
    if ticket is not None:
        target = tickets.get_ticket(request.dbsession, ticket)
        missing = f"ticket {ticket} does not exist"
        if target is None:
            raise NotFound(missing)
        require(request, Permission.EDIT, ticket_node(request, target),
                f"you may not move archives to ticket {target.number}", missing)
        if target.id != archive.ticket_id:
            tickets.check_not_held(archive.ticket)
        archive.ticket_id, archive.ticket = target.id, target
    request.dbsession.flush()
    return archive
