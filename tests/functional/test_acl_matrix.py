"""Every endpoint the app serves × every kind of caller → the expected status.

The endpoints are read from the app's own registry (``app_endpoints`` in conftest.py: the
pages registered by context and name on the traversal tree, every API route and method,
the static views), and ``test_the_table_covers_every_endpoint`` fails when one is missing
from ``EXPECTED`` or an entry no longer exists: a new page or route cannot skip this table.

Every target belongs to ticket B on the restricted platform ``vault`` (``member`` is its
only member); a request that changes or deletes something gets an object of its own, so
the cells do not depend on each other. Every caller has a browser (cookies) with a CSRF
token that it sends on every write: here the ACL decides, test_csrf_headers.py checks the
token itself.
"""

import datetime as dt
import io
import json
import re
import tarfile

import pytest
import webtest

# The callers, in the order of EXPECTED's columns.
PRINCIPALS = [
    "anonymous",   # nothing
    "other",       # the valid upload token of ticket A, used on ticket B's things
    "expired",     # the upload token of an expired ticket
    "used_up",     # the upload token of a ticket with no attempt left
    "rotated",     # the old upload token of a ticket whose token was rotated
    "resolved",    # the upload token of a resolved ticket
    "staff",       # member's bearer token without two-factor
    "staff_mfa",   # member's bearer token with two-factor
    "outsider",    # staff with two-factor, not a member of the restricted platform
    "session",     # member signed in through the pages (cookie session, two-factor)
    "admin",       # admin's bearer token with two-factor, not a member either
]

