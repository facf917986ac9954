"""The documented request bodies are the API's own: every JSON body a cornice service
validates with a colander ``schema=`` is documented as exactly that schema's JSON Schema,
and for cases generated from each schema — valid bodies, fields left out, other spellings,
wrong types, values out of range or too long, null, empty strings, unknown fields — the
real API (through webtest) and the document (with a JSON Schema validator) accept and
refuse the same bodies. The API refuses a body with 400; any other answer (201, 401 for
wrong credentials, 404 for a platform that does not exist, 409 …) means the body passed."""

import json

import colander
import jsonschema
import pytest

from collector import validation
from collector.api.v1 import PREFIX, ROUTES
from collector.api.v1.openapi_schema import request_body

# (route, method) → the values the path names, a body the domain accepts as well, and the
# fields that name what the path reaches (only other spellings of their value are sent:
# a new ticket number would move the ticket away from its URL).
OPERATIONS = {
    ("api.platforms", "POST"): ({}, {"name": "vm7", "pretty_name": "VM 7",
                                     "members": ["staff"]}, ()),
    ("api.platform", "PUT"): ({"name": "vm6"}, {"name": "vm6", "pretty_name": "VM 6"},
                              ("name",)),
    ("api.platform", "PATCH"): ({"name": "vm6"}, {"name": "vm6", "pretty_name": "VM 6"},
                                ("name",)),
    ("api.tickets", "POST"): ({}, {"number": 4243, "platform": "vm6"}, ()),
    ("api.ticket", "PUT"): ({"number": 4242}, {"number": 4242, "platform": "vm6"},
                            ("number",)),
    ("api.ticket", "PATCH"): ({"number": 4242}, {"number": 4242, "platform": "vm6"},
                              ("number",)),
    ("api.archive", "PATCH"): ({"id": "archive"}, {"name": "a.log", "ticket": 4242},
                               ("ticket",)),
    ("api.auth.token", "POST"): ({}, {"username": "bob", "password": "not his",
                                      "otp": "123456"}, ()),
    ("api.auth.refresh", "POST"): ({}, {"refresh": "not-a-refresh-token"}, ()),
    ("api.auth.verify", "POST"): ({}, {"token": "not-a-token"}, ()),
    ("api.auth.revoke", "POST"): ({}, {"token": "not-a-token"}, ()),
    ("api.auth.tokens", "POST"): ({}, {"name": "ci"}, ()),
    ("api.webhooks", "POST"): ({}, {"platform": "vm6", "url": "https://help.example/hook",
                                    "secret": "s" * 20}, ()),
    ("api.webhook", "PATCH"): ({"id": "webhook"}, {"platform": "vm6",
                                                   "url": "https://help.example/hook",
                                                   "secret": "s" * 20}, ()),
    ("api.user.tokens.revoke", "POST"): ({"id": "bob"}, {"keep_personal_tokens": True}, ()),
}
GOOD = {  # a value of each type the domain accepts, where the operation gives none
    validation.IntegerType: 7, validation.BooleanType: False,
    validation.DateTimeType: "2030-01-02T03:04:05Z", validation.ListType: ["staff"],
    validation.StringType: "some text",
}


def schema_services(app):
    """(route, method, schema) of every cornice method that validates a body."""
    for service in app.registry.cornice_services.values():
        for method, _, args in service.definitions:
            if args.get("schema") is not None:
                yield service.pyramid_route, method, args["schema"]


def documented_body(document, route, method):
    operation = document["paths"][PREFIX + ROUTES[route][0]][method.lower()]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


@pytest.fixture
def document(testapp):
    return testapp.get("/api/v1/openapi.json").json


def test_every_validated_body_is_documented_as_its_schema(app, document):
    found = set()
    for route, method, schema in schema_services(app):
        found.add((route, method))
        assert documented_body(document, route, method) == request_body(schema), \
            (route, method)
    # The cases below cover every one of them.
    assert found == set(OPERATIONS)


def _bounds(node):
    low, high = validation.INT64_MIN, validation.INT64_MAX
    for validator in [node.validator] if node.validator else []:
        if isinstance(validator, colander.Range):
            low, high = max(low, validator.min), min(high, validator.max)
    return low, high


def _max_length(node):
    validator = node.validator
    return validator.max if isinstance(validator, colander.Length) else None


