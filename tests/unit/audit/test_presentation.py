"""How an audit event's details read on a page (collector/audit/presentation.py)."""

from types import SimpleNamespace

from collector.audit.presentation import describe_event


def event(action, detail, archive_id=None, address="192.0.2.7", agent="curl/8.5"):
    return SimpleNamespace(action=action, detail=detail, archive_id=archive_id,
                           client_address=address, user_agent=agent)


def shown(details):
    return [(d.label, d.value, d.kind) for d in details]


def test_a_search_shows_query_regex_and_hits():
    described = describe_event(event("ticket.search", {"hits": 3, "regex": True, "q": "err"}))
    assert shown(described["key"]) == [("query", "err", "long"), ("regex", "yes", "text"),
                                       ("hits", "3", "text")]
    assert shown(described["more"]) == [("address", "192.0.2.7", "text"),
                                        ("user agent", "curl/8.5", "long")]


def test_empty_values_are_left_out_and_sizes_marked():
    described = describe_event(event("upload.started", {
        "upload": "abc", "size": 10, "name": "", "concat": "", "parts": [], "extra": None},
        address="", agent=""))
    assert shown(described["key"]) == [("size", 10, "size")]
    assert shown(described["more"]) == [("upload", "abc", "text")]


def test_a_whole_download_says_so_and_hashes_are_marked():
    described = describe_event(event("archive.download",
                                     {"name": "a.tar", "size": 5, "range": ""}, archive_id=7))
    assert shown(described["key"]) == [("name", "a.tar", "long"), ("range", "whole file", "text"),
                                       ("size", 5, "size")]
    assert ("archive id", "7", "text") in shown(described["more"])
    deleted = describe_event(event("archive.delete", {"sha256": "f" * 64, "name": "a"}))
    assert ("sha256", "f" * 64, "hash") in shown(deleted["key"])


def test_families_lists_dicts_and_unknown_actions():
    revoked = describe_event(event("token.revoke_all", {
        "user": "bob", "count": 2, "cause": "user.disable", "kinds": ["access", "refresh"],
        "keep_personal_tokens": False}))
    assert [d.label for d in revoked["key"]] == ["user", "count", "cause"]
    assert ("kinds", "access, refresh", "text") in shown(revoked["more"])
    assert ("keeps personal tokens", "no", "text") in shown(revoked["more"])
    imported = describe_event(event("import.original", {"merge": {"users": "keep", "n": None}}))
    assert shown(imported["more"])[0] == ("merge", "users: keep", "text")
    unknown = describe_event(event("something.new", {"a": 1, "b": 2, "c": 3, "d": 4}))
    assert [d.label for d in unknown["key"]] == ["a", "b", "c"]
    assert [d.label for d in unknown["more"]][:1] == ["d"]