# (method, path pattern) → the status for each principal, in PRINCIPALS order. Each row was
# checked by hand against the ACL in collector/resources.py and docs/security.md.
EXPECTED = {
    #                                                 anon oth exp use rot res stf mfa out ses adm
    # --- pages (anonymous GET: to the sign-in page; a write: a 403 page) ---
    ("GET", "/"):                                    "303 303 303 303 303 303 303 303 303 303 303",
    ("POST", "/"):                                   "303 303 303 303 303 303 303 303 303 303 303",
    ("GET", "/account/"):                            "303 403 303 303 303 303 200 200 200 200 200",
    ("POST", "/account/password"):                   "403 403 403 403 403 403 400 400 400 400 400",
    ("POST", "/account/recovery-codes"):             "403 403 403 403 403 403 200 200 200 200 200",
    ("POST", "/account/revoke-token"):               "403 403 403 403 403 403 303 303 404 303 404",
    ("POST", "/account/tokens"):                     "403 403 403 403 403 403 200 200 200 200 200",
    ("GET", "/admin/"):                              "303 403 303 303 303 303 403 403 403 403 303",
    ("GET", "/admin/audit"):                         "303 403 303 303 303 303 403 403 403 403 200",
    ("GET", "/admin/users/"):                        "303 403 303 303 303 303 403 403 403 403 200",
    ("POST", "/admin/users/"):                       "403 403 403 403 403 403 403 403 403 403 303",
    ("GET", "/admin/users/{id}/"):                   "303 403 303 303 303 303 403 403 403 403 200",
    ("POST", "/admin/users/{id}/active"):            "403 403 403 403 403 403 403 403 403 403 303",
    ("POST", "/admin/users/{id}/admin"):             "403 403 403 403 403 403 403 403 403 403 303",
    ("POST", "/admin/users/{id}/password"):          "403 403 403 403 403 403 403 403 403 403 303",
    ("POST", "/admin/users/{id}/reset-2fa"):         "403 403 403 403 403 403 403 403 403 403 303",
    ("POST", "/admin/users/{id}/revoke-token"):      "403 403 403 403 403 403 403 403 403 403 303",
    ("POST", "/admin/users/{id}/revoke-tokens"):     "403 403 403 403 403 403 403 403 403 403 303",
    ("GET", "/admin/webhooks/"):                     "303 403 303 303 303 303 403 403 403 403 200",
    ("POST", "/admin/webhooks/"):                    "403 403 403 403 403 403 403 403 403 403 303",
    ("POST", "/admin/webhooks/redeliver"):           "403 403 403 403 403 403 403 403 403 403 303",
    ("POST", "/admin/webhooks/{id}/delete"):         "403 403 403 403 403 403 403 403 403 403 303",
    ("POST", "/admin/webhooks/{id}/toggle"):         "403 403 403 403 403 403 403 403 403 403 303",
    ("POST", "/admin/webhooks/{id}/rotate"):         "403 403 403 403 403 403 403 403 403 403 303",
    ("GET", "/enrol"):                               "303 303 303 303 303 303 303 303 303 303 303",
    ("POST", "/enrol"):                              "303 303 303 303 303 303 303 303 303 303 303",
    ("GET", "/login"):                               "200 200 200 200 200 200 200 200 200 303 200",
    ("POST", "/login"):                              "401 401 401 401 401 401 401 401 401 401 401",
    ("POST", "/logout"):                             "303 303 303 303 303 303 303 303 303 303 303",
    ("GET", "/platforms/"):                          "303 403 303 303 303 303 200 200 200 200 200",
    ("POST", "/platforms/"):                         "403 403 403 403 403 403 403 403 403 403 303",
    ("GET", "/platforms/{name}/"):                   "303 404 303 303 303 303 200 200 404 200 200",
    ("POST", "/platforms/{name}/add-member"):        "403 404 403 403 403 403 403 403 404 403 303",
    ("GET", "/platforms/{name}/delete"):             "303 404 303 303 303 303 403 403 404 403 200",
    ("POST", "/platforms/{name}/delete"):            "403 404 403 403 403 403 403 403 404 403 303",
    ("GET", "/platforms/{name}/edit"):               "303 404 303 303 303 303 403 403 404 403 200",
    ("POST", "/platforms/{name}/edit"):              "403 404 403 403 403 403 403 403 404 403 303",
    ("POST", "/platforms/{name}/remove-member"):     "403 404 403 403 403 403 403 403 404 403 303",
    ("GET", "/platforms/{name}/tickets/{number}/"):  "303 404 303 303 303 303 200 200 404 200 200",
    ("GET", "/platforms/{name}/tickets/{number}/archives/{id}/"):
                                                     "303 404 303 303 303 303 303 303 404 303 303",
    ("GET", "/platforms/{name}/tickets/{number}/archives/{id}/delete"):
                                                     "303 404 303 303 303 303 200 200 404 200 200",
    ("POST", "/platforms/{name}/tickets/{number}/archives/{id}/delete"):
                                                     "403 404 403 403 403 403 303 303 404 303 303",
    ("GET", "/platforms/{name}/tickets/{number}/archives/{id}/download"):
                                                     "303 404 303 303 303 303 403 200 404 200 200",
    ("GET", "/platforms/{name}/tickets/{number}/archives/{id}/member"):
                                                     "303 404 303 303 303 303 403 200 404 200 200",
    ("GET", "/platforms/{name}/tickets/{number}/archives/{id}/members"):
                                                     "303 404 303 303 303 303 403 200 404 200 200",
    ("GET", "/platforms/{name}/tickets/{number}/archives/{id}/search"):
                                                     "303 404 303 303 303 303 403 200 404 200 200",
    ("GET", "/platforms/{name}/tickets/{number}/archives/{id}/view"):
                                                     "303 404 303 303 303 303 403 200 404 200 200",
    ("GET", "/platforms/{name}/tickets/{number}/delete"):
                                                     "303 404 303 303 303 303 200 200 404 200 200",
    ("POST", "/platforms/{name}/tickets/{number}/delete"):
                                                     "403 404 403 403 403 403 303 303 404 303 303",
    ("GET", "/platforms/{name}/tickets/{number}/edit"):
                                                     "303 404 303 303 303 303 200 200 404 200 200",
    ("POST", "/platforms/{name}/tickets/{number}/edit"):
                                                     "403 404 403 403 403 403 303 303 404 303 303",
    ("POST", "/platforms/{name}/tickets/{number}/hold"):
                                                     "403 404 403 403 403 403 403 403 404 403 303",
    ("POST", "/platforms/{name}/tickets/{number}/resolve"):
                                                     "403 404 403 403 403 403 303 303 404 303 303",
    ("POST", "/platforms/{name}/tickets/{number}/rotate"):
                                                     "403 404 403 403 403 403 303 303 404 303 303",
    ("GET", "/platforms/{name}/tickets/{number}/search"):
                                                     "303 404 303 303 303 303 403 200 404 200 200",
    ("GET", "/setup"):                               "404 404 404 404 404 404 404 404 404 404 404",
    ("POST", "/setup"):                              "404 404 404 404 404 404 404 404 404 404 404",
    ("GET", "/tickets/"):                            "303 403 303 303 303 303 200 200 200 200 200",
    ("GET", "/tickets/new"):                         "303 403 303 303 303 303 200 200 200 200 200",
    ("POST", "/tickets/new"):                        "403 403 403 403 403 403 303 303 400 303 303",
    ("GET", "/upload"):                              "200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/uploader.sh"):                         "200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/favicon.ico"):                         "200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/verify"):                              "303 303 303 303 303 303 303 303 303 303 303",
    ("POST", "/verify"):                             "303 303 303 303 303 303 303 303 303 303 303",
    # --- probes: anyone, any Host (collector/probes.py) ---
    ("GET", "/livez"):                               "200 200 200 200 200 200 200 200 200 200 200",
    ("HEAD", "/livez"):                              "200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/readyz"):                              "200 200 200 200 200 200 200 200 200 200 200",
    ("HEAD", "/readyz"):                             "200 200 200 200 200 200 200 200 200 200 200",
    # --- static files ---
    ("GET", "/static/*subpath"):                     "200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/static/bootstrap/*subpath"):           "200 200 200 200 200 200 200 200 200 200 200",
    # Swagger UI for the API explorer (its version in the path: collector/apidocs.py)
    ("GET", "/static/swagger-ui-5.31.0/*subpath"):
        "200 200 200 200 200 200 200 200 200 200 200",
    ("HEAD", "/static/swagger-ui-5.31.0/*subpath"):
        "200 200 200 200 200 200 200 200 200 200 200",
    # --- API v1 ---
    ("GET", "/api/v1/"):                             "200 200 200 200 200 200 200 200 200 200 200",
    ("HEAD", "/api/v1/"):                            "200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/api/v1/archives/"):                    "401 403 401 401 401 401 200 200 200 200 200",
    ("HEAD", "/api/v1/archives/"):                   "401 403 401 401 401 401 200 200 200 200 200",
    ("POST", "/api/v1/archives/"):                   "401 201 423 423 403 423 401 401 401 401 401",
    ("PUT", "/api/v1/archives/"):                    "401 201 423 423 403 423 401 401 401 401 401",
    ("PUT", "/api/v1/archives/{filename}"):          "401 201 423 423 403 423 401 401 401 401 401",
    ("GET", "/api/v1/archives/{id}/"):               "401 404 401 401 401 401 200 200 404 200 200",
    ("HEAD", "/api/v1/archives/{id}/"):              "401 404 401 401 401 401 200 200 404 200 200",
    ("PATCH", "/api/v1/archives/{id}/"):             "401 404 401 401 401 401 200 200 404 200 200",
    ("DELETE", "/api/v1/archives/{id}/"):            "401 404 401 401 401 401 204 204 404 204 204",
    ("GET", "/api/v1/archives/{id}/download/"):      "401 404 401 401 401 401 403 200 404 200 200",
    ("HEAD", "/api/v1/archives/{id}/download/"):     "401 404 401 401 401 401 403 200 404 200 200",
    ("GET", "/api/v1/archives/{id}/lines/{path}"):   "401 404 401 401 401 401 403 200 404 200 200",
    ("HEAD", "/api/v1/archives/{id}/lines/{path}"):  "401 404 401 401 401 401 403 200 404 200 200",
    ("GET", "/api/v1/archives/{id}/members/"):       "401 404 401 401 401 401 403 200 404 200 200",
    ("HEAD", "/api/v1/archives/{id}/members/"):      "401 404 401 401 401 401 403 200 404 200 200",
    ("GET", "/api/v1/archives/{id}/members/{path}"): "401 404 401 401 401 401 403 200 404 200 200",
    ("HEAD", "/api/v1/archives/{id}/members/{path}"):
                                                     "401 404 401 401 401 401 403 200 404 200 200",
    ("GET", "/api/v1/archives/{id}/search/"):        "401 404 401 401 401 401 403 200 404 200 200",
    ("HEAD", "/api/v1/archives/{id}/search/"):       "401 404 401 401 401 401 403 200 404 200 200",
    ("GET", "/api/v1/audit/"):                       "401 403 401 401 401 401 403 403 403 403 200",
    ("HEAD", "/api/v1/audit/"):                      "401 403 401 401 401 401 403 403 403 403 200",
    ("POST", "/api/v1/auth/token/"):                 "401 401 401 401 401 401 401 401 401 401 401",
    ("POST", "/api/v1/auth/token/refresh/"):         "401 401 401 401 401 401 401 401 401 401 401",
    ("POST", "/api/v1/auth/token/revoke/"):          "401 401 401 401 401 401 401 401 401 401 401",
    ("POST", "/api/v1/auth/token/verify/"):          "401 401 401 401 401 401 401 401 401 401 401",
    ("GET", "/api/v1/auth/tokens/"):                 "401 403 401 401 401 401 200 200 200 200 200",
    ("HEAD", "/api/v1/auth/tokens/"):                "401 403 401 401 401 401 200 200 200 200 200",
    ("POST", "/api/v1/auth/tokens/"):                "401 403 401 401 401 401 201 201 201 201 201",
    ("DELETE", "/api/v1/auth/tokens/{id}/"):         "401 403 401 401 401 401 204 204 404 204 404",
    ("GET", "/api/v1/check/health/"):                "200 200 200 200 200 200 200 200 200 200 200",
    ("HEAD", "/api/v1/check/health/"):               "200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/api/v1/check/storage/"):               "401 403 401 401 401 401 200 200 200 200 200",
    ("HEAD", "/api/v1/check/storage/"):              "401 403 401 401 401 401 200 200 200 200 200",
    ("GET", "/api/v1/check/token/{token}/"):         "200 200 200 200 200 200 200 200 200 200 200",
    ("HEAD", "/api/v1/check/token/{token}/"):        "200 200 200 200 200 200 200 200 200 200 200",
    # The API explorer, a page as public as the document it shows
    ("GET", "/api/v1/docs/"):                        "200 200 200 200 200 200 200 200 200 200 200",
    ("HEAD", "/api/v1/docs/"):                       "200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/api/v1/openapi.json"):                 "200 200 200 200 200 200 200 200 200 200 200",
    ("HEAD", "/api/v1/openapi.json"):                "200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/api/v1/platforms/"):                   "401 403 401 401 401 401 200 200 200 200 200",
    ("HEAD", "/api/v1/platforms/"):                  "401 403 401 401 401 401 200 200 200 200 200",
    ("POST", "/api/v1/platforms/"):                  "401 403 401 401 401 401 403 403 403 403 201",
    ("GET", "/api/v1/platforms/{name}/"):            "401 404 401 401 401 401 200 200 404 200 200",
    ("HEAD", "/api/v1/platforms/{name}/"):           "401 404 401 401 401 401 200 200 404 200 200",
    ("PUT", "/api/v1/platforms/{name}/"):            "401 404 401 401 401 401 403 403 404 403 200",
    ("PATCH", "/api/v1/platforms/{name}/"):          "401 404 401 401 401 401 403 403 404 403 200",
    ("DELETE", "/api/v1/platforms/{name}/"):         "401 404 401 401 401 401 403 403 404 403 204",
    ("GET", "/api/v1/tickets/"):                     "401 403 401 401 401 401 200 200 200 200 200",
    ("HEAD", "/api/v1/tickets/"):                    "401 403 401 401 401 401 200 200 200 200 200",
    ("POST", "/api/v1/tickets/"):                    "401 403 401 401 401 401 201 201 404 201 201",
    ("GET", "/api/v1/tickets/{number}/"):            "401 404 401 401 401 401 200 200 404 200 200",
    ("HEAD", "/api/v1/tickets/{number}/"):           "401 404 401 401 401 401 200 200 404 200 200",
    ("PUT", "/api/v1/tickets/{number}/"):            "401 404 401 401 401 401 200 200 404 200 200",
    ("PATCH", "/api/v1/tickets/{number}/"):          "401 404 401 401 401 401 200 200 404 200 200",
    ("DELETE", "/api/v1/tickets/{number}/"):         "401 404 401 401 401 401 204 204 404 204 204",
    ("GET", "/api/v1/tickets/{number}/search/"):     "401 404 401 401 401 401 403 200 404 200 200",
    ("HEAD", "/api/v1/tickets/{number}/search/"):    "401 404 401 401 401 401 403 200 404 200 200",
    ("POST", "/api/v1/tickets/{number}/token/"):     "401 404 401 401 401 401 200 200 404 200 200",
    ("POST", "/api/v1/uploads/"):                    "401 201 423 423 403 423 401 401 401 401 401",
    ("OPTIONS", "/api/v1/uploads/"):                 "204 204 204 204 204 204 204 204 204 204 204",
    ("GET", "/api/v1/uploads/{id}/"):                "401 404 423 404 403 423 401 401 401 401 401",
    ("HEAD", "/api/v1/uploads/{id}/"):               "401 404 423 404 403 423 401 401 401 401 401",
    ("PATCH", "/api/v1/uploads/{id}/"):              "401 404 423 404 403 423 401 401 401 401 401",
    ("DELETE", "/api/v1/uploads/{id}/"):             "401 404 423 404 403 423 401 401 401 401 401",
    ("OPTIONS", "/api/v1/uploads/{id}/"):            "204 204 204 204 204 204 204 204 204 204 204",
    ("GET", "/api/v1/users/{id}/tokens/"):           "401 403 401 401 401 401 403 403 403 403 200",
    ("HEAD", "/api/v1/users/{id}/tokens/"):          "401 403 401 401 401 401 403 403 403 403 200",
    ("POST", "/api/v1/users/{id}/tokens/revoke/"):   "401 403 401 401 401 401 403 403 403 403 200",
    ("DELETE", "/api/v1/users/{id}/tokens/{token_id}/"):
                                                     "401 403 401 401 401 401 403 403 403 403 204",
    ("GET", "/api/v1/webhooks/"):                    "401 403 401 401 401 401 403 403 403 403 200",
    ("HEAD", "/api/v1/webhooks/"):                   "401 403 401 401 401 401 403 403 403 403 200",
    ("POST", "/api/v1/webhooks/"):                   "401 403 401 401 401 401 403 403 403 403 201",
    ("GET", "/api/v1/webhooks/deliveries/"):         "401 403 401 401 401 401 403 403 403 403 200",
    ("HEAD", "/api/v1/webhooks/deliveries/"):        "401 403 401 401 401 401 403 403 403 403 200",
    ("POST", "/api/v1/webhooks/deliveries/{id}/redeliver/"):
                                                     "401 403 401 401 401 401 403 403 403 403 201",
    ("GET", "/api/v1/webhooks/{id}/"):               "401 403 401 401 401 401 403 403 403 403 200",
    ("HEAD", "/api/v1/webhooks/{id}/"):              "401 403 401 401 401 401 403 403 403 403 200",
    ("PATCH", "/api/v1/webhooks/{id}/"):             "401 403 401 401 401 401 403 403 403 403 200",
    ("DELETE", "/api/v1/webhooks/{id}/"):            "401 403 401 401 401 401 403 403 403 403 204",
}

