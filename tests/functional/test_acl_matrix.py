"""Every v1 view × every kind of caller → the expected status; lists agree with items."""

import pytest

ROLES = ["anonymous", "uploader", "staff", "staff_mfa", "admin"]

# (method, path, body kind, expected status per role in ROLES order)
MATRIX = [
    ("GET", "/api/v1/platforms/", None, (401, 403, 200, 200, 200)),
    ("POST", "/api/v1/platforms/", "platform", (401, 403, 403, 403, 201)),
    ("GET", "/api/v1/platforms/vm6/", None, (401, 403, 200, 200, 200)),
    ("PATCH", "/api/v1/platforms/vm6/", "pretty", (401, 403, 403, 403, 200)),
    ("PUT", "/api/v1/platforms/vm6/", "platform_put", (401, 403, 403, 403, 200)),
    ("DELETE", "/api/v1/platforms/empty/", None, (401, 403, 403, 403, 204)),
    ("GET", "/api/v1/tickets/", None, (401, 403, 200, 200, 200)),
    ("POST", "/api/v1/tickets/", "ticket", (401, 403, 201, 201, 201)),
    ("GET", "/api/v1/tickets/77/", None, (401, 403, 200, 200, 200)),
    ("PATCH", "/api/v1/tickets/77/", "note", (401, 403, 200, 200, 200)),
    ("PUT", "/api/v1/tickets/77/", "ticket_put", (401, 403, 200, 200, 200)),
    ("POST", "/api/v1/tickets/77/token/", None, (401, 403, 200, 200, 200)),
    ("DELETE", "/api/v1/tickets/77/", None, (401, 403, 204, 204, 204)),
    ("GET", "/api/v1/archives/", None, (401, 403, 200, 200, 200)),
    ("POST", "/api/v1/archives/", "upload", (401, 201, 401, 401, 401)),
    ("GET", "/api/v1/archives/1/", None, (401, 403, 200, 200, 200)),
    ("PATCH", "/api/v1/archives/1/", "name", (401, 403, 200, 200, 200)),
    ("DELETE", "/api/v1/archives/1/", None, (401, 403, 204, 204, 204)),
    ("GET", "/api/v1/archives/1/download", None, (401, 403, 403, 200, 200)),
    ("HEAD", "/api/v1/archives/1/download", None, (401, 403, 403, 200, 200)),
    ("GET", "/api/v1/check/health/", None, (200, 200, 200, 200, 200)),
    ("GET", "/api/v1/check/storage/", None, (401, 403, 200, 200, 200)),
    ("GET", "/api/v1/check/token/{token}", None, (200, 200, 200, 200, 200)),
    ("GET", "/api/v1/auth/tokens/", None, (401, 403, 200, 200, 200)),
    ("POST", "/api/v1/auth/tokens/", "token_name", (401, 403, 201, 201, 201)),
    ("GET", "/api/v1/openapi.json", None, (200, 200, 200, 200, 200)),
]

BODIES = {
    "platform": {"name": "new", "pretty_name": "New"},
    "platform_put": {"name": "vm6", "pretty_name": "VM 6 again"},
    "pretty": {"pretty_name": "Renamed"},
    "ticket": {"number": 900, "platform": "vm6"},
    "ticket_put": {"number": 77, "platform": "vm6", "attempts": 3},
    "note": {"note": "called the customer"},
    "name": {"name": "renamed.tgz"},
    "token_name": {"name": "bot"},
}


@pytest.fixture
def world(factory, testapp):
    vm6 = factory.platform("vm6")
    factory.platform("empty")
    ticket = factory.ticket(vm6, 77, attempts=5)
    testapp.post("/api/v1/archives/", upload_files=[("file", "a.log", b"hello")],
                 headers={"Upload-Token": ticket.token}, status=201)
    staff = factory.user("staff")
    admin = factory.user("admin", admin=True)
    return {
        "anonymous": {},
        "uploader": {"Upload-Token": ticket.token},
        "staff": factory.token(staff, mfa=False),
        "staff_mfa": factory.token(staff, mfa=True),
        "admin": factory.token(admin, mfa=True),
        "token": ticket.token,
    }


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method,path,body,expected", MATRIX,
                         ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
def test_matrix(testapp, world, role, method, path, body, expected):
    want = expected[ROLES.index(role)]
    path = path.replace("{token}", world["token"])
    headers = dict(world[role])
    kwargs = {"headers": headers, "status": want, "expect_errors": True}
    if body == "upload":
        res = testapp.post(path, upload_files=[("file", "b.log", b"more")], **kwargs)
    elif body:
        res = getattr(testapp, f"{method.lower()}_json")(path, BODIES[body], **kwargs)
    else:
        res = getattr(testapp, method.lower())(path, **kwargs)
    if want >= 400 and method != "HEAD":
        assert res.json["detail"]


def test_lists_and_items_agree(testapp, factory):
    """For every caller, a ticket is listed exactly when its item view answers 200."""
    member, outsider = factory.user("member"), factory.user("outsider")
    admin = factory.user("boss", admin=True)
    closed = factory.platform("closed", restricted=True, members=[member])
    public = factory.platform("public")
    for number, platform in enumerate([closed, public, closed, public], start=1):
        ticket = factory.ticket(platform, number)
        testapp.post("/api/v1/archives/", upload_files=[("file", "a", b"x")],
                     headers={"Upload-Token": ticket.token}, status=201)
    for user in (member, outsider, admin):
        headers = factory.token(user)
        listed = {t["number"] for t in testapp.get("/api/v1/tickets/", headers=headers).json}
        viewable = {n for n in range(1, 5) if testapp.get(
            f"/api/v1/tickets/{n}/", headers=headers, expect_errors=True).status_int == 200}
        assert listed == viewable
        archives = {a["id"] for a in testapp.get("/api/v1/archives/", headers=headers).json}
        readable = {i for i in range(1, 5) if testapp.get(
            f"/api/v1/archives/{i}/", headers=headers, expect_errors=True).status_int == 200}
        assert archives == readable
        platforms = {p["name"] for p in testapp.get("/api/v1/platforms/", headers=headers).json}
        assert ("closed" in platforms) == (user is not outsider)
