"""Staff pages for looking inside archives: the member tree, the viewer, a member's bytes,
and search of one archive or of a whole ticket.

Registered by ``context=`` and ``name=`` on the same ``ArchiveNode`` and ``TicketNode`` as
the API, with ``download`` (two-factor) as the permission, so one ACL decides for both. The
member path follows the view name (``…/archives/{id}/view/var/log/syslog``): the archive
node has no children, so traversal leaves it in ``request.subpath``. Every rule — limits,
parameters, what is readable — is ``services``'; these views only choose the page.

While an archive's index is being built its pages answer 503 with ``Retry-After`` and a
page that reloads itself (``static/inspect.js``); an archive that cannot be indexed says why
and offers the download.
"""

import functools
import urllib.parse

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.renderers import render_to_response
from pyramid.traversal import quote_path_segment
from pyramid.view import view_config

from collector.archives import services as archives
from collector.archives.inspect import reader, services, store
from collector.archives.inspect.download import member_response
from collector.errors import BadRequest, NotFound, ServiceUnavailable, Unprocessable
from collector.numbers import parse_natural
from collector.resources import ArchiveNode, TicketNode
from collector.security import Permission
from collector.web import filesize

# Lines shown above the one a link jumps to (a search hit is seen with what led to it).
LINES_ABOVE = 10
# The query parameter of a ticket search's automatic retry: the audit event of the search
# it repeats (services.search_ticket_once decides whether it is one).
RETRY_OF = "retry_of"
# Folder depths the page indents (deeper folders stay at this indentation).
MAX_DEPTH = 8
CAP_MESSAGES = {
    "limit": "The search stopped at {results} matching lines, the limit asked for: narrow it "
             "or raise the limit (at most {max_results}).",
    "bytes": "The search stopped after reading {bytes}, the configured cap "
             "(INSPECT_SEARCH_MAX_BYTES): what follows was not searched.",
    "time": "The search stopped after {seconds:g} s, the configured time limit "
            "(INSPECT_SEARCH_TIMEOUT): what follows was not searched.",
}


class _Instead(Exception):
    """Raised with the page to show instead of the one asked for."""

    def __init__(self, response):
        super().__init__()
        self.response = response


def _pages(view):
    @functools.wraps(view)
    def wrapper(request):
        try:
            return view(request)
        except _Instead as instead:
            return instead.response

    return wrapper


def _ticket_node(context):
    # ArchiveNode → its ticket's "archives" → the TicketNode
    return context if isinstance(context, TicketNode) else context.__parent__.__parent__


class ArchiveUrls:
    """Addresses of one archive's pages, for the templates; ``base`` ends with ``/``."""

    def __init__(self, base):
        self.base = base

    @classmethod
    def of(cls, request, archive_id):
        """An archive of the context's ticket (a ticket search lists several)."""
        return cls(request.resource_url(_ticket_node(request.context), "archives",
                                        str(archive_id), ""))

    def _url(self, *elements, query=None, anchor=None):
        url = self.base + "/".join(quote_path_segment(part) for part in elements)
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return url + (f"#{anchor}" if anchor else "")

    def members(self, page=None):
        return self._url("members", query={"page": page} if page and page > 1 else None)

    def view(self, path, line=None, **query):
        if line is not None:
            query["line"] = line
        return self._url("view", *path.split("/"), query=query,
                         anchor=f"L{line}" if line is not None else None)

    def raw(self, path):
        return self._url("member", *path.split("/"))

    def search(self, **query):
        return self._url("search", query=query)

    def download(self):
        return self._url("download")


def _page(request, template, values, status=200, headers=None):
    archive_node = request.context if isinstance(request.context, ArchiveNode) else None
    ticket_node = _ticket_node(request.context)
    values = {"ticket": ticket_node.ticket,
              "ticket_url": request.resource_url(ticket_node),
              "archive": archive_node.archive if archive_node else None,
              "urls": ArchiveUrls(request.resource_url(archive_node)) if archive_node
              else None, **values}
    response = render_to_response(template, values, request=request)
    response.status_int = status
    response.headers.update(headers or {})
    return response