ENV = {"HTTP_HOST": "localhost", "REMOTE_ADDR": "127.0.0.1"}


def archive_bytes():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = b"2026-12-01 ERROR needle here\n2026-12-01 INFO done\n"
        info = tarfile.TarInfo("var/log/app.log")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Req:
    def __init__(self, path, json=None, form=None, upload=False, headers=None, body=None):
        self.path, self.json, self.form, self.upload = path, json, form, upload
        self.headers, self.body = headers or {}, body


class World:
    """The objects every cell needs, and fresh ones for the cells that change things."""

    def __init__(self, factory, testapp, dbsession):
        self.factory, self.testapp, self.db = factory, testapp, dbsession
        self.member = factory.user("member")
        self.outsider = factory.user("outsider")
        self.admin = factory.user("boss", admin=True)
        self.vault = factory.platform("vault", restricted=True, members=[self.member])
        self.b = factory.ticket(self.vault, 501, attempts=1000)
        self.a = factory.ticket(self.vault, 502)
        self.archive = self.upload(self.b)
        self.tokens = {
            "other": self.a.token,
            "expired": factory.ticket(self.vault, 503, expires_at=_past()).token,
            "used_up": factory.ticket(self.vault, 504, attempts=0).token,
            "rotated": self._rotated(factory.ticket(self.vault, 505)),
            "resolved": self._resolved(factory.ticket(self.vault, 506)),
        }
        self.bearer = {
            "staff": factory.token(self.member, mfa=False),
            "staff_mfa": factory.token(self.member, mfa=True),
            "outsider": factory.token(self.outsider, mfa=True),
            "admin": factory.token(self.admin, mfa=True),
        }
        self.count = 0
        self._build_index(self.archive)

    def _build_index(self, archive_id):
        """The first look inside an archive starts building its index (503 meanwhile)."""
        from collector.archives.inspect import store

        self.testapp.get(f"/api/v1/archives/{archive_id}/members/",
                         headers=self.bearer["admin"], status=(200, 503))
        store.wait_for_builders()

    def _rotated(self, ticket):
        from collector.tickets import services

        old = ticket.token
        services.rotate_token(self.db, ticket)
        self.db.commit()
        return old

    def _resolved(self, ticket):
        from collector.tickets import services

        services.update_ticket(self.db, ticket, resolved=True)
        self.db.commit()
        return ticket.token

    def upload(self, ticket):
        return self.testapp.post("/api/v1/archives/",
                                 upload_files=[("file", "logs.tar.gz", archive_bytes())],
                                 headers={"Upload-Token": ticket.token}, status=201).json["id"]

    def _next(self):
        self.count += 1
        return self.count

    # Fresh objects for the cells that change or delete something.
    def ticket(self):
        return self.factory.ticket(self.vault, 600 + self._next()).number

    def fresh_archive(self):
        return self.upload(self.b)

    def fresh_platform(self):
        name = f"p{self._next()}"
        self.factory.platform(name, restricted=True, members=[self.member])
        return name

    def user(self):
        return self.factory.user(f"victim{self._next()}").id

    def webhook(self):
        from collector.webhooks import services

        hook = services.create_webhook(self.db, self.vault, "https://hooks.example.com/x")
        self.db.commit()
        return hook.id

    def failed_delivery(self):
        from collector.webhooks.models import WebhookDelivery

        delivery = WebhookDelivery(webhook_id=self.webhook(), event_id=f"e{self._next()}",
                                   event="ticket.resolved", payload={}, state="failed")
        self.db.add(delivery)
        self.db.commit()
        return delivery.id

    def personal_token(self):
        from collector.accounts import tokens

        row, _ = tokens.create_personal_token(self.db, self.member, "victim", mfa=True)
        self.db.commit()
        return row.id

    def victim_token(self):
        """A user of their own with a personal token: (user id, token id)."""
        from collector.accounts import tokens

        victim = self.factory.user(f"victim{self._next()}")
        row, _ = tokens.create_personal_token(self.db, victim, "victim", mfa=True)
        self.db.commit()
        return victim.id, row.id

    def tus_upload(self):
        res = self.testapp.post("/api/v1/uploads/", headers={
            "Upload-Token": self.b.token, "Tus-Resumable": "1.0.0", "Upload-Length": "5"},
            status=201)
        return res.headers["Location"].rstrip("/").rsplit("/", 1)[1]

    def page(self, number=None, archive=None):
        base = f"/platforms/vault/tickets/{number or self.b.number}/"
        return base + (f"archives/{archive}/" if archive else "")


