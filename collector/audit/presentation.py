"""How an audit event reads on a page: the few details a person looks for, the rest apart.

An event's ``detail`` is whatever the code that recorded it kept (services.record); stored
as is, it reads badly on a page ("regex False", "concat" with nothing after it, a sha256
cut off by the table). Here each kind of action names the three details that tell what
happened (an upload: its name, size and sha256; a download: the archive and the range; a
search: the query, whether it was a regular expression and its hits); every other detail
goes behind the row's disclosure. Values print for people: yes/no for booleans, nothing
for empty values, readable labels for keys. Sizes and long values are only marked here;
the template formats them (the ``filesize`` filter, the shortening macro).
"""

from typing import NamedTuple

# The details shown on the event's own line, by action, then by the action's family (the
# part before the dot). Anything else: the first details it has.
KEY_DETAILS = {
    "upload.started": ("name", "size", "concat"),
    "upload.finished": ("name", "size", "sha256"),
    "upload.terminated": ("received", "size", "upload"),
    "upload.failed": ("received", "size", "message"),
    "upload.refused": ("status", "message", "size"),
    "archive.delete": ("name", "size", "sha256"),
    "archive.download": ("name", "range", "size"),
    "archive.download_member": ("path", "size"),
    "archive.view": ("path", "start"),
    "archive.search": ("q", "regex", "hits"),
    "ticket.search": ("q", "regex", "hits"),
    "ticket.create": ("platform", "attempts"),
    "ticket.edit": ("fields",),
    "ticket.hold": ("reason",),
    "ticket.token_rotate": ("token",),
    "ticket.delete": ("platform",),
    "token.revoke_all": ("user", "count", "cause"),
    "signin": ("via", "username"),
    "user": ("user", "admin", "keep_personal_tokens"),
    "token": ("name", "kind", "user"),
    "platform": ("platform", "restricted", "fields"),
    "webhook": ("webhook", "url", "platform"),
    "storage": ("free", "total", "threshold"),
    "import": ("mode", "archives", "problems_count"),
}
KEY_COUNT = 3

LABELS = {
    "q": "query", "regex": "regex", "hits": "hits", "path": "file", "start": "from line",
    "user_id": "user id", "token_id": "token id", "token_ids": "token ids",
    "keep_personal_tokens": "keeps personal tokens", "lifetime_days": "lifetime (days)",
    "problems_count": "problems", "unreferenced_count": "unreferenced",
    "concat": "tus concatenation", "via": "signed in via", "status": "HTTP status",
}
# Values the template shows as a size (bytes) and those it shortens with a copy button.
SIZES = frozenset({"size", "received", "free", "total", "threshold"})
HASHES = frozenset({"sha256", "md5", "token"})
LONG = frozenset({"name", "path", "q", "message", "url", "reason", "user_agent"})


class Detail(NamedTuple):
    key: str
    label: str
    value: object
    kind: str  # "size", "hash" (middle-shortened), "long" (end-shortened) or "text"


def label_of(key):
    return LABELS.get(key, key.replace("_", " "))


def readable(value):
    """A stored value as text for people; None when there is nothing to show."""
    if value is None or value == "" or value == [] or value == {}:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        shown = [readable(item) for item in value]
        return ", ".join(item for item in shown if item is not None) or None
    if isinstance(value, dict):
        shown = [(label_of(str(k)), readable(v)) for k, v in value.items()]
        return ", ".join(f"{k}: {v}" for k, v in shown if v is not None) or None
    return str(value)


def detail(key, value):
    if key in SIZES and isinstance(value, int | float) and not isinstance(value, bool):
        return Detail(key, label_of(key), value, "size")
    text = readable(value)
    if text is None:
        return None
    kind = "hash" if key in HASHES else "long" if key in LONG or len(text) > 40 else "text"
    return Detail(key, label_of(key), text, kind)


def key_names(action):
    return KEY_DETAILS.get(action) or KEY_DETAILS.get(action.split(".", 1)[0])


def describe_event(event):
    """``{"key": [Detail…], "more": [Detail…]}``: the event's line, then its disclosure
    (the remaining details, the archive's id, the address and user agent)."""
    stored = dict(event.detail or {})
    if event.action == "archive.download" and stored.get("range") == "":
        # No Range header: the whole archive, which is worth saying rather than omitting.
        stored["range"] = "whole file"
    details = [d for d in (detail(k, v) for k, v in stored.items()) if d is not None]
    wanted = key_names(event.action)
    if wanted:
        key = sorted((d for d in details if d.key in wanted), key=lambda d: wanted.index(d.key))
    else:
        key = details[:KEY_COUNT]
    more = [d for d in details if d not in key]
    extra = [detail("archive_id", event.archive_id), detail("address", event.client_address),
             detail("user_agent", event.user_agent)]
    return {"key": key, "more": more + [d for d in extra if d is not None]}
