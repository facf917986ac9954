"""Domain rules for platforms, tickets and upload tokens — the only place they live.

Both the API and the HTML views call these; nothing here knows about HTTP.
"""

import dataclasses
import datetime as dt
import functools
import re
import secrets
import uuid

from sqlalchemy import (
    String,
    bindparam,
    case,
    cast,
    delete,
    false,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from collector.accounts import services as accounts
from collector.accounts import throttle
from collector.accounts.models import User
from collector.archives.models import Archive
from collector.audit.services import record, token_hint
from collector.db import as_integer, utcnow
from collector.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Locked,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from collector.tickets.models import (
    NUMBER_MAX,
    NUMBER_MIN,
    Platform,
    PlatformMember,
    Ticket,
    token_digest,
)

PLATFORM_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,19}$")


# --- upload tokens -----------------------------------------------------------------------

def new_token():
    """256 bits from the OS generator, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def normalise_token(raw):
    """Tokens of the original project are UUIDs, given with or without dashes."""
    raw = (raw or "").strip()
    if len(raw) in (32, 36) and re.fullmatch(r"[0-9a-fA-F-]+", raw):
        try:
            return str(uuid.UUID(raw))
        except ValueError:
            return raw
    return raw


_UUID_FORM = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def original_token(raw):
    """A ticket token of the original project, in the form stored here: the dashed
    lowercase UUID that ``normalise_token`` makes of what a customer sends (the original
    stored 32 hex digits and showed the dashed form). None if it is not a UUID."""
    token = normalise_token(raw)
    return token if _UUID_FORM.fullmatch(token) else None


@dataclasses.dataclass(frozen=True)
class TokenRefusal:
    """Why a ticket's token cannot upload: a stable ``reason`` code (``ticket_resolved``,
    ``no_attempts``, ``token_expired``) for the audit log, the metrics and the webhooks,
    and a ``message`` for the customer. Neither ever contains the token."""

    reason: str
    message: str

    def error(self):
        return Locked(self.message, reason=self.reason)


def token_refusal(ticket, now=None, need_attempt=True):
    """Why this ticket's token cannot upload right now (a ``TokenRefusal``), or None when
    it can. ``ticket`` is a Ticket or a ``token_state`` row.

    ``need_attempt=False`` is for continuing a resumable upload, which already holds the
    attempt it reserved when it was created: the ticket may have none left by now.
    """
    now = now or utcnow()
    if ticket.resolved:
        return TokenRefusal("ticket_resolved", f"ticket {ticket.number} already resolved")
    if need_attempt and ticket.attempts <= 0:
        return TokenRefusal("no_attempts", "upload token expired: no upload attempts left")
    if now >= ticket.expires_at:
        return TokenRefusal("token_expired",
                            f"upload token expired at {ticket.expires_at.isoformat()}")
    return None


def find_ticket_by_token(dbsession, token):
    token = normalise_token(token)
    if not token:
        return None
    # An exact equality on the unique index of the token's digest: neither Python nor
    # the database compares the token itself, so timing reveals nothing of its prefix.
    return dbsession.scalars(_TICKET_BY_TOKEN, {"digest": token_digest(token)}).one_or_none()


_TICKET_BY_TOKEN = select(Ticket).where(Ticket.token_digest == bindparam("digest"))


def token_state(db, token):
    """The columns the token rules read, without loading the ticket (the public check).

    One indexed lookup returning a plain row; ``token_refusal`` reads it like a ticket.
    ``db`` is a session or a plain connection.
    """
    token = normalise_token(token)
    if not token:
        return None
    return db.execute(_TOKEN_STATE, {"digest": token_digest(token)}).one_or_none()


# Built once: building a select per call costs more than running it (measured 3×).
_TOKEN_STATE = select(Ticket.id, Ticket.number, Ticket.token, Ticket.attempts, Ticket.resolved,
                      Ticket.expires_at).where(Ticket.token_digest == bindparam("digest"))


def ticket_ref_by_token(connection, token):
    """``(id, number)`` of the ticket a token names, whatever its state, or None: what the
    audit log records of a refused upload (by its caller: the log itself never sees the
    token). ``connection``: a plain connection of its own."""
    token = normalise_token(token)
    if not token:
        return None
    return connection.execute(_TICKET_REF, {"digest": token_digest(token)}).one_or_none()


_TICKET_REF = select(Ticket.id, Ticket.number).where(Ticket.token_digest == bindparam("digest"))


# --- guessing upload tokens --------------------------------------------------------------

# Unknown-token answers allowed per client address and window; then every token check
# from that address answers 429 (collector.accounts.throttle: race-free, across instances).
TOKEN_THROTTLE_WINDOW = throttle.WINDOW
TOKEN_THROTTLE_PER_ADDRESS = 20
TOKEN_THROTTLE_KEY = "token-address:{}"


def judged_token_state(db, token, address):
    """``token_state`` under the per-address throttle; 429 once ``address`` had too many
    unknown tokens. ``address`` None (no client, e.g. the importer) is not throttled.

    A known token is only read: the address's counter (429 when it is full) and the token,
    in one short read-only transaction of its own — no row is locked, so checks from one
    address (every customer behind one NAT, the upload page polling) run side by side. An
    unknown token then takes a slot in a transaction of its own, which decides 404 or 429
    atomically: however many guesses arrive at once, no more than the limit are answered
    404 (a guess made while the counter fills may be looked up before it is counted, which
    tells it nothing more than the 429 would). The request's own rollback cannot take the
    count along. ``db``: a session or a connection (its engine is used).
    """
    if address is None:
        return token_state(db, token)
    key, now = TOKEN_THROTTLE_KEY.format(address[:64]), utcnow()
    engine = throttle.engine_of(db)
    with engine.connect() as connection:
        wait = throttle.full(connection, key, TOKEN_THROTTLE_PER_ADDRESS, now)
        state = None if wait is not None else token_state(connection, token)
    if state is not None:
        return state
    if wait is None:
        with engine.begin() as connection:
            throttle.no_flush_wait(connection)
            wait = throttle.take(connection, key, TOKEN_THROTTLE_PER_ADDRESS, now)
        if wait is None:
            return None
    raise TooManyRequests("too many unknown upload tokens from this address; try "
                          f"again in {max(1, round(wait / 60))} minutes",
                          reason="token_throttled", Retry_After=wait)


def check_upload_token(dbsession, token, need_attempt=True, address=None):
    """The ticket a token may upload to; 401 without one, 403 unknown, 423 unusable, 429
    after too many unknown tokens from ``address`` (the client's, None: not throttled).

    ``need_attempt=False``: the request continues an upload that holds an attempt.
    """
    if not token:
        raise Unauthorized("Upload-Token header is required", reason="token_missing")
    ticket = None
    if judged_token_state(dbsession, token, address) is not None:
        ticket = find_ticket_by_token(dbsession, token)
    if ticket is None:
        raise Forbidden("upload token is not valid", reason="token_unknown")
    refusal = token_refusal(ticket, need_attempt=need_attempt)
    if refusal:
        raise refusal.error()
    return ticket


def ticket_for_valid_token(dbsession, token, need_attempt=True):
    """The ticket the token may upload to now, or None. ``need_attempt=False``: the
    ticket whose upload in progress it may continue (that upload holds its attempt)."""
    ticket = find_ticket_by_token(dbsession, token)
    if ticket is None or token_refusal(ticket, need_attempt=need_attempt):
        return None
    return ticket


def consume_attempt(dbsession, ticket):
    """Spend one attempt in one atomic UPDATE; concurrent uploads can never overdraw.

    Runs in the transaction that creates the archive, so an upload that does not become
    an archive rolls back and its attempt is never spent. Raises 423 when none is left.
    """
    now = utcnow()
    result = dbsession.execute(
        update(Ticket)
        .where(Ticket.id == ticket.id, Ticket.attempts > 0,
               Ticket.resolved == false(), Ticket.expires_at > now)
        .values(attempts=Ticket.attempts - 1, time_update=now)
        .execution_options(synchronize_session=False))
    dbsession.refresh(ticket)
    if result.rowcount != 1:
        refusal = token_refusal(ticket, now)
        raise refusal.error() if refusal else Locked("upload token can no longer be used")


def give_back_attempt(dbsession, ticket_id):
    """Return the attempt of an upload that will never become an archive (tus termination
    or expiry), in one atomic UPDATE. The caller makes it happen once: it runs in the
    transaction that deletes the upload's row, and only when that DELETE removed the row.
    """
    dbsession.execute(
        update(Ticket).where(Ticket.id == ticket_id)
        .values(attempts=Ticket.attempts + 1, time_update=utcnow())
        .execution_options(synchronize_session=False))


# --- platforms ---------------------------------------------------------------------------

def _flush_unique(dbsession, conflict):
    """Flush; a unique constraint lost to a concurrent request is a 409, not a 500."""
    try:
        dbsession.flush()
    except IntegrityError:
        raise Conflict(conflict) from None


def number_in_use(number):
    """The conflict of a ticket number: the same words whether the caller may see the
    ticket that has it or not, so a restricted platform's tickets are not revealed."""
    return f"ticket number {number} is already in use: choose another number"


def get_platform(dbsession, name):
    return dbsession.scalars(select(Platform).where(Platform.name == name)).one_or_none()


def visible_platforms_clause(user):
    """SQL condition for the platforms a user may see; the same rule as Platform's ACL."""
    if user.is_admin:
        return true()
    members = select(PlatformMember.platform_id).where(PlatformMember.user_id == user.id)
    return or_(Platform.restricted == false(), Platform.id.in_(members))


def list_platforms(dbsession, user, limit, offset):
    query = (select(Platform).where(visible_platforms_clause(user))
             .options(selectinload(Platform.members)))
    total = dbsession.scalar(select(func.count()).select_from(query.subquery()))
    rows = dbsession.scalars(query.order_by(Platform.name).limit(limit).offset(offset)).all()
    return rows, total


def ticket_counts(dbsession, platform_ids):
    """``{platform id: (tickets, unresolved tickets)}`` for the given platforms."""
    if not platform_ids:
        return {}
    rows = dbsession.execute(
        select(Ticket.platform_id, func.count(),
               func.sum(case((Ticket.resolved == false(), 1), else_=0)))
        .where(Ticket.platform_id.in_(platform_ids)).group_by(Ticket.platform_id)).all()
    return {platform_id: (total, int(unresolved or 0)) for platform_id, total, unresolved in rows}


def create_platform(dbsession, name, pretty_name, restricted=False, member_ids=(),
                    retention_resolved_days=None, retention_max_days=None):
    if get_platform(dbsession, name) is not None:
        raise Conflict(f"platform {name} already exists")
    platform = Platform(name=name, pretty_name=pretty_name, restricted=restricted,
                        retention_resolved_days=retention_resolved_days,
                        retention_max_days=retention_max_days)
    dbsession.add(platform)
    set_platform_members(platform, member_ids)
    _flush_unique(dbsession, f"platform {name} already exists")
    record(dbsession, "platform.create", detail={"platform": name, "restricted": restricted})
    return platform


def update_platform(dbsession, platform, **fields):
    name = fields.get("name")
    if name is not None and name != platform.name and get_platform(dbsession, name):
        raise Conflict(f"platform {name} already exists")
    member_ids = fields.pop("members", None)
    changed = sorted(key for key, value in fields.items() if getattr(platform, key) != value)
    for key, value in fields.items():
        setattr(platform, key, value)
    if member_ids is not None:
        before = {m.user_id for m in platform.members}
        set_platform_members(platform, member_ids)
        if before != set(member_ids):
            changed.append("members")
    dbsession.flush()
    if changed:
        record(dbsession, "platform.edit", detail={"platform": platform.name, "fields": changed})
    return platform


def set_platform_members(platform, user_ids):
    wanted = set(user_ids)
    platform.members[:] = [m for m in platform.members if m.user_id in wanted]
    present = {m.user_id for m in platform.members}
    platform.members.extend(PlatformMember(user_id=uid) for uid in sorted(wanted - present))


def delete_platform(dbsession, platform):
    used = dbsession.scalar(select(func.count()).where(Ticket.platform_id == platform.id))
    if used:
        raise Conflict(f"platform {platform.name} still has {used} ticket(s)")
    record(dbsession, "platform.delete", detail={"platform": platform.name})
    dbsession.delete(platform)
    dbsession.flush()


# --- tickets -----------------------------------------------------------------------------

def get_ticket(dbsession, number):
    number = as_integer(number, NUMBER_MIN, NUMBER_MAX)
    if number is None:
        return None
    return dbsession.scalars(select(Ticket).where(Ticket.number == number)).one_or_none()


def visible_platform_ids(dbsession, user):
    """Ids of the platforms a user may see, or None when that is all of them.

    The same rule as the ACL, as a literal list. "All" adds no condition at all, so the
    ticket lists stay on their (time_create, id) index instead of sorting every row.
    """
    if user.is_admin:
        return None
    rows = dbsession.execute(select(Platform.id, visible_platforms_clause(user))).all()
    visible = [platform_id for platform_id, shown in rows if shown]
    return None if len(visible) == len(rows) else visible


def page(dbsession, model, conditions, limit, offset, columns=None):
    """Rows of ``model`` matching ``conditions``, newest first, and their total count.

    The page's ids are found first on the (time_create, id) index, then only those rows
    are loaded with their eager joins: OFFSET then skips index entries, not joined rows.
    With ``columns`` (a select of plain columns, built once) the page comes back as Core
    rows, which costs half as much as building ORM objects for a list that is only
    serialised; an unfiltered one (what staff open first, and every admin) runs
    statements built once on the session's connection — building and routing a select
    through the ORM per request cost more than the SQL itself (measured).
    """
    if columns is not None and not conditions:
        count, rows = _unfiltered_statements(model, columns)
        connection = dbsession.connection()
        total = connection.scalar(count)
        return connection.execute(rows, {"limit": limit, "offset": offset}).all(), total
    order = _newest_first(model)
    # count(*), not count(id): SQLite answers an unfiltered count(*) from the b-tree's
    # own counter (0.01 ms for 100,000 tickets) but walks an index for count(id) (6 ms).
    total = dbsession.scalar(select(func.count()).select_from(model).where(*conditions))
    ids = select(model.id).where(*conditions).order_by(*order).limit(limit).offset(offset)
    in_page = model.id.in_(ids.scalar_subquery())
    if columns is not None:
        return dbsession.execute(columns.where(in_page).order_by(*order)).all(), total
    rows = dbsession.scalars(select(model).where(in_page).order_by(*order)).unique().all()
    return rows, total


def _newest_first(model):
    return (model.time_create.desc(), model.id.desc())


@functools.cache
def _unfiltered_statements(model, columns):
    """(count, page) for a list without conditions; limit and offset are parameters."""
    order = _newest_first(model)
    ids = (select(model.id).order_by(*order)
           .limit(bindparam("limit")).offset(bindparam("offset")))
    return (select(func.count()).select_from(model.__table__),
            columns.where(model.id.in_(ids.scalar_subquery())).order_by(*order))


def ticket_conditions(dbsession, user, filters):
    """WHERE clauses for a ticket list: what the user may view, then the filters."""
    conditions = []
    visible = visible_platform_ids(dbsession, user)
    if visible is not None:
        conditions.append(Ticket.platform_id.in_(visible))
    if filters.get("number"):
        conditions.append(Ticket.number.in_(filters["number"]))
    if filters.get("resolved") is not None:
        conditions.append(Ticket.resolved == filters["resolved"])
    if filters.get("platform"):
        conditions.append(Ticket.platform_id == select(Platform.id).where(
            Platform.name == filters["platform"]).scalar_subquery())
    if filters.get("user"):
        conditions.append(Ticket.user_id == select(User.id).where(
            User.username == filters["user"]).scalar_subquery())
    if filters.get("search"):
        pattern = "%" + filters["search"].replace("%", r"\%").replace("_", r"\_") + "%"
        conditions.append(or_(cast(Ticket.number, String).like(pattern, escape="\\"),
                              Ticket.note.ilike(pattern, escape="\\")))
    if filters.get("time_create__gte"):
        conditions.append(Ticket.time_create >= filters["time_create__gte"])
    if filters.get("time_create__lte"):
        conditions.append(Ticket.time_create <= filters["time_create__lte"])
    return conditions


def list_tickets(dbsession, user, filters, limit, offset):
    """Tickets the user may view, newest first, filtered in the query."""
    return page(dbsession, Ticket, ticket_conditions(dbsession, user, filters), limit, offset)


def list_ticket_rows(dbsession, user, filters, limit, offset):
    """``list_tickets`` as plain rows: the ticket's columns plus ``platform`` (its name)
    and ``user`` (the owner's username or None)."""
    return page(dbsession, Ticket, ticket_conditions(dbsession, user, filters), limit, offset,
                _ticket_row_columns())


@functools.cache
def _ticket_row_columns():
    return (select(*Ticket.__table__.columns, Platform.name.label("platform"),
                   User.username.label("user"))
            .join(Platform, Platform.id == Ticket.platform_id)
            .outerjoin(User, User.id == Ticket.user_id))


def create_ticket(dbsession, settings, user, platform, number, attempts=None, note="",
                  expires_at=None, lifetime_days=None):
    if get_ticket(dbsession, number) is not None:
        raise Conflict(number_in_use(number))
    if expires_at is None:
        expires_at = expiry_after(
            settings["ticket.lifetime_days"] if lifetime_days is None else lifetime_days)
    ticket = Ticket(
        number=number, platform=platform, user_id=user.id if user else None,
        attempts=settings["ticket.attempts"] if attempts is None else attempts,
        note=note or "", expires_at=expires_at, token=new_token())
    dbsession.add(ticket)
    _flush_unique(dbsession, number_in_use(number))
    record(dbsession, "ticket.create", ticket=ticket,
           detail={"platform": platform.name, "attempts": ticket.attempts})
    return ticket


def update_ticket(dbsession, ticket, **fields):
    """Change a ticket's fields. (A request that resolves a ticket also removes what its
    token left unfinished: ``tickets.commands``, which knows the uploads.)"""
    number = fields.get("number")
    if number is not None and number != ticket.number and get_ticket(dbsession, number):
        raise Conflict(number_in_use(number))
    changed = sorted(key for key, value in fields.items() if getattr(ticket, key) != value)
    was_resolved = ticket.resolved
    for key, value in fields.items():
        setattr(ticket, key, value)
    ticket.time_update = utcnow()
    if ticket.resolved != was_resolved:
        # Retention counts from here.
        ticket.resolved_at = ticket.time_update if ticket.resolved else None
    _flush_unique(dbsession, number_in_use(ticket.number))
    if ticket.resolved != was_resolved:
        record(dbsession, "ticket.resolve" if ticket.resolved else "ticket.reopen",
               ticket=ticket)
    if set(changed) - {"resolved"}:
        record(dbsession, "ticket.edit", ticket=ticket,
               detail={"fields": [key for key in changed if key != "resolved"]})
    return ticket


def rotate_token(dbsession, ticket):
    old = ticket.token
    ticket.token = new_token()
    ticket.time_update = utcnow()
    dbsession.flush()
    record(dbsession, "ticket.token_rotate", ticket=ticket, detail={"token": token_hint(old)})
    return ticket


def check_not_held(ticket):
    """A ticket under legal hold keeps itself and its archives: 423 for any deletion."""
    if ticket.legal_hold:
        raise Locked(f"ticket {ticket.number} is under legal hold: its archives cannot be "
                     "deleted until an admin lifts the hold", reason="legal_hold")


def set_legal_hold(dbsession, ticket, hold, reason=""):
    """Place or lift the legal hold (the caller has checked the admin permission);
    audited as ``ticket.hold`` / ``ticket.release``. Returns whether it changed."""
    if ticket.legal_hold == hold:
        return False
    ticket.legal_hold = hold
    ticket.time_update = utcnow()
    dbsession.flush()
    record(dbsession, "ticket.hold" if hold else "ticket.release", ticket=ticket,
           detail={"reason": reason[:500]} if reason else None)
    return True


def delete_ticket(dbsession, storage, ticket):
    """Delete the ticket and its archives; their files go after the commit. (Its
    unfinished uploads go first: ``tickets.commands.delete_ticket``.)"""
    check_not_held(ticket)
    keys = dbsession.scalars(select(Archive.storage_key).where(Archive.ticket_id == ticket.id))
    for key in keys:
        storage.delete_after_commit(key)
    dbsession.execute(delete(Archive).where(Archive.ticket_id == ticket.id))
    record(dbsession, "ticket.delete", ticket=ticket, detail={"platform": ticket.platform.name})
    dbsession.delete(ticket)
    dbsession.flush()


def require_platform(dbsession, name):
    platform = get_platform(dbsession, name)
    if platform is None:
        raise NotFound(f"platform {name} does not exist")
    return platform


# --- rules the commands share (tickets.commands) ----------------------------------------

def expiry_after(days, now=None):
    """When a token given ``days`` of lifetime expires. Counted from now, for a new ticket
    and for an edit alike: staff extend a ticket for a late customer."""
    return (now or utcnow()) + dt.timedelta(days=days)


# --- platform members ------------------------------------------------------------------------

def members_of(dbsession, platform):
    """The users who are members of ``platform``, by username."""
    return accounts.users_with_ids(dbsession, [m.user_id for m in platform.members])


def member_ids(dbsession, names):
    """The ids of the users named ``names``; 400 naming those that do not exist."""
    if not all(isinstance(name, str) for name in names):
        raise BadRequest("members must be a list of usernames")
    found = accounts.user_ids_by_name(dbsession, names)
    missing = sorted(set(names) - set(found))
    if missing:
        raise BadRequest(f"members: unknown user(s) {', '.join(missing)}")
    return list(found.values())


def new_platform(dbsession, name, pretty_name, restricted=False, members=(),
                 retention_resolved_days=None, retention_max_days=None):
    """A platform with its members given by username."""
    return create_platform(dbsession, name, pretty_name, restricted,
                           member_ids(dbsession, members), retention_resolved_days,
                           retention_max_days)


def change_platform(dbsession, platform, **fields):
    """Change the given fields; ``members`` (usernames), when given, replaces the list."""
    if "members" in fields:
        fields["members"] = member_ids(dbsession, fields["members"])
    return update_platform(dbsession, platform, **fields)


def change_membership(dbsession, platform, username, add):
    """Add the user named ``username`` to the platform's members, or remove them; returns
    the user."""
    user = accounts.get_user_by_name(dbsession, username) if username else None
    if user is None:
        raise BadRequest(f"there is no user named {username!r}" if username
                         else "give the username of the member")
    ids = {m.user_id for m in platform.members}
    update_platform(dbsession, platform, members=sorted(ids | {user.id} if add
                                                        else ids - {user.id}))
    return user