def _past():
    return dt.datetime.now(dt.UTC) - dt.timedelta(days=1)


def _archive_page(w, name=""):
    return Req(w.page(archive=w.archive) + name)


# (method, path pattern) → the request to send (a function of the World).
REQUESTS = {
    # --- pages ---
    ("GET", "/"): lambda w: Req("/"),
    ("POST", "/"): lambda w: Req("/", form={}),
    ("GET", "/login"): lambda w: Req("/login"),
    ("POST", "/login"): lambda w: Req("/login", form={"username": "member", "password": "x"}),
    ("GET", "/verify"): lambda w: Req("/verify"),
    ("POST", "/verify"): lambda w: Req("/verify", form={"code": "000000"}),
    ("GET", "/enrol"): lambda w: Req("/enrol"),
    ("POST", "/enrol"): lambda w: Req("/enrol", form={"code": "000000"}),
    ("POST", "/logout"): lambda w: Req("/logout", form={}),
    ("GET", "/setup"): lambda w: Req("/setup"),
    ("POST", "/setup"): lambda w: Req("/setup", form={"setup_code": "x", "username": "x"}),
    ("GET", "/upload"): lambda w: Req("/upload"),
    ("GET", "/uploader.sh"): lambda w: Req("/uploader.sh"),
    ("GET", "/favicon.ico"): lambda w: Req("/favicon.ico"),
    ("GET", "/account/"): lambda w: Req("/account/"),
    ("POST", "/account/password"): lambda w: Req("/account/password", form={
        "current_password": "wrong", "new_password": "a", "new_password_confirm": "b"}),
    ("POST", "/account/recovery-codes"): lambda w: Req("/account/recovery-codes", form={}),
    ("POST", "/account/tokens"): lambda w: Req("/account/tokens", form={"name": "cli"}),
    ("POST", "/account/revoke-token"): lambda w: Req("/account/revoke-token", form={
        "token_id": str(w.personal_token())}),
    ("GET", "/admin/"): lambda w: Req("/admin/"),
    ("GET", "/admin/audit"): lambda w: Req("/admin/audit"),
    ("GET", "/admin/users/"): lambda w: Req("/admin/users/"),
    ("POST", "/admin/users/"): lambda w: Req("/admin/users/", form={
        "username": f"new{w._next()}", "password": "correct horse battery"}),
    ("GET", "/admin/users/{id}/"): lambda w: Req(f"/admin/users/{w.member.id}/"),
    ("POST", "/admin/users/{id}/active"): lambda w: Req(f"/admin/users/{w.user()}/active",
                                                        form={"active": "0"}),
    ("POST", "/admin/users/{id}/admin"): lambda w: Req(f"/admin/users/{w.user()}/admin",
                                                       form={"is_admin": "1"}),
    ("POST", "/admin/users/{id}/password"): lambda w: Req(
        f"/admin/users/{w.user()}/password", form={"password": "another horse battery"}),
    ("POST", "/admin/users/{id}/reset-2fa"): lambda w: Req(
        f"/admin/users/{w.user()}/reset-2fa", form={}),
    ("POST", "/admin/users/{id}/revoke-token"): lambda w: Req(
        "/admin/users/{}/revoke-token".format(*(ids := w.victim_token())),
        form={"token_id": str(ids[1])}),
    ("POST", "/admin/users/{id}/revoke-tokens"): lambda w: Req(
        f"/admin/users/{w.victim_token()[0]}/revoke-tokens", form={}),
    ("GET", "/admin/webhooks/"): lambda w: Req("/admin/webhooks/"),
    ("POST", "/admin/webhooks/"): lambda w: Req("/admin/webhooks/", form={
        "platform": "vault", "url": "https://hooks.example.com/y"}),
    ("POST", "/admin/webhooks/redeliver"): lambda w: Req(
        "/admin/webhooks/redeliver", form={"delivery": str(w.failed_delivery())}),
    ("POST", "/admin/webhooks/{id}/delete"): lambda w: Req(
        f"/admin/webhooks/{w.webhook()}/delete", form={}),
    ("POST", "/admin/webhooks/{id}/toggle"): lambda w: Req(
        f"/admin/webhooks/{w.webhook()}/toggle", form={}),
    ("POST", "/admin/webhooks/{id}/rotate"): lambda w: Req(
        f"/admin/webhooks/{w.webhook()}/rotate", form={}),
    ("GET", "/platforms/"): lambda w: Req("/platforms/"),
    ("POST", "/platforms/"): lambda w: Req("/platforms/", form={
        "name": f"n{w._next()}", "pretty_name": "New"}),
    ("GET", "/platforms/{name}/"): lambda w: Req("/platforms/vault/"),
    ("GET", "/platforms/{name}/edit"): lambda w: Req("/platforms/vault/edit"),
    ("POST", "/platforms/{name}/edit"): lambda w: Req(f"/platforms/{w.fresh_platform()}/edit",
                                                      form={"pretty_name": "Renamed",
                                                            "restricted": "1"}),
    ("POST", "/platforms/{name}/add-member"): lambda w: Req(
        f"/platforms/{w.fresh_platform()}/add-member", form={"username": "outsider"}),
    ("POST", "/platforms/{name}/remove-member"): lambda w: Req(
        f"/platforms/{w.fresh_platform()}/remove-member", form={"username": "member"}),
    ("GET", "/platforms/{name}/delete"): lambda w: Req("/platforms/vault/delete"),
    ("POST", "/platforms/{name}/delete"): lambda w: Req(
        f"/platforms/{w.fresh_platform()}/delete", form={}),
    ("GET", "/tickets/"): lambda w: Req("/tickets/"),
    ("GET", "/tickets/new"): lambda w: Req("/tickets/new"),
    ("POST", "/tickets/new"): lambda w: Req("/tickets/new", form={
        "number": str(700 + w._next()), "platform": "vault", "attempts": "3"}),
    ("GET", "/platforms/{name}/tickets/{number}/"): lambda w: Req(w.page()),
    ("GET", "/platforms/{name}/tickets/{number}/edit"): lambda w: Req(w.page() + "edit"),
    ("POST", "/platforms/{name}/tickets/{number}/edit"): lambda w: Req(
        w.page(n := w.ticket()) + "edit", form={"number": str(n), "platform": "vault",
                                                "attempts": "4", "note": "edited"}),
    ("POST", "/platforms/{name}/tickets/{number}/resolve"): lambda w: Req(
        w.page(w.ticket()) + "resolve", form={"resolved": "1"}),
    ("POST", "/platforms/{name}/tickets/{number}/hold"): lambda w: Req(
        w.page(w.ticket()) + "hold", form={"hold": "1", "reason": "court"}),
    ("POST", "/platforms/{name}/tickets/{number}/rotate"): lambda w: Req(
        w.page(w.ticket()) + "rotate", form={}),
    ("GET", "/platforms/{name}/tickets/{number}/delete"): lambda w: Req(w.page() + "delete"),
    ("POST", "/platforms/{name}/tickets/{number}/delete"): lambda w: Req(
        w.page(w.ticket()) + "delete", form={}),
    ("GET", "/platforms/{name}/tickets/{number}/search"): lambda w: Req(
        w.page() + "search?q=needle"),
    ("GET", "/platforms/{name}/tickets/{number}/archives/{id}/"): _archive_page,
    ("GET", "/platforms/{name}/tickets/{number}/archives/{id}/download"): lambda w:
        _archive_page(w, "download"),
    ("GET", "/platforms/{name}/tickets/{number}/archives/{id}/members"): lambda w:
        _archive_page(w, "members"),
    ("GET", "/platforms/{name}/tickets/{number}/archives/{id}/member"): lambda w:
        _archive_page(w, "member/var/log/app.log"),
    ("GET", "/platforms/{name}/tickets/{number}/archives/{id}/view"): lambda w:
        _archive_page(w, "view/var/log/app.log"),
    ("GET", "/platforms/{name}/tickets/{number}/archives/{id}/search"): lambda w:
        _archive_page(w, "search?q=needle"),
    ("GET", "/platforms/{name}/tickets/{number}/archives/{id}/delete"): lambda w:
        _archive_page(w, "delete"),
    ("POST", "/platforms/{name}/tickets/{number}/archives/{id}/delete"): lambda w: Req(
        w.page(archive=w.fresh_archive()) + "delete", form={}),
    ("GET", "/livez"): lambda w: Req("/livez"),
    ("GET", "/readyz"): lambda w: Req("/readyz"),
    ("GET", "/static/*subpath"): lambda w: Req("/static/app.css"),
    ("GET", "/static/bootstrap/*subpath"): lambda w: Req(
        "/static/bootstrap/css/bootstrap.min.css"),
    ("GET", "/static/swagger-ui-5.31.0/*subpath"): lambda w: Req(
        "/static/swagger-ui-5.31.0/swagger-ui.css"),
    # --- API ---
    ("GET", "/api/v1/"): lambda w: Req("/api/v1/"),
    ("GET", "/api/v1/openapi.json"): lambda w: Req("/api/v1/openapi.json"),
    ("GET", "/api/v1/docs/"): lambda w: Req("/api/v1/docs"),
    ("GET", "/api/v1/check/health/"): lambda w: Req("/api/v1/check/health/"),
    ("GET", "/api/v1/check/storage/"): lambda w: Req("/api/v1/check/storage/"),
    ("GET", "/api/v1/check/token/{token}/"): lambda w: Req(f"/api/v1/check/token/{w.b.token}"),
    ("GET", "/api/v1/platforms/"): lambda w: Req("/api/v1/platforms/"),
    ("POST", "/api/v1/platforms/"): lambda w: Req("/api/v1/platforms/", json={
        "name": f"n{w._next()}", "pretty_name": "New"}),
    ("GET", "/api/v1/platforms/{name}/"): lambda w: Req("/api/v1/platforms/vault/"),
    ("PUT", "/api/v1/platforms/{name}/"): lambda w: Req(
        f"/api/v1/platforms/{(name := w.fresh_platform())}/",
        json={"name": name, "pretty_name": "Again", "restricted": True}),
    ("PATCH", "/api/v1/platforms/{name}/"): lambda w: Req(
        f"/api/v1/platforms/{w.fresh_platform()}/", json={"pretty_name": "Renamed"}),
    ("DELETE", "/api/v1/platforms/{name}/"): lambda w: Req(
        f"/api/v1/platforms/{w.fresh_platform()}/"),
    ("GET", "/api/v1/tickets/"): lambda w: Req("/api/v1/tickets/"),
    ("POST", "/api/v1/tickets/"): lambda w: Req("/api/v1/tickets/", json={
        "number": 800 + w._next(), "platform": "vault"}),
    ("GET", "/api/v1/tickets/{number}/"): lambda w: Req("/api/v1/tickets/501/"),
    ("PUT", "/api/v1/tickets/{number}/"): lambda w: Req(
        f"/api/v1/tickets/{(n := w.ticket())}/", json={"number": n, "platform": "vault",
                                                       "attempts": 3}),
    ("PATCH", "/api/v1/tickets/{number}/"): lambda w: Req(f"/api/v1/tickets/{w.ticket()}/",
                                                          json={"note": "called"}),
    ("DELETE", "/api/v1/tickets/{number}/"): lambda w: Req(f"/api/v1/tickets/{w.ticket()}/"),
    ("POST", "/api/v1/tickets/{number}/token/"): lambda w: Req(
        f"/api/v1/tickets/{w.ticket()}/token/", json={}),
    ("GET", "/api/v1/tickets/{number}/search/"): lambda w: Req(
        "/api/v1/tickets/501/search?q=needle"),
    ("GET", "/api/v1/archives/"): lambda w: Req("/api/v1/archives/"),
    ("POST", "/api/v1/archives/"): lambda w: Req("/api/v1/archives/", upload=True),
    ("PUT", "/api/v1/archives/"): lambda w: Req("/api/v1/archives/", body=archive_bytes()),
    ("PUT", "/api/v1/archives/{filename}"): lambda w: Req("/api/v1/archives/logs.tar.gz",
                                                          body=archive_bytes()),
    ("GET", "/api/v1/archives/{id}/"): lambda w: Req(f"/api/v1/archives/{w.archive}/"),
    ("PATCH", "/api/v1/archives/{id}/"): lambda w: Req(
        f"/api/v1/archives/{w.fresh_archive()}/", json={"name": "renamed.tgz"}),
    ("DELETE", "/api/v1/archives/{id}/"): lambda w: Req(
        f"/api/v1/archives/{w.fresh_archive()}/"),
    ("GET", "/api/v1/archives/{id}/download/"): lambda w: Req(
        f"/api/v1/archives/{w.archive}/download"),
    ("GET", "/api/v1/archives/{id}/members/"): lambda w: Req(
        f"/api/v1/archives/{w.archive}/members/"),
    ("GET", "/api/v1/archives/{id}/members/{path}"): lambda w: Req(
        f"/api/v1/archives/{w.archive}/members/var/log/app.log"),
    ("GET", "/api/v1/archives/{id}/lines/{path}"): lambda w: Req(
        f"/api/v1/archives/{w.archive}/lines/var/log/app.log"),
    ("GET", "/api/v1/archives/{id}/search/"): lambda w: Req(
        f"/api/v1/archives/{w.archive}/search?q=needle"),
    ("OPTIONS", "/api/v1/uploads/"): lambda w: Req("/api/v1/uploads/"),
    ("POST", "/api/v1/uploads/"): lambda w: Req("/api/v1/uploads/", body=b"", headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": "5"}),
    ("OPTIONS", "/api/v1/uploads/{id}/"): lambda w: Req(f"/api/v1/uploads/{w.tus_upload()}"),
    ("GET", "/api/v1/uploads/{id}/"): lambda w: Req(f"/api/v1/uploads/{w.tus_upload()}"),
    ("HEAD", "/api/v1/uploads/{id}/"): lambda w: Req(f"/api/v1/uploads/{w.tus_upload()}",
                                                     headers={"Tus-Resumable": "1.0.0"}),
    ("PATCH", "/api/v1/uploads/{id}/"): lambda w: Req(
        f"/api/v1/uploads/{w.tus_upload()}", body=b"hello", headers={
            "Tus-Resumable": "1.0.0", "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream"}),
    ("DELETE", "/api/v1/uploads/{id}/"): lambda w: Req(f"/api/v1/uploads/{w.tus_upload()}",
                                                       headers={"Tus-Resumable": "1.0.0"}),
    ("POST", "/api/v1/auth/token/"): lambda w: Req("/api/v1/auth/token/", json={
        "username": "member", "password": "wrong", "otp": "000000"}),
    ("POST", "/api/v1/auth/token/refresh/"): lambda w: Req("/api/v1/auth/token/refresh/",
                                                           json={"refresh": "not-a-token"}),
    ("POST", "/api/v1/auth/token/verify/"): lambda w: Req("/api/v1/auth/token/verify/",
                                                          json={"token": "not-a-token"}),
    ("POST", "/api/v1/auth/token/revoke/"): lambda w: Req("/api/v1/auth/token/revoke/",
                                                          json={"token": "not-a-token"}),
    ("GET", "/api/v1/auth/tokens/"): lambda w: Req("/api/v1/auth/tokens/"),
    ("POST", "/api/v1/auth/tokens/"): lambda w: Req("/api/v1/auth/tokens/", json={"name": "b"}),
    ("DELETE", "/api/v1/auth/tokens/{id}/"): lambda w: Req(
        f"/api/v1/auth/tokens/{w.personal_token()}/"),
    ("GET", "/api/v1/audit/"): lambda w: Req("/api/v1/audit/"),
    ("GET", "/api/v1/users/{id}/tokens/"): lambda w: Req(f"/api/v1/users/{w.member.id}/tokens/"),
    ("POST", "/api/v1/users/{id}/tokens/revoke/"): lambda w: Req(
        f"/api/v1/users/{w.victim_token()[0]}/tokens/revoke/", json={}),
    ("DELETE", "/api/v1/users/{id}/tokens/{token_id}/"): lambda w: Req(
        "/api/v1/users/{}/tokens/{}/".format(*w.victim_token())),
    ("GET", "/api/v1/webhooks/"): lambda w: Req("/api/v1/webhooks/"),
    ("POST", "/api/v1/webhooks/"): lambda w: Req("/api/v1/webhooks/", json={
        "platform": "vault", "url": "https://hooks.example.com/z"}),
    ("GET", "/api/v1/webhooks/deliveries/"): lambda w: Req("/api/v1/webhooks/deliveries/"),
    ("POST", "/api/v1/webhooks/deliveries/{id}/redeliver/"): lambda w: Req(
        f"/api/v1/webhooks/deliveries/{w.failed_delivery()}/redeliver", json={}),
    ("GET", "/api/v1/webhooks/{id}/"): lambda w: Req(f"/api/v1/webhooks/{w.webhook()}/"),
    ("PATCH", "/api/v1/webhooks/{id}/"): lambda w: Req(f"/api/v1/webhooks/{w.webhook()}/",
                                                       json={"active": False}),
    ("DELETE", "/api/v1/webhooks/{id}/"): lambda w: Req(f"/api/v1/webhooks/{w.webhook()}/"),
}


def _request_for(method, pattern):
    """HEAD asks what GET asks, unless it has a request of its own (tus)."""
    if (method, pattern) in REQUESTS:
        return REQUESTS[(method, pattern)]
    if method == "HEAD":
        return REQUESTS[("GET", pattern)]
    raise KeyError((method, pattern))


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


# Cells after which the browser's session is gone (signed out, or a new one started).
ENDS_SESSION = {("POST", "/logout"), ("POST", "/login"), ("POST", "/verify"),
                ("POST", "/enrol"), ("POST", "/setup"), ("POST", "/account/password")}


def start_session(client, world, principal, web_login):
    """Sign ``session`` (or test_csrf_headers.py's ``admin_session``) in, else just open a
    session, and keep the session's CSRF token."""
    client.reset()
    if principal in {"session", "admin_session"}:
        web_login(client, world.member if principal == "session" else world.admin)
        page = client.get("/account/")
    else:
        page = client.get("/login")
    client.csrf = CSRF.search(page.text).group(1)


def browser(app, world, principal, web_login):
    """A TestApp with cookies and a CSRF token, and the headers ``principal`` sends."""
    client = webtest.TestApp(app, extra_environ=ENV)
    start_session(client, world, principal, web_login)
    headers = {}
    if principal in world.tokens:
        headers["Upload-Token"] = world.tokens[principal]
    elif principal in world.bearer:
        headers.update(world.bearer[principal])
    client.principal_headers = headers
    return client


def send(client, method, req):
    headers = {**client.principal_headers, **req.headers}
    kwargs = {"headers": headers, "expect_errors": True}
    if method in {"GET", "HEAD", "OPTIONS"}:
        return getattr(client, method.lower())(req.path, **kwargs)
    if req.form is not None:
        return client.post(req.path, {**req.form, "csrf_token": client.csrf}, **kwargs)
    headers["X-CSRF-Token"] = client.csrf
    if req.upload:
        return client.post(req.path, upload_files=[("file", "more.tar.gz", archive_bytes())],
                           **kwargs)
    if req.body is not None:
        return client.request(req.path, method=method, body=req.body, **kwargs)
    return client.request(req.path, method=method, body=_json(req.json or {}),
                          content_type="application/json", **kwargs)


def _json(data):
    return json.dumps(data).encode()


HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def header_problems(res, label):
    """What is missing of the headers every response carries (pages and everything else)."""
    problems = [f"{label}: {name} is {res.headers.get(name)!r}"
                for name, value in HEADERS.items() if res.headers.get(name) != value]
    csp = res.headers.get("Content-Security-Policy", "")
    page = (res.content_type or "").startswith("text/html")
    wanted = ["frame-ancestors 'none'", "default-src 'self'" if page else "default-src 'none'"]
    if 300 <= res.status_int < 400:  # a redirect's body is written after the tween ran
        wanted = ["frame-ancestors 'none'", "default-src '"]
    if any(part not in csp for part in wanted) or "unsafe-inline" in csp:
        problems.append(f"{label}: Content-Security-Policy is {csp!r}")
    return problems


def check_answer(method, path, res):
    """The security headers on every answer; a refusal is a JSON ``detail`` under /api/
    and a readable page elsewhere."""
    problems = header_problems(res, "headers")
    if res.status_int >= 400 and method != "HEAD":
        if path.startswith("/api/"):
            try:
                if not res.json.get("detail"):
                    problems.append("error without a JSON detail")
            except Exception:
                problems.append(f"error is not JSON: {res.body[:80]!r}")
        else:
            if not res.content_type.startswith("text/html") or "<h1" not in res.text:
                problems.append(f"error is not a readable page: {res.body[:80]!r}")
            if "Traceback" in res.text:
                problems.append("error page shows a traceback")
    return problems


def test_the_table_covers_every_endpoint(app_endpoints, app_cornice_endpoints,
                                         endpoint_table_diff):
    assert app_cornice_endpoints <= set(app_endpoints), \
        "cornice services the introspector did not show"
    message = endpoint_table_diff(app_endpoints, EXPECTED, "EXPECTED in test_acl_matrix.py")
    assert not message, message
    assert all(len(row.split()) == len(PRINCIPALS) for row in EXPECTED.values())
    for method, pattern in EXPECTED:
        _request_for(method, pattern)  # every entry knows what to send


@pytest.mark.parametrize("principal", PRINCIPALS)
@pytest.mark.commits  # the member index is built by a thread of the app's own
def test_matrix(app, testapp, factory, dbsession, web_login, app_endpoints, principal):
    world = World(factory, testapp, dbsession)
    client = browser(app, world, principal, web_login)
    column = PRINCIPALS.index(principal)
    wrong = []
    for method, pattern in sorted(app_endpoints, key=lambda k: (k[1], k[0])):
        if (method, pattern) not in EXPECTED:
            continue  # reported by test_the_table_covers_every_endpoint
        want = int(EXPECTED[(method, pattern)].split()[column])
        req = _request_for(method, pattern)(world)
        res = send(client, method, req)
        if res.status_int != want:
            detail = res.body[:160] if method != "HEAD" else b""
            wrong.append(f"{method} {req.path}: {res.status_int}, expected {want} {detail!r}")
        wrong += [f"{method} {req.path}: {p}" for p in check_answer(method, req.path, res)]
        if (method, pattern) in ENDS_SESSION:
            start_session(client, world, principal, web_login)
    assert not wrong, f"{principal}:\n" + "\n".join(wrong)


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
