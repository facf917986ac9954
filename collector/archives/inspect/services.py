"""What the API and the pages ask of the inspect package: members, a member's bytes and
lines, and searches of one archive or of a whole ticket. One implementation for both."""

import contextlib
import dataclasses
import datetime as dt
import posixpath
import threading

from collector.archives.inspect import formats, reader, search, store
from collector.archives.inspect.formats import Budget, InspectError
from collector.audit.services import earlier_same, record
from collector.errors import BadRequest, DomainError, NotFound, Unprocessable
from collector.numbers import parse_int

MAX_PAGE_LINES = 1000
DEFAULT_PAGE_LINES = 200
MAX_SEARCH_RESULTS = 1000
DEFAULT_SEARCH_RESULTS = 100
MEMBERS_PAGE = 1000
SEARCH_RETRY_AFTER = "5"
# How long the page's automatic retries of a ticket search count as that one search (the
# retries go on while an index is built; a longer wait records the search once more).
SEARCH_RETRY_WINDOW = dt.timedelta(minutes=10)


def index_of(request, archive):
    """The ready index of ``archive`` (built now if needed); 422 when it cannot be built."""
    row = store.ensure(request, archive)
    if row.state == "failed":
        raise Unprocessable(f"cannot look inside {archive.name}: {row.error}")
    return row


def member_of(request, archive, path):
    row = index_of(request, archive)
    member = store.members(request.dbsession, archive.id, path=path)
    if member is None:
        raise NotFound(f"{archive.name} has no member {path!r}")
    return row, member


def _paths(request, archive):
    """The archive's bytes (a ``Source`` over the storage backend) and the local file of
    its gzip seek points."""
    backend = request.storage.backend
    return (store.source(backend, archive),
            str(backend.index_path(archive.storage_key, "gzidx")))


def _readable(member):
    if member.kind == "binary":
        raise Unprocessable(f"{member.path} is a binary file: download it instead")
    if member.kind == "link":
        raise Unprocessable(f"{member.path} is a link to {member.target}; links are not "
                            "followed")


def open_stored(request, archive, index_row, member):
    """The member's bytes as stored (seekable where the format allows), budgeted."""
    archive_path, gzip_index = _paths(request, archive)
    if member.kind == "link":
        _readable(member)
    return reader.open_stored(archive_path, index_row.format, member, gzip_index)


def open_text(request, archive, index_row, member):
    _readable(member)
    archive_path, gzip_index = _paths(request, archive)
    budget = Budget(request.registry.settings["inspect.max_read_bytes"],
                    what=f"reading {member.path}")
    return reader.open_text(archive_path, index_row.format, member, gzip_index, budget)


def int_param(params, name, default, low, high):
    value = params.get(name, "")
    if value == "":
        return default
    number = parse_int(value, -(2 ** 63), 2 ** 63 - 1)
    if number is None:
        raise BadRequest(f"{name} must be an integer") from None
    if not low <= number <= high:
        raise BadRequest(f"{name} must be {low}..{high}")
    return number


def bool_param(params, name):
    text = str(params.get(name, "")).strip().lower()
    if text in {"", "0", "false", "no", "off"}:
        return False
    if text in {"1", "true", "yes", "on"}:
        return True
    raise BadRequest(f"{name} must be true or false")


def lines(request, archive, path, params):
    """A page of the member's lines: ``start`` (1-based) and ``count``, or ``tail``."""
    index_row, member = member_of(request, archive, path)
    return lines_of(request, archive, index_row, member, params)


def lines_of(request, archive, index_row, member, params):
    """``lines`` for a member already looked up (the viewer page has it at hand)."""
    count = int_param(params, "count", DEFAULT_PAGE_LINES, 1, MAX_PAGE_LINES)
    tail = bool_param(params, "tail")
    start = int_param(params, "start", 1, 1, 2**62)
    record(request, "archive.view", ticket=archive.ticket, archive=archive,
           detail={"path": member.path[:500], "start": "tail" if tail else start})
    total = None
    try:
        if tail:
            with open_text(request, archive, index_row, member) as stream:
                total = reader.count_lines(stream)
            start = max(1, total - count + 1)
        with open_text(request, archive, index_row, member) as stream:
            found, more = reader.read_lines(stream, start, count)
    except formats.TooMuchOutput as exc:
        raise Unprocessable(str(exc)) from None
    except InspectError as exc:
        raise Unprocessable(str(exc)) from None
    except formats.DAMAGE as exc:
        raise Unprocessable(f"{member.path}: {formats.damage_message(exc)}") from None
    if not more and found:
        total = found[-1][0]
    elif not found and start == 1:
        total = 0
    return {
        "path": member.path, "size": member.size, "compression": member.compression,
        "start": start, "count": len(found), "total_lines": total, "more": more,
        "lines": [{"line": number, "text": reader.decode(kept), "length": length,
                   "cut": length > len(kept)} for number, kept, length in found],
    }


