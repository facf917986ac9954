"""GET /api/v1/openapi.json: a valid OpenAPI 3.1 document that covers every cornice service
and method of the app (and nothing else), and that the real answers of the API match."""

import re
import threading

import jsonschema
import pytest
from cornice.service import get_services
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from pyramid.interfaces import IRoutesMapper
from pyramid.security import NO_PERMISSION_REQUIRED

from collector.api.v1 import PREFIX, ROUTES
from collector.probes import DRAINING
from collector.security import PROBE_PATHS

OPERATIONS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# Values for the template variables of ROUTES' documented paths.
SAMPLES = {"name": "vm6", "number": "42", "id": "7", "filename": "logs.tar.gz",
           "token": "some-token", "path": "var/log/syslog.2.gz", "token_id": "9"}


@pytest.fixture
def document(testapp):
    return testapp.get("/api/v1/openapi.json", status=200).json


def services_of(app):
    """The cornice services this app registered (cornice's global list may hold more)."""
    registered = list(app.registry.cornice_services.values())
    assert {s.name for s in registered} <= {s.name for s in get_services()}
    return registered


def documented_operations(document):
    return {(path, method) for path, item in document["paths"].items()
            for method in item if method in OPERATIONS}


def served_operations(app):
    served = set()
    for service in services_of(app):
        path = PREFIX + ROUTES[service.pyramid_route][0]
        for method in service.defined_methods:
            # cornice adds OPTIONS only for CORS, which API v1 does not enable.
            assert method != "OPTIONS", f"{service.name}: document CORS preflight"
            served.add((path, method.lower()))
    # Plain views on the API routes: the tus OPTIONS (a cornice OPTIONS would be CORS).
    for item in app.registry.introspector.get_category("views"):
        view = item["introspectable"]
        methods = view["request_methods"] or ()
        if isinstance(methods, str):
            methods = (methods,)
        if view["route_name"] in ROUTES and "OPTIONS" in methods:
            served.add((PREFIX + ROUTES[view["route_name"]][0], "options"))
        # The probes beside the API (collector/probes.py), plain views too.
        mapper = app.registry.getUtility(IRoutesMapper)
        route = mapper.get_route(view["route_name"]) if view["route_name"] else None
        if route is not None and route.pattern in PROBE_PATHS:
            served.update((route.pattern, method.lower()) for method in methods)
    return served


# --- the document itself ---------------------------------------------------------------------

def test_document_is_valid_openapi_3_1(testapp, document):
    # No credentials: the document is public.
    res = testapp.get("/api/v1/openapi.json", status=200)
    assert res.content_type == "application/json"
    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)
    assert document["info"]["title"] == "Logs Collector API"
    assert document["info"]["version"] == "1"
    assert document["servers"] == [{"url": "http://localhost"}]


def test_server_url_follows_the_request(testapp):
    res = testapp.get("/api/v1/openapi.json", extra_environ={
        "HTTP_HOST": "localhost:6543", "SCRIPT_NAME": "/collector"})
    assert res.json["servers"] == [{"url": "http://localhost:6543/collector"}]


def test_head_of_the_document(testapp):
    res = testapp.head("/api/v1/openapi.json", status=200)
    assert res.body == b""


def test_security_schemes(document):
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["uploadToken"] == {**schemes["uploadToken"], "type": "apiKey",
                                      "in": "header", "name": "Upload-Token"}
    assert schemes["session"] == {**schemes["session"], "type": "apiKey", "in": "cookie",
                                  "name": "session"}


# --- coverage: the document and the cornice services agree ------------------------------------

def test_every_route_has_a_service(app):
    assert {s.pyramid_route for s in services_of(app)} == set(ROUTES)


def test_every_service_and_method_is_documented(app, document):
    missing = served_operations(app) - documented_operations(document)
    assert not missing, f"served but not documented: {sorted(missing)}"


def test_nothing_documented_that_no_service_serves(app, document):
    extra = documented_operations(document) - served_operations(app)
    assert not extra, f"documented but not served: {sorted(extra)}"


