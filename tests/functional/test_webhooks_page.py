"""The admin's webhooks page through the real WSGI stack: a secret is in the page only
right after it is made (creation or rotation), the long addresses wrap at their parts, the
deliveries' filters are choices, and the tables stack at phone width."""

import pytest
import webtest
from sqlalchemy import select

from collector.audit.models import AuditEvent
from collector.webhooks import services
from collector.webhooks.models import Webhook

LONG_URL = ("https://helpdesk.support.example.com/api/integrations/v2/hooks/logs-collector"
            "?tenant=acme-industries&token=abcdefghijklmnopqrstuvwxyz&mode=full")


@pytest.fixture
def page(app, admin, factory, web_login):
    factory.platform("vm6")
    factory.session.commit()
    return web_login(webtest.TestApp(app, extra_environ={"HTTP_HOST": "localhost"}), admin)


def secrets(dbsession):
    dbsession.expire_all()
    return {hook.id: hook.secret for hook in dbsession.scalars(select(Webhook))}


def add(page, url="https://helpdesk.example/hooks/logs", secret=""):
    form = page.get("/admin/webhooks/").forms["create-webhook-form"]
    form["url"], form["secret"] = url, secret
    return form.submit(status=303).follow()


def test_a_new_secret_is_shown_once_with_a_copy_button(page, dbsession):
    shown = add(page)
    [(hook_id, secret)] = secrets(dbsession).items()
    box = shown.html.find(id="secret-shown")
    assert f"webhook {hook_id}" in box.get_text()
    assert shown.html.find(id="secret-value").get_text() == secret
    button = shown.html.find(id="secret-copy")
    assert button.name == "button" and button["type"] == "button"
    assert button["data-copy-from"] == "#secret-value"
    assert any(tag.get("src", "").split("?")[0].endswith("/static/copy.js")
               for tag in shown.html.find_all("script"))
    assert shown.headers["Cache-Control"] == "no-store"
    # From then on, only a hint: the last four characters of a server-made secret.
    again = page.get("/admin/webhooks/")
    assert secret not in again.text and again.html.find(id="secret-shown") is None
    assert again.html.select_one(f"#webhook-{hook_id} code.secret").get_text() == \
        "…" + secret[-4:]
    assert "no-store" not in again.headers.get("Cache-Control", "")


def test_an_admins_own_short_secret_shows_no_character(page, dbsession):
    mine = "my-own-secret-0123"  # 18 characters: four of them would be too many
    shown = add(page, secret=mine)
    assert shown.html.find(id="secret-value").get_text() == mine
    [hook_id] = secrets(dbsession)
    again = page.get("/admin/webhooks/")
    assert mine not in again.text and mine[-4:] not in again.text
    assert again.html.select_one(f"#webhook-{hook_id} code.secret").get_text() == "…"


def test_a_secret_made_through_the_api_is_never_in_the_page(page, testapp, admin, app,
                                                            dbsession):
    made = testapp.post_json("/api/v1/webhooks/", {"platform": "vm6",
                                                   "url": "https://x.example/h"},
                             headers=admin.headers, status=201).json
    html = page.get("/admin/webhooks/").text
    assert made["secret"] not in html and 'id="secret-shown"' not in html


def test_rotating_makes_a_new_secret_shown_once(page, dbsession):
    add(page)
    [(hook_id, old)] = secrets(dbsession).items()
    form = page.get("/admin/webhooks/").forms[f"rotate-form-{hook_id}"]
    rotated = form.submit(status=303).follow()
    new = secrets(dbsession)[hook_id]
    assert new != old and len(new) >= 32
    assert rotated.html.find(id="secret-value").get_text() == new
    assert old not in rotated.text
    assert "has a new secret" in rotated.html.select_one(".alert-warning").get_text()
    assert new not in page.get("/admin/webhooks/").text
    # Audited as an edit of the secret field, without the secret.
    dbsession.expire_all()
    event = dbsession.scalars(select(AuditEvent).where(AuditEvent.action == "webhook.edit")
                              ).one()
    assert event.detail == {"webhook": hook_id, "fields": ["secret"]}
    # Deliveries are signed with the new one from now on.
    assert services.signature(new, 1, b"{}") != services.signature(old, 1, b"{}")
    page.post(f"/admin/webhooks/{hook_id + 100}/rotate",
              {"csrf_token": form["csrf_token"].value}, status=404)


def test_another_session_does_not_see_a_secret_made_in_this_one(page, app, admin, web_login,
                                                                 dbsession):
    other = web_login(webtest.TestApp(app, extra_environ={"HTTP_HOST": "localhost"}), admin)
    other.get("/admin/webhooks/")
    add(page)
    [secret] = secrets(dbsession).values()
    assert secret not in other.get("/admin/webhooks/").text


def test_a_long_url_wraps_at_its_parts(page):
    add(page, url=LONG_URL)
    cell = page.get("/admin/webhooks/").html.select_one("#webhook-list td.url")
    assert cell["title"] == LONG_URL and cell.get_text() == LONG_URL
    html = cell.decode_contents()
    for piece in ("//<wbr/>helpdesk", "<wbr/>.example", "v2/<wbr/>hooks", "<wbr/>?tenant",
                  "<wbr/>&amp;token", "<wbr/>=full"):
        assert piece in html, piece
    assert "text-break" not in cell["class"]


def test_the_filters_are_choices_of_what_exists(page, dbsession):
    add(page)
    [hook_id] = secrets(dbsession)
    form = page.get("/admin/webhooks/").forms["delivery-filter-form"]
    options = {name: [value for value, _selected, _text in form[name].options]
               for name in ("webhook", "state", "event")}
    assert options == {
        "webhook": ["", str(hook_id)],
        "state": ["", "pending", "delivered", "failed"],
        "event": ["", "archive.uploaded", "storage.low", "ticket.resolved", "upload.failed"]}
    html = page.get("/admin/webhooks/").html
    assert not html.select("#delivery-filter-form [placeholder]")
    for name in ("f-webhook", "f-state", "f-event"):
        assert html.find("label", attrs={"for": name})
    chosen = page.get(f"/admin/webhooks/?state=failed&event=upload.failed&webhook={hook_id}")
    form = chosen.forms["delivery-filter-form"]
    assert (form["state"].value, form["event"].value, form["webhook"].value) == (
        "failed", "upload.failed", str(hook_id))
    # A value from the address that is no choice stays shown; a bad state is a 400.
    odd = page.get("/admin/webhooks/?event=<b>custom</b>&webhook=999")
    assert odd.forms["delivery-filter-form"]["event"].value == "<b>custom</b>"
    assert odd.forms["delivery-filter-form"]["webhook"].value == "999"
    assert "<b>custom</b>" not in odd.text
    bad = page.get("/admin/webhooks/?state=lost", status=400)
    assert "state must be one of" in bad.html.find(id="webhook-error").get_text()
    assert bad.forms["delivery-filter-form"]["state"].value == "lost"


def test_the_tables_stack_with_a_label_on_every_cell(page, dbsession):
    add(page)
    html = page.get("/admin/webhooks/").html
    stylesheet = page.get("/static/pages.css").text
    assert "table.stack-sm" in stylesheet and "attr(data-label)" in stylesheet
    for table_id in ("webhook-list", "delivery-list"):
        table = html.find(id=table_id)
        assert "stack-sm" in table["class"]
    row = html.select_one("#webhook-list tbody tr")
    assert [td.get("data-label") for td in row.find_all("td")] == [
        "Id", "Platform", "URL", "Secret", "Status", None]