@dataclasses.dataclass
class SearchParams:
    q: str
    regex: bool
    ignore_case: bool
    context: int
    member: str | None
    limit: int


def search_params(params):
    q = params.get("q", "")
    if not q:
        raise BadRequest("q: the search text is required")
    if len(q) > 1000:
        raise BadRequest("q: at most 1000 characters")
    return SearchParams(q, bool_param(params, "regex"), bool_param(params, "ignore_case"),
                        int_param(params, "context", 0, 0, search.MAX_CONTEXT),
                        params.get("member") or None,
                        int_param(params, "limit", DEFAULT_SEARCH_RESULTS, 1,
                                  MAX_SEARCH_RESULTS))


def _matcher(params):
    try:
        return search.compile_matcher(params.q, params.regex, params.ignore_case)
    except search.BadPattern as exc:
        raise BadRequest(f"q: {exc}") from None


class SearchesBusy(DomainError):
    """Every search slot is taken (not a ``ServiceUnavailable``: the pages show that one as
    an index being built)."""

    status = 503


class SearchSlots:
    """Searches running at once in this process, at most ``INSPECT_SEARCH_CONCURRENCY``.

    A search holds a worker thread and a core for up to ``INSPECT_SEARCH_TIMEOUT``; without
    a bound of their own, as many slow searches as there are threads starve everything else
    (health included). One more is refused at once (503, ``Retry-After``) rather than queued:
    a waiting request would hold a thread too. The bound is per process, like the threads
    and the cores it protects.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.running = 0

    @contextlib.contextmanager
    def taken(self, limit):
        with self._lock:
            if self.running >= limit:
                raise SearchesBusy(f"{self.running} searches are running, the most at once "
                                   "(INSPECT_SEARCH_CONCURRENCY); try again in a few seconds",
                                   Retry_After=SEARCH_RETRY_AFTER)
            self.running += 1
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1


search_slots = SearchSlots()


@contextlib.contextmanager
def _searching(request, params):
    """The compiled matcher and a ``Scan``, while this search holds a slot."""
    matcher = _matcher(params)
    with search_slots.taken(request.registry.settings["inspect.search_concurrency"]):
        try:
            yield matcher, new_scan(request, params)
        except search.BadPattern as exc:  # found out while matching (memory)
            raise BadRequest(f"q: {exc}") from None


def new_scan(request, params):
    settings = request.registry.settings
    return search.Scan(params.limit, settings["inspect.search_max_bytes"],
                       settings["inspect.search_timeout"])


def _search_members(request, archive, params, matcher, scan):
    """``(member results, errors)`` of one archive, in the order of its bytes."""
    index_row = index_of(request, archive)
    if params.member is not None:
        member = store.members(request.dbsession, archive.id, path=params.member)
        if member is None:
            raise NotFound(f"{archive.name} has no member {params.member!r}")
        candidates = [member]
    else:
        candidates = store.members(request.dbsession, archive.id)
    candidates = [member for member in candidates if member.kind == "text"]
    results, errors = [], []
    if index_row.format.startswith("tar") and len(candidates) > 1:
        _search_tar(request, archive, index_row, candidates, matcher, scan, params,
                    results, errors)
    else:
        for member in candidates:
            if not scan.check():
                break
            try:
                with open_text(request, archive, index_row, member) as stream:
                    prefetched = search.Prefetched(stream)
                    try:
                        hits = search.search_stream(prefetched, matcher, scan,
                                                    params.context)
                    finally:
                        prefetched.close()
            except InspectError as exc:
                errors.append({"path": member.path, "detail": str(exc)})
                continue
            except formats.DAMAGE as exc:
                errors.append({"path": member.path, "detail": formats.damage_message(exc)})
                continue
            if hits:
                results.append({"path": member.path, "compression": member.compression,
                                "hits": hits})
    if index_row.error:
        errors.append({"path": None, "detail": index_row.error})
    return results, errors


def _search_tar(request, archive, index_row, candidates, matcher, scan, params, results,
                errors):
    archive_path, _ = _paths(request, archive)
    budget = Budget(request.registry.settings["inspect.max_read_bytes"],
                    what=f"searching {archive.name}")
    member = None
    walk = search.sequential(archive_path, index_row.format, candidates, budget)
    try:
        for member, stream in walk:
            if not scan.check():
                break
            hits = search.search_stream(stream, matcher, scan, params.context)
            if hits:
                results.append({"path": member.path, "compression": member.compression,
                                "hits": hits})
    except InspectError as exc:
        errors.append({"path": member and member.path, "detail": str(exc)})
    except formats.DAMAGE as exc:
        errors.append({"path": member and member.path,
                       "detail": formats.damage_message(exc)})
    finally:
        walk.close()


def search_archive(request, archive, params):
    with _searching(request, params) as (matcher, scan):
        members, errors = _search_members(request, archive, params, matcher, scan)
    record(request, "archive.search", ticket=archive.ticket, archive=archive,
           detail=_search_detail(params))
    return {"archive": archive.id, "name": archive.name, "q": params.q,
            "members": members, "errors": errors, **scan.summary()}


def search_ticket(request, ticket, archives, params):
    """The same search across the ticket's archives (``member`` applies to each)."""
    found = _ticket_search(request, ticket, archives, params)
    record(request, "ticket.search", ticket=ticket, detail=_search_detail(params))
    return found