def test_documented_paths_match_their_routes(app, document):
    mapper = app.registry.getUtility(IRoutesMapper)
    for name, (path, _, _) in ROUTES.items():
        assert PREFIX + path in document["paths"]
        concrete = re.sub(r"\{(\w+)\}", lambda m: SAMPLES[m[1]], PREFIX + path)
        route = mapper.get_route(name)
        assert route.match(concrete) is not None, (name, concrete)
        assert route.match(concrete.rstrip("/")) is not None, (name, concrete)


def test_security_follows_the_view_permissions(app, document):
    """A view with a permission is for staff (401/403 documented); one without is public."""
    for service in services_of(app):
        item = document["paths"][PREFIX + ROUTES[service.pyramid_route][0]]
        for method, _, args in service.definitions:
            op = item[method.lower()]
            if args.get("permission") in (None, NO_PERMISSION_REQUIRED):
                assert op["security"] in ([], [{"uploadToken": []}]), (service.name, method)
            else:
                assert "security" not in op, (service.name, method)  # the staff default
                assert {"401", "403"} <= set(op["responses"]), (service.name, method)
    assert document["security"] == [{"bearer": []}, {"session": []}]


def test_operation_ids_are_unique(document):
    ids = [item[m]["operationId"] for item in document["paths"].values()
           for m in item if m in OPERATIONS]
    assert len(ids) == len(set(ids))


# --- the real answers match the documented schemas --------------------------------------------

