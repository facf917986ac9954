"""/api/v1/platforms/: admin writes, staff reads, restriction to members."""


def test_admin_creates_and_changes_platforms(testapp, admin):
    made = testapp.post_json("/api/v1/platforms/", {"name": "vm6", "pretty_name": "VM 6"},
                             headers=admin.headers, status=201).json
    assert made == {"id": made["id"], "name": "vm6", "pretty_name": "VM 6",
                    "restricted": False, "members": [], "retention_resolved_days": None,
                    "retention_max_days": None}
    # the same path without its trailing slash works too
    assert testapp.get("/api/v1/platforms/vm6", headers=admin.headers).json["name"] == "vm6"
    patched = testapp.patch_json("/api/v1/platforms/vm6/", {"pretty_name": "VMmanager"},
                                 headers=admin.headers).json
    assert patched["pretty_name"] == "VMmanager"
    put = testapp.put_json("/api/v1/platforms/vm6/", {"name": "vm7", "pretty_name": "Seven"},
                           headers=admin.headers).json
    assert put["name"] == "vm7"
    testapp.get("/api/v1/platforms/vm6/", headers=admin.headers, status=404)
    testapp.delete("/api/v1/platforms/vm7/", headers=admin.headers, status=204)
    assert testapp.get("/api/v1/platforms/", headers=admin.headers).json == []


def test_bad_platform_input(testapp, admin, factory):
    factory.platform("vm6")
    bad = testapp.post_json("/api/v1/platforms/", {"name": "Bad Name!", "pretty_name": "x"},
                            headers=admin.headers, status=400).json
    assert bad["detail"].startswith("name:") and bad["errors"][0]["name"] == "name"
    dup = testapp.post_json("/api/v1/platforms/", {"name": "vm6", "pretty_name": "x"},
                            headers=admin.headers, status=409).json
    assert "already exists" in dup["detail"]
    broken = testapp.post("/api/v1/platforms/", "{not json", headers={
        **admin.headers, "Content-Type": "application/json"}, status=400).json
    assert "JSON" in broken["detail"]
    listed = testapp.post_json("/api/v1/platforms/", [1, 2], headers=admin.headers, status=400)
    assert "object" in listed.json["detail"]
    unknown = testapp.post_json("/api/v1/platforms/", {"name": "x1", "pretty_name": "x",
                                                       "members": ["nobody"]},
                                headers=admin.headers, status=400)
    assert "nobody" in unknown.json["detail"]


def test_platform_with_tickets_cannot_be_deleted(testapp, admin, factory):
    platform = factory.platform("vm6")
    factory.ticket(platform, 7)
    res = testapp.delete("/api/v1/platforms/vm6/", headers=admin.headers, status=409)
    assert "ticket" in res.json["detail"]


def test_staff_read_only(testapp, staff, factory):
    factory.platform("vm6")
    assert [p["name"] for p in testapp.get("/api/v1/platforms/", headers=staff.headers).json] \
        == ["vm6"]
    testapp.patch_json("/api/v1/platforms/vm6/", {"pretty_name": "x"}, headers=staff.headers,
                       status=403)
    testapp.delete("/api/v1/platforms/vm6/", headers=staff.headers, status=403)


def test_restricted_platform_is_hidden_from_non_members(testapp, factory, admin):
    member, outsider = factory.user("member"), factory.user("outsider")
    member_h, outsider_h = factory.token(member), factory.token(outsider)
    secret = factory.platform("secret", restricted=True, members=[member])
    open_ = factory.platform("open")
    factory.ticket(secret, 1)
    factory.ticket(open_, 2)

    def names(headers):
        return sorted(p["name"] for p in testapp.get("/api/v1/platforms/", headers=headers).json)

    def numbers(headers):
        return sorted(t["number"] for t in testapp.get("/api/v1/tickets/", headers=headers).json)

    assert names(member_h) == ["open", "secret"] and numbers(member_h) == [1, 2]
    assert names(outsider_h) == ["open"] and numbers(outsider_h) == [2]
    assert names(admin.headers) == ["open", "secret"]
    testapp.get("/api/v1/platforms/secret/", headers=outsider_h, status=404)
    testapp.get("/api/v1/tickets/1/", headers=outsider_h, status=404)
    testapp.get("/api/v1/tickets/1/", headers=member_h, status=200)
    # membership is managed through the API by an admin
    testapp.patch_json("/api/v1/platforms/secret/", {"members": ["outsider"]},
                       headers=admin.headers)
    assert names(outsider_h) == ["open", "secret"] and names(member_h) == ["open"]
    testapp.get("/api/v1/tickets/1/", headers=member_h, status=404)