def _looked_up(request, call, *args):
    """``call(request, archive, *args)``; the index's state as a page when it is not ready."""
    archive = request.context.archive
    try:
        return call(request, archive, *args)
    except ServiceUnavailable as exc:
        raise _Instead(_page(request, "inspect/index_state.jinja2",
                             {"building": True, "detail": exc.detail,
                              "retry_after": store.RETRY_AFTER},
                             503, {"Retry-After": store.RETRY_AFTER})) from None
    except Unprocessable as exc:
        raise _Instead(_page(request, "inspect/index_state.jinja2",
                             {"building": False, "detail": exc.detail, "retry_after": None},
                             422)) from None


def _member_path(request):
    return "/".join(request.subpath)


# --- the member tree -------------------------------------------------------------------------

def tree_rows(members):
    """The page's rows: ``(depth, folder name, None)`` or ``(depth, file name, member)``,
    folders before the files they hold, in the order of the archive's bytes."""
    rows = []

    def walk(node, depth):
        for name, child in node["dirs"].items():
            rows.append((min(depth, MAX_DEPTH), name, None))
            walk(child, depth + 1)
        for member in node["files"]:
            rows.append((min(depth, MAX_DEPTH), member.path.rsplit("/", 1)[-1], member))

    walk(services.tree(members), 0)
    return rows


@view_config(context=ArchiveNode, name="members", permission=Permission.DOWNLOAD,
             request_method="GET")
