"""What the upload page's browser tests share: opening the page for a ticket, making its
chunks small, watching its tus requests, and reading what the server stored."""

import os

from sqlalchemy import select

from collector.archives.models import Archive, TusUpload
from collector.tickets.models import Ticket

# Each item's state is in data-state; these are the ones an upload ends in.
FINISHED = "[data-state=done], [data-state=failed], [data-state=refused], [data-state=cancelled]"
MiB = 1024 * 1024
UPLOADS = "/api/v1/uploads/"


def payload(name, size):
    data = os.urandom(size)
    return {"name": name, "mimeType": "application/gzip", "buffer": data}


def throttle(page, bytes_per_second):
    """Limit the page's upload speed (Chromium's own network emulation, over CDP)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1,
        "uploadThroughput": bytes_per_second})


def open_page(page, ticket):
    page.goto(f"/upload#token={ticket.token}")
    status = page.locator("#token-status")
    status.get_by_text(f"Ticket {ticket.number}").wait_for()
    return status


def configure(page, chunk_size=None, retry_delays=None):
    """The page's chunk size and waits between retries (ms), for this test."""
    page.evaluate("""([chunk, delays]) => {
        const form = document.getElementById('upload-form');
        if (chunk) { form.setAttribute('data-chunk-size', String(chunk)); }
        if (delays) { form.setAttribute('data-retry-delays', delays); }
    }""", [chunk_size, retry_delays])


def tus_requests(page):
    """Every request the page makes to the tus endpoints: (method, Upload-Offset)."""
    seen = []
    page.on("request", lambda request: seen.append(
        (request.method, request.headers.get("upload-offset")))
        if UPLOADS in request.url else None)
    return seen


def stored_entries(page):
    return page.evaluate("""() => Object.keys(localStorage)
        .filter(key => key.startsWith('collector.upload.'))""")


def uploads_of(dbsession, ticket, unfinished=True):
    """The ticket's tus uploads; a finished one stays (its HEAD names the archive)."""
    dbsession.expire_all()
    query = select(TusUpload).where(TusUpload.ticket_id == ticket.id)
    if unfinished:
        query = query.where(TusUpload.finished_at.is_(None))
    return dbsession.scalars(query).all()


def archives_of(dbsession, ticket):
    dbsession.expire_all()
    return dbsession.scalars(select(Archive).where(Archive.ticket_id == ticket.id)).all()


def attempts_left(dbsession, ticket):
    dbsession.expire_all()
    return dbsession.scalar(select(Ticket.attempts).where(Ticket.id == ticket.id))


def update_ticket(dbsession, ticket, **values):
    row = dbsession.get(Ticket, ticket.id)
    for name, value in values.items():
        setattr(row, name, value)
    dbsession.commit()


def shown(page):
    """What the page tells the person about the token and the files (the console commands
    below, which carry the token on purpose, left out)."""
    return page.evaluate("""() => ['#token-status', '#uploads']
        .map(selector => document.querySelector(selector).innerText).join('\\n')""")
