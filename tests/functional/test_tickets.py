"""/api/v1/tickets/: create, filters, pagination, edit, rotate, delete."""

import datetime as dt
import urllib.parse


def _make(testapp, headers, number, **fields):
    body = {"number": number, "platform": "vm6", **fields}
    return testapp.post_json("/api/v1/tickets/", body, headers=headers, status=201).json


def test_create_defaults(testapp, staff, factory):
    factory.platform("vm6")
    ticket = _make(testapp, staff.headers, 10, note="Падение VM 🚑")
    assert ticket["attempts"] == 5 and ticket["resolved"] is False
    assert ticket["note"] == "Падение VM 🚑" and ticket["platform"] == "vm6"
    expires = dt.datetime.fromisoformat(ticket["expires_at"].replace("Z", "+00:00"))
    created = dt.datetime.fromisoformat(ticket["time_create"].replace("Z", "+00:00"))
    assert dt.timedelta(days=6, hours=23) < expires - created <= dt.timedelta(days=7)
    assert set(ticket) == {"id", "number", "resolved", "token", "attempts", "platform",
                           "time_create", "time_update", "user", "note", "expires_at",
                           "legal_hold", "resolved_at"}


def test_create_errors(testapp, staff, factory):
    factory.platform("vm6")
    _make(testapp, staff.headers, 10)
    assert "already in use" in testapp.post_json(
        "/api/v1/tickets/", {"number": 10, "platform": "vm6"}, headers=staff.headers,
        status=409).json["detail"]
    assert testapp.post_json("/api/v1/tickets/", {"number": 11, "platform": "nope"},
                             headers=staff.headers, status=404).json["detail"]
    bad = testapp.post_json("/api/v1/tickets/", {"number": "x", "platform": "vm6"},
                            headers=staff.headers, status=400).json
    assert bad["errors"][0]["name"] == "number"
    assert testapp.post_json("/api/v1/tickets/", {"number": 12, "platform": "vm6",
                                                  "attempts": -1},
                             headers=staff.headers, status=400).json["detail"]


def test_filters_and_pagination(testapp, staff, factory, admin):
    vm6, bill = factory.platform("vm6"), factory.platform("bill")
    for number in range(1, 8):
        factory.ticket(vm6 if number % 2 else bill, number, user=staff if number < 4 else admin,
                       note=f"note {number} кириллица" if number == 5 else "")
    get = lambda query: testapp.get(f"/api/v1/tickets/?{query}", headers=staff.headers)  # noqa
    assert [t["number"] for t in get("").json] == [7, 6, 5, 4, 3, 2, 1]  # newest first
    assert sorted(t["number"] for t in get("number=2,5,99").json) == [2, 5]
    assert {t["platform"] for t in get("platform=bill").json} == {"bill"}
    assert sorted(t["number"] for t in get("user=staff").json) == [1, 2, 3]
    assert [t["number"] for t in get("search=" + urllib.parse.quote("кириллица")).json] == [5]
    assert [t["number"] for t in get("search=6").json] == [6]
    testapp.patch_json("/api/v1/tickets/3/", {"resolved": True}, headers=staff.headers)
    assert [t["number"] for t in get("resolved=true").json] == [3]
    assert len(get("resolved=false").json) == 6
    page = get("limit=3&offset=3")
    assert [t["number"] for t in page.json] == [4, 3, 2]
    assert page.headers["X-Total-Count"] == "7"
    assert 'rel="next"' in page.headers["Link"] and "offset=6" in page.headers["Link"]
    assert 'rel="prev"' in page.headers["Link"]
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    assert get(f"time_create__gte={future}").json == []
    assert len(get(f"time_create__lte={future}").json) == 7
    for bad in ("limit=0", "limit=abc", "offset=-1", "number=a", "resolved=maybe",
                "time_create__gte=yesterday"):
        assert testapp.get(f"/api/v1/tickets/?{bad}", headers=staff.headers,
                           status=400).json["detail"]


def test_edit_rotate_delete(testapp, staff, factory):
    factory.platform("vm6")
    factory.platform("bill")
    ticket = _make(testapp, staff.headers, 10)
    changed = testapp.patch_json("/api/v1/tickets/10/", {"attempts": 1, "note": "n",
                                                         "platform": "bill"},
                                 headers=staff.headers).json
    assert (changed["attempts"], changed["note"], changed["platform"]) == (1, "n", "bill")
    put = testapp.put_json("/api/v1/tickets/10/", {"number": 11, "platform": "vm6"},
                           headers=staff.headers).json
    assert put["number"] == 11 and put["attempts"] == 1
    extended = testapp.patch_json("/api/v1/tickets/11/", {"lifetime_days": 30},
                                  headers=staff.headers).json
    assert extended["expires_at"] > ticket["expires_at"]
    rotated = testapp.post("/api/v1/tickets/11/token/", headers=staff.headers).json
    assert rotated["token"] != ticket["token"]
    assert testapp.get(f"/api/v1/check/token/{ticket['token']}", status=404).json["detail"]
    testapp.delete("/api/v1/tickets/11/", headers=staff.headers, status=204)
    testapp.get("/api/v1/tickets/11/", headers=staff.headers, status=404)
    testapp.get("/api/v1/tickets/abc/", headers=staff.headers, status=404)