@_pages
def members_page(request):
    archive = request.context.archive
    index_row = _looked_up(request, services.index_of)
    size = services.MEMBERS_PAGE
    last = max((index_row.members - 1) // size + 1, 1)
    number = min(max(parse_natural(request.GET.get("page", "1")) or 1, 1), last)
    rows = store.members(request.dbsession, archive.id, size, (number - 1) * size)
    urls = ArchiveUrls(request.resource_url(request.context))
    return _page(request, "inspect/members.jinja2", {
        "index": index_row, "rows": tree_rows(rows), "page": number, "last_page": last,
        "first_index": (number - 1) * size + 1, "shown": len(rows),
        "prev_url": urls.members(number - 1) if number > 1 else None,
        "next_url": urls.members(number + 1) if number < last else None,
    })


# --- the viewer ------------------------------------------------------------------------------

@view_config(context=ArchiveNode, name="view", permission=Permission.DOWNLOAD,
             request_method="GET")
@_pages
def viewer(request):
    path = _member_path(request)
    if not path:
        return HTTPSeeOther(request.resource_url(request.context, "members"))
    index_row, member = _looked_up(request, services.member_of, path)
    params = request.GET
    target = None
    query = {"count": params.get("count", ""), "start": params.get("start", ""),
             "tail": params.get("tail", "")}
    if params.get("line", "") != "":
        target = services.int_param(params, "line", 1, 1, 2**62)
        query.update(start=str(max(1, target - LINES_ABOVE)), tail="")
    values = {"member": member, "index": index_row, "target": target, "refusal": None,
              "lines": None, "line_keep": reader.LINE_KEEP,
              "default_count": services.DEFAULT_PAGE_LINES}
    try:
        page = services.lines_of(request, request.context.archive, index_row, member, query)
    except Unprocessable as exc:
        values["refusal"] = exc.detail
        return _page(request, "inspect/viewer.jinja2", values, 422)
    count = services.int_param(query, "count", services.DEFAULT_PAGE_LINES, 1,
                               services.MAX_PAGE_LINES)
    start, shown = page["start"], page["count"]
    urls = ArchiveUrls(request.resource_url(request.context))
    keep = {"count": count} if count != services.DEFAULT_PAGE_LINES else {}
    values.update(
        lines=page, count=count, end=start + shown - 1,
        first_url=urls.view(member.path, **keep),
        prev_url=urls.view(member.path, start=max(1, start - count), **keep)
        if start > 1 else None,
        next_url=urls.view(member.path, start=start + shown, **keep) if page["more"] else None,
        tail_url=urls.view(member.path, tail=1, **keep),
        page_sizes=[(n, urls.view(member.path, start=start, count=n))
                    for n in (100, 200, 500, 1000)],
    )
    return _page(request, "inspect/viewer.jinja2", values)


@view_config(context=ArchiveNode, name="member", permission=Permission.DOWNLOAD,
             request_method="GET")
@_pages
def member_download(request):
    """Only that member's bytes, as stored: the API's own response."""
    return _looked_up(request, member_response, _member_path(request))


# --- search ----------------------------------------------------------------------------------

def _checked(params, name):
    try:
        return services.bool_param(params, name)
    except BadRequest:
        return False


def _form(params):
    """What the search form shows again: the caller's own values."""
    return {"q": params.get("q", ""), "regex": _checked(params, "regex"),
            "ignore_case": _checked(params, "ignore_case"),
            "context": params.get("context", ""), "member": params.get("member", ""),
            "limit": params.get("limit", "")}


def merged_lines(hits):
    """One member's hits and their context as rows in line order, each line once (hits
    close together share their context, as grep prints them); None marks a gap."""
    by_number = {}
    for hit in hits:
        for line in (*hit["before"], *hit["after"]):
            by_number.setdefault(line["line"], {**line, "match": None})
    for hit in hits:
        by_number[hit["line"]] = hit
    rows, previous = [], None
    for number in sorted(by_number):
        if previous is not None and number > previous + 1:
            rows.append(None)
        rows.append(by_number[number])
        previous = number
    return rows


def _summary(found):
    """Plain sentences for the caps a search reached."""
    reason = found["reason"]
    if reason is None:
        return None
    limits = found["limits"]
    return CAP_MESSAGES[reason].format(results=found["results"],
                                       max_results=services.MAX_SEARCH_RESULTS,
                                       bytes=filesize(limits["bytes"]),
                                       seconds=limits["seconds"])


def _search_page(request, scope, run):
    params = request.GET
    values = {"scope": scope, "form": _form(params), "found": None, "error": None,
              "cap": None, "archives": [], "building": False,
              "max_context": services.search.MAX_CONTEXT,
              "max_limit": services.MAX_SEARCH_RESULTS,
              "default_limit": services.DEFAULT_SEARCH_RESULTS, "retry_url": None}
    if not params.get("q"):
        return _page(request, "inspect/search.jinja2", values)
    try:
        found, event_id = run(services.search_params(params))
    except (BadRequest, NotFound) as exc:
        values["error"] = exc.detail
        return _page(request, "inspect/search.jinja2", values, exc.status)
    except services.SearchesBusy as exc:
        values["error"] = exc.detail
        return _page(request, "inspect/search.jinja2", values, exc.status,
                     {"Retry-After": services.SEARCH_RETRY_AFTER})
    # Both searches are shown grouped by archive; one archive's is a group of one.
    entries = found["archives"] if scope == "ticket" else [{
        "id": found["archive"], "name": found["name"], "members": found["members"],
        "errors": found["errors"], "building": False}]
    for entry in entries:
        entry["urls"] = ArchiveUrls.of(request, entry["id"])
        for member in entry["members"]:
            member["rows"] = merged_lines(member["hits"])
    building = any(entry["building"] for entry in entries)
    values.update(found=found, archives=entries, cap=_summary(found), building=building,
                  retry_after=store.RETRY_AFTER,
                  retry_url=_retry_url(request, event_id) if building else None)
    return _page(request, "inspect/search.jinja2", values)


def _retry_url(request, event_id):
    """The search again, marked as the retry of the one audited as ``event_id``."""
    query = [(name, value) for name, value in request.GET.items() if name != RETRY_OF]
    if event_id is not None:
        query.append((RETRY_OF, str(event_id)))
    return request.path_url + "?" + urllib.parse.urlencode(query)


@view_config(context=ArchiveNode, name="search", permission=Permission.DOWNLOAD,
             request_method="GET")
@_pages
def archive_search(request):
    # An archive whose index is being built is not searched at all (and not audited): the
    # retry of that page is simply its address again.
    return _search_page(request, "archive", lambda params: (_looked_up(
        request, services.search_archive, params), None))


@view_config(context=TicketNode, name="search", permission=Permission.DOWNLOAD,
             request_method="GET")
@_pages
def ticket_search(request):
    ticket = request.context.ticket
    return _search_page(request, "ticket", lambda params: services.search_ticket_once(
        request, ticket, archives.archives_of_ticket(request.dbsession, ticket), params,
        request.GET.get(RETRY_OF)))