def conforms(document, method, template, response, prefix=PREFIX):
    """Assert ``response`` is a documented answer of the operation and matches its schema."""
    op = document["paths"][prefix + template][method]
    status = str(response.status_int)
    assert status in op["responses"], f"{method} {template}: {status} is not documented"
    documented = op["responses"][status]
    if "$ref" in documented:
        documented = document["components"]["responses"][documented["$ref"].rsplit("/", 1)[1]]
    for name in documented.get("headers", {}):
        assert name in response.headers, f"{method} {template}: no {name} header"
    content = documented.get("content")
    if content is None:
        assert response.body == b"", f"{method} {template}: {status} has an undocumented body"
        return None
    assert response.content_type in content, f"{method} {template}: {response.content_type}"
    if response.content_type != "application/json":
        return response.body
    schema = content[response.content_type]["schema"]
    # The schema's $refs point into the document's components; give them a root to resolve.
    root = {"components": document["components"], "allOf": [schema]}
    validator = jsonschema.Draft202012Validator(
        root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    validator.validate(response.json)
    return response.json


def exact_fields(document, name, value):
    """Every field the API sends is documented, and every documented field is sent."""
    assert set(value) == set(document["components"]["schemas"][name]["properties"]), name


def test_probe_answers(testapp, document):
    draining = threading.Event()
    for path in PROBE_PATHS:
        conforms(document, "get", path, testapp.get(path), prefix="")
        conforms(document, "head", path, testapp.head(path), prefix="")
    draining.set()
    conforms(document, "get", "/readyz", testapp.get(
        "/readyz", extra_environ={DRAINING: draining}, status=503), prefix="")


def test_platform_and_ticket_answers(testapp, document, admin, staff):
    created = testapp.post_json("/api/v1/platforms/", {"name": "vm6", "pretty_name": "VM 6"},
                                headers=admin.headers, status=201)
    exact_fields(document, "Platform", conforms(document, "post", "/platforms/", created))
    conflict = testapp.post_json("/api/v1/platforms/", {"name": "vm6", "pretty_name": "VM"},
                                 headers=admin.headers, status=409)
    conforms(document, "post", "/platforms/", conflict)
    platforms = testapp.get("/api/v1/platforms/", headers=staff.headers)
    conforms(document, "get", "/platforms/", platforms)
    conforms(document, "get", "/platforms/{name}/",
             testapp.get("/api/v1/platforms/vm6/", headers=staff.headers))

    ticket = testapp.post_json("/api/v1/tickets/", {"number": 4242, "platform": "vm6",
                                                    "note": "customer X"},
                               headers=staff.headers, status=201)
    exact_fields(document, "Ticket", conforms(document, "post", "/tickets/", ticket))
    listed = testapp.get("/api/v1/tickets/?number=4242,1&resolved=false&limit=1",
                         headers=staff.headers)
    [item] = conforms(document, "get", "/tickets/", listed)
    exact_fields(document, "Ticket", item)
    assert listed.headers["X-Total-Count"] == "1"
    conforms(document, "head", "/tickets/", testapp.head("/api/v1/tickets/",
                                                         headers=staff.headers))
    patched = testapp.patch_json("/api/v1/tickets/4242/", {"resolved": True},
                                 headers=staff.headers)
    assert conforms(document, "patch", "/tickets/{number}/", patched)["resolved"] is True
    rotated = testapp.post("/api/v1/tickets/4242/token/", headers=staff.headers)
    conforms(document, "post", "/tickets/{number}/token/", rotated)
    state = testapp.get(f"/api/v1/check/token/{rotated.json['token']}")
    exact_fields(document, "TokenState", conforms(document, "get", "/check/token/{token}",
                                                  state))
    assert state.json["valid"] is False  # resolved
    deleted = testapp.delete("/api/v1/tickets/4242/", headers=staff.headers, status=204)
    conforms(document, "delete", "/tickets/{number}/", deleted)


def test_error_answers(testapp, document, factory, staff):
    conforms(document, "get", "/tickets/", testapp.get("/api/v1/tickets/", status=401))
    invalid = testapp.post_json("/api/v1/tickets/", {"number": "x", "platform": "vm6"},
                                headers=staff.headers, status=400)
    assert conforms(document, "post", "/tickets/", invalid)["errors"]
    conforms(document, "get", "/tickets/{number}/",
             testapp.get("/api/v1/tickets/999/", headers=staff.headers, status=404))
    conforms(document, "get", "/tickets/",
             testapp.get("/api/v1/tickets/?limit=0", headers=staff.headers, status=400))
    resolved = factory.ticket(factory.platform("vm6"), 5)
    testapp.patch_json("/api/v1/tickets/5/", {"resolved": True}, headers=staff.headers)
    for status, headers in ((401, {}), (403, {"Upload-Token": "nope"}),
                            (423, {"Upload-Token": resolved.token})):
        refused = testapp.post("/api/v1/archives/", upload_files=[("file", "a.log", b"x")],
                               headers=headers, status=status)
        conforms(document, "post", "/archives/", refused)


def test_archive_answers(testapp, document, factory, staff):
    ticket = factory.ticket(factory.platform("vm6"), 77)
    body = b"log line\n" * 1000
    uploaded = testapp.post("/api/v1/archives/", upload_files=[("file", "a.log", body)],
                            headers={"Upload-Token": ticket.token}, status=201)
    archive = conforms(document, "post", "/archives/", uploaded)
    exact_fields(document, "Archive", archive)
    named = testapp.put("/api/v1/archives/b.log", body, headers={
        "Upload-Token": ticket.token, "Content-Type": "application/octet-stream"}, status=201)
    assert conforms(document, "put", "/archives/{filename}", named)["name"] == "b.log"

    listed = testapp.get("/api/v1/archives/?ticket=77&time_create__gte=2000-01-01",
                         headers=staff.headers)
    assert len(conforms(document, "get", "/archives/", listed)) == 2
    one = f"/api/v1/archives/{archive['id']}/"
    conforms(document, "get", "/archives/{id}/", testapp.get(one, headers=staff.headers))
    patched = testapp.patch_json(one, {"name": "renamed.log"}, headers=staff.headers)
    conforms(document, "patch", "/archives/{id}/", patched)

    download = f"/api/v1/archives/{archive['id']}/download"
    whole = testapp.get(download, headers=staff.headers)
    assert conforms(document, "get", "/archives/{id}/download", whole) == body
    ranged = testapp.get(download, headers={**staff.headers, "Range": "bytes=0-9"}, status=206)
    assert conforms(document, "get", "/archives/{id}/download", ranged) == body[:10]
    for headers, status in (({"Range": "bytes=99999-"}, 416),
                            ({"If-None-Match": whole.headers["ETag"]}, 304), ({}, 401)):
        if status != 401:
            headers.update(staff.headers)
        answered = testapp.get(download, headers=headers, status=status)
        conforms(document, "get", "/archives/{id}/download", answered)
    conforms(document, "head", "/archives/{id}/download",
             testapp.head(download, headers=staff.headers))
    conforms(document, "delete", "/archives/{id}/",
             testapp.delete(one, headers=staff.headers, status=204))


def test_check_answers(testapp, document, staff):
    health = conforms(document, "get", "/check/health/", testapp.get("/api/v1/check/health/"))
    assert health["status"] == "ok"
    storage = testapp.get("/api/v1/check/storage/", headers=staff.headers)
    exact_fields(document, "Storage", conforms(document, "get", "/check/storage/", storage))
    conforms(document, "get", "/check/storage/",
             testapp.get("/api/v1/check/storage/", status=401))
    conforms(document, "get", "/check/token/{token}",
             testapp.get("/api/v1/check/token/unknown", status=404))


def test_auth_answers(testapp, document, factory):
    user = factory.user("alice")
    pair = testapp.post_json("/api/v1/auth/token/", {
        "username": "alice", "password": user.password, "otp": factory.otp(user)})
    exact_fields(document, "TokenPair", conforms(document, "post", "/auth/token/", pair))
    wrong = testapp.post_json("/api/v1/auth/token/", {
        "username": "alice", "password": "wrong password", "otp": "000000"}, status=401)
    conforms(document, "post", "/auth/token/", wrong)
    verified = testapp.post_json("/api/v1/auth/token/verify/", {"token": pair.json["access"]})
    conforms(document, "post", "/auth/token/verify/", verified)
    bearer = {"Authorization": f"Bearer {pair.json['access']}"}

    created = testapp.post_json("/api/v1/auth/tokens/", {"name": "ci"}, headers=bearer,
                                status=201)
    conforms(document, "post", "/auth/tokens/", created)
    [listed] = conforms(document, "get", "/auth/tokens/",
                        testapp.get("/api/v1/auth/tokens/", headers=bearer))
    exact_fields(document, "PersonalToken", listed)
    conforms(document, "delete", "/auth/tokens/{id}/",
             testapp.delete(f"/api/v1/auth/tokens/{listed['id']}/", headers=bearer,
                            status=204))
    refreshed = testapp.post_json("/api/v1/auth/token/refresh/",
                                  {"refresh": pair.json["refresh"]})
    conforms(document, "post", "/auth/token/refresh/", refreshed)
    revoked = testapp.post_json("/api/v1/auth/token/revoke/",
                                {"token": refreshed.json["refresh"]}, status=204)
    conforms(document, "post", "/auth/token/revoke/", revoked)


def test_user_token_answers(testapp, document, factory, admin):
    user = factory.user("bob")
    pair = testapp.post_json("/api/v1/auth/token/", {
        "username": "bob", "password": user.password, "otp": factory.otp(user)}).json
    factory.token(user)
    listed = conforms(document, "get", "/users/{id}/tokens/",
                      testapp.get(f"/api/v1/users/{user.id}/tokens/", headers=admin.headers))
    assert sorted(row["kind"] for row in listed) == ["access", "personal", "refresh"]
    exact_fields(document, "UserToken", listed[0])
    conforms(document, "get", "/users/{id}/tokens/",
             testapp.get(f"/api/v1/users/{user.id}/tokens/", headers={
                 "Authorization": f"Bearer {pair['access']}"}, status=403))
    conforms(document, "delete", "/users/{id}/tokens/{token_id}/",
             testapp.delete(f"/api/v1/users/{user.id}/tokens/{listed[0]['id']}/",
                            headers=admin.headers, status=204))
    conforms(document, "delete", "/users/{id}/tokens/{token_id}/",
             testapp.delete(f"/api/v1/users/{user.id}/tokens/{listed[0]['id']}/",
                            headers=admin.headers, status=404))
    revoked = conforms(document, "post", "/users/{id}/tokens/revoke/",
                       testapp.post_json(f"/api/v1/users/{user.id}/tokens/revoke/",
                                         {"keep_personal_tokens": True},
                                         headers=admin.headers))
    exact_fields(document, "RevokedTokens", revoked)
    conforms(document, "post", "/users/{id}/tokens/revoke/",
             testapp.post_json(f"/api/v1/users/{user.id}/tokens/revoke/",
                               {"keep_personal_tokens": "maybe"}, headers=admin.headers,
                               status=400))