def search_ticket_once(request, ticket, archives, params, retry_of=None):
    """``search_ticket`` for the page, whose automatic retries (while an archive's index is
    built) are one search of one person: ``(found, event id)``.

    ``retry_of`` is the id of the event the first search recorded, which the page's retry
    address carries. A retry records nothing when that event is the very same search —
    same person, ticket, text and kind — from the last ``SEARCH_RETRY_WINDOW``; anything
    else (no marker, a forged or foreign id, another text, an old event) is audited as a
    search of its own. So the marker never hides a search the log does not show already.
    """
    found = _ticket_search(request, ticket, archives, params)
    detail = _search_detail(params)
    actor = request.identity.user if request.identity is not None else None
    earlier = earlier_same(request.dbsession, retry_of, action="ticket.search",
                           actor_id=actor.id if actor is not None else None,
                           ticket_id=ticket.id, detail=detail, within=SEARCH_RETRY_WINDOW)
    if earlier is not None:
        return found, earlier.id
    event = record(request, "ticket.search", ticket=ticket, detail=detail)
    if event is None:  # the audit log could not build it (and said so)
        return found, None
    request.dbsession.flush()  # its id, for the retry's address
    return found, event.id


def _search_detail(params):
    return {"q": params.q[:200], "regex": params.regex}


def _ticket_search(request, ticket, archives, params):
    found = []
    with _searching(request, params) as (matcher, scan):
        for archive in archives:
            if not scan.check():
                break
            entry = {"id": archive.id, "name": archive.name, "members": [], "errors": [],
                     "building": False}
            try:
                entry["members"], entry["errors"] = _search_members(request, archive,
                                                                    params, matcher, scan)
            except (Unprocessable, NotFound) as exc:
                entry["errors"].append({"path": None, "detail": exc.detail})
            except store.ServiceUnavailable as exc:
                # Not an error of the archive: searched once its index exists.
                entry["building"] = True
                entry["errors"].append({"path": None, "detail": exc.detail})
            found.append(entry)
    return {"ticket": ticket.number, "q": params.q, "archives": found, **scan.summary()}


def tree(members):
    """Members as nested folders for the page: ``{"dirs": {name: tree}, "files": [...]}``."""
    root = {"dirs": {}, "files": []}
    for member in members:
        folder, _ = posixpath.split(member.path)
        node = root
        for part in folder.split("/") if folder else ():
            node = node["dirs"].setdefault(part, {"dirs": {}, "files": []})
        node["files"].append(member)
    return root