def variants(node, good):
    """Values to send in place of ``good`` for the field ``node``."""
    typ = node.typ
    if isinstance(typ, validation.IntegerType):
        low, high = _bounds(node)
        values = [str(good), f" {good}\t", float(good), f"+{good}", f"00{good}", low, high,
                  low - 1, high + 1, str(low), str(high), str(low - 1), str(high + 1),
                  4.5, "4.5", True, "seven", "١٢", "1 2"]
    elif isinstance(typ, validation.BooleanType):
        values = [True, False, 1, 0, 1.0, "true", "FALSE", "1", "0", 2, -1, 0.5, "yes", "on"]
    elif isinstance(typ, validation.DateTimeType):
        values = ["2030-01-02", "2030-01-02 03:04", "2030-01-02T03:04:05.5+02:00",
                  "20300102", "tomorrow", "2030-01-02T03:04:05Zulu", 42, True]
    elif isinstance(typ, validation.ListType):
        values = [[], ["staff", "staff"], [1], [None], "staff", {"staff": 1}, 0]
    elif isinstance(typ, validation.StringType):
        values = [42, 4.5, True, False, 0, " " + good]
        if isinstance(node.validator, colander.Regex):
            values.append("Not A Name!")
        longest = _max_length(node)
        if longest:
            values += [(good + "x" * longest)[:longest], good + "x" * longest]
    else:
        raise AssertionError(f"{node.name}: no cases for {type(typ).__name__}")
    return values + [None, "", [], {}]


def _same_value(node, value, good):
    try:
        return node.deserialize(value) == good
    except colander.Invalid:
        return True  # refused: nothing changes


def cases(schema, good, fixed):
    """(what, body) pairs generated from ``schema`` around the valid body ``good``."""
    full = {child.name: good.get(child.name, GOOD[type(child.typ)])
            for child in schema.children}
    required = [child.name for child in schema.children if child.missing is colander.required]
    yield "full", full
    yield "only the required fields", {name: full[name] for name in required}
    yield "an unknown field", {**full, "unknown": {"x": [1]}}
    yield "nothing", {}
    for name in required:
        yield f"without {name}", {k: v for k, v in full.items() if k != name}
    for child in schema.children:
        for value in variants(child, full[child.name]):
            if child.name in fixed and not _same_value(child, value, full[child.name]):
                continue
            yield f"{child.name}={value!r}", {**full, child.name: value}


@pytest.fixture
def world(testapp, factory, admin):
    """The rows the paths name: a platform, a ticket with an archive, a webhook, a user."""
    factory.user("staff")
    bob = factory.user("bob")
    ticket = factory.ticket(factory.platform("vm6"), 4242)
    archive = testapp.post(f"{PREFIX}/archives/", upload_files=[("file", "a.log", b"log")],
                           headers={"Upload-Token": ticket.token}, status=201).json
    hook = testapp.post_json(f"{PREFIX}/webhooks/", {"platform": "vm6",
                                                     "url": "https://help.example/hook"},
                             headers=admin.headers, status=201).json
    return {"archive": archive["id"], "webhook": hook["id"], "bob": bob.id}


@pytest.mark.parametrize("route,method", sorted(OPERATIONS))
def test_the_document_and_the_api_accept_the_same_bodies(testapp, app, document, admin,
                                                          world, route, method):
    values, good, fixed = OPERATIONS[route, method]
    path = PREFIX + ROUTES[route][0].format(**{
        key: world.get(value, value) for key, value in values.items()})
    [schema] = [schema for r, m, schema in schema_services(app) if (r, m) == (route, method)]
    root = {"components": document["components"], **documented_body(document, route, method)}
    validator = jsonschema.Draft202012Validator(root)
    disagreements, seen = [], 0
    for what, body in [*cases(schema, good, fixed), ("an array", []), ("a string", "x")]:
        answer = testapp.request(path, method=method, body=json.dumps(body).encode(),
                                 headers={**admin.headers, "Content-Type": "application/json"},
                                 expect_errors=True)
        assert answer.status_int < 500, (what, answer.text)
        api = answer.status_int != 400
        if api != validator.is_valid(body):
            disagreements.append(f"{what}: API {answer.status_int} "
                                 f"{answer.json.get('detail') if answer.body else ''}, "
                                 f"document {'accepts' if not api else 'refuses'}")
        seen += 1
    assert not disagreements, "\n".join(disagreements)
    assert seen > 10
