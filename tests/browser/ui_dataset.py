"""The data every page of the every-page check shows: made through the services and the
real HTTP API, as an installation would have it after some weeks of use.

Long values on purpose (a ticket note with an unbroken token in it, an archive name and
member paths far wider than a phone), every state a ticket can be in (open, resolved, on
legal hold), an archive whose index is built (so the member list, the viewer and search
have content), webhooks with failed deliveries, personal API tokens, and a few dozen audit
events (every step below writes some).
"""

import sample_archives as samples

from collector.archives.inspect import store

LONG_NOTE = (
    "Crash of the storage node after the 6.2 upgrade; the customer sees timeouts on every "
    "volume mount. Trace id 7f3e9c2a1b4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f"
    "1a2b3c4d5e6f7a8b and the URL they gave: https://storage-node-17.customer.example.com/"
    "admin/diagnostics/bundle?session=3b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f "
    "— please collect /var/log and the crash dumps of the last three days.")
LONG_ARCHIVE = ("node3-storage-cluster-full-diagnostic-bundle-2026-12-01T10-00-00Z-"
                "after-upgrade-to-6.2.0-rc3.tar.gz")
DEEP = ("var/log/storage/cluster-membership-and-replication-controller/"
        "replication-worker-pool-17/")
MEMBERS = {
    **samples.MEMBERS,
    DEEP + "replication-worker-with-an-exceptionally-long-file-name-2026-12-01.log":
        samples.APP_LOG * 3,
    DEEP + "nested/even-deeper/and-deeper-still/last.log": samples.SYSLOG[:4000],
}
WEBHOOK_DOWN = "http://127.0.0.1:9/hooks/logs-collector"  # the discard port: refused


class Dataset:
    """Who and what the pages are visited as and about (ids and tokens for the URLs)."""

    def __init__(self, factory, dbsession, api):
        from collector.accounts import tokens
        from collector.tickets import services as tickets
        from collector.webhooks import services as webhooks

        self.admin = factory.user("root", admin=True)
        self.staff = factory.user("staff")
        self.newcomer = factory.user("newcomer", totp=False)  # enrols at first sign-in
        admin_headers = factory.token(self.admin)
        for name in ("backup script", "nightly report", "grafana dashboard"):
            tokens.create_personal_token(dbsession, self.staff, name, mfa=False)
        dbsession.commit()

        self.vm6 = factory.platform("vm6")
        self.vault = factory.platform("vault", restricted=True, members=[self.staff])
        for platform in (self.vm6, self.vault):
            webhooks.create_webhook(dbsession, platform, WEBHOOK_DOWN)
        webhooks.create_webhook(dbsession, self.vm6, "https://hooks.example.com/paused",
                                active=False)
        dbsession.commit()

        self.ticket = factory.ticket(self.vault, 4711, user=self.staff, note=LONG_NOTE)
        self.resolved = factory.ticket(self.vm6, 4698, user=self.staff,
                                       note="Slow backups; fixed in 6.1.3.")
        tickets.update_ticket(dbsession, self.resolved, resolved=True)
        self.held = factory.ticket(self.vm6, 4702, user=self.admin, note="Litigation.")
        tickets.set_legal_hold(dbsession, self.held, True, reason="case 2026-118")
        # The customer's upload page, after an upload through it in each size and theme.
        self.upload_ticket = factory.ticket(self.vm6, 4690, user=self.staff, attempts=20,
                                            note="Upload page check.")
        for number in range(4703, 4709):
            factory.ticket(self.vm6, number, user=self.staff, note=f"Ticket {number}.")
        dbsession.commit()

        uploaded = api.post("/api/v1/archives/", headers={"Upload-Token": self.ticket.token},
                            multipart={"file": {"name": LONG_ARCHIVE,
                                                "mimeType": "application/gzip",
                                                "buffer": samples.tar(MEMBERS, "gz")}})
        assert uploaded.status == 201, uploaded.text()
        self.archive_id = uploaded.json()["id"]
        small = api.post("/api/v1/archives/", headers={"Upload-Token": self.ticket.token},
                         multipart={"file": {"name": "dmesg.txt", "mimeType": "text/plain",
                                             "buffer": b"[0.000000] Linux version 6.1\n"}})
        assert small.status == 201, small.text()
        # A zip whose directory is missing: its member list is the page saying it cannot
        # be read.
        damaged = api.post("/api/v1/archives/", headers={"Upload-Token": self.ticket.token},
                           multipart={"file": {"name": "damaged.zip",
                                               "mimeType": "application/zip",
                                               "buffer": samples.zip_archive()[:200]}})
        assert damaged.status == 201, damaged.text()
        self.damaged_id = damaged.json()["id"]
        # The index is built at the first look, in a thread: started here, waited for.
        for archive_id in (self.archive_id, self.damaged_id):
            members = api.get(f"/api/v1/archives/{archive_id}/members/",
                              headers=admin_headers)
            assert members.status in (200, 422, 503), members.text()
        store.wait_for_builders()
        for query in ("ERROR", "connection refused"):
            api.get(f"/api/v1/tickets/4711/search/?q={query}", headers=admin_headers)
        # Failed deliveries (the receiver refuses): the webhooks page shows their errors.
        settings = dict(api_settings(factory))
        webhooks.deliver_pending(dbsession.get_bind(), settings)

    @property
    def ticket_path(self):
        return "/platforms/vault/tickets/4711/"

    @property
    def archive_path(self):
        return f"{self.ticket_path}archives/{self.archive_id}/"


def api_settings(factory):
    """The app's settings, with a short webhook timeout (the receiver refuses at once)."""
    return {**factory.settings, "webhooks.timeout": 2}
