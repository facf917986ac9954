"""The API explorer (/api/v1/docs) in Chromium: Swagger UI renders the document under the
site's Content-Security-Policy, and "Try it out" reaches the API from inside the page."""

import pytest

pytestmark = pytest.mark.slow

# Records every Content-Security-Policy refusal, whether or not the console reports it.
WATCH_CSP = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', (event) => {
  window.__violations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def try_it_out(operation, fill=None):
    """Try it out, ``fill(operation)`` its fields, Execute: the answer's status as the page
    shows it."""
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    if fill is not None:
        fill(operation)
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for()
    return status.text_content().strip()


def test_explorer_lists_the_operations_and_tries_them(page, staff, factory, screenshot):
    console_errors = []
    # The site has no favicon: the browser's request for one is no error of this page.
    page.on("console", lambda message: message.type == "error"
            and not message.location["url"].endswith("/favicon.ico")
            and console_errors.append(f"{message.text} {message.location['url']}"))
    page.add_init_script(WATCH_CSP)
    # A link that names another document or configuration (as a phishing mail would) is
    # ignored: the page shows this origin's document and fetches nothing else.
    page.goto("/api/v1/docs?url=https://evil.example/api.json"
              "&configUrl=https://evil.example/config.json")

    # The document is rendered: a known operation of the ticket list is there.
    tickets = page.locator("#operations-default-listTickets")
    tickets.wait_for()
    assert "/api/v1/tickets/" in tickets.text_content()
    assert page.locator(".opblock").count() > 40
    screenshot(page, "api-docs", full_page=False)
    # "Try it out" on the health check: the answer comes back into the page.
    health = page.locator("#operations-default-getHealth")
    assert try_it_out(health) == "200"
    assert '"status"' in health.locator(".live-responses-table .microlight").first.text_content()

    # Authorize offers the bearer token and the Upload-Token header; with a bearer token
    # the staff-only ticket list answers.
    page.click("button.authorize")
    dialog = page.locator(".dialog-ux")
    dialog.get_by_text("bearer (http, Bearer)").wait_for()
    assert "Upload-Token" in dialog.text_content()
    bearer = dialog.locator(".auth-container").filter(has_text="bearer (http, Bearer)")
    bearer.locator("input").fill(staff.headers["Authorization"].removeprefix("Bearer "))
    bearer.locator("button[type=submit]").click()
    dialog.locator("button.close-modal").click()
    assert try_it_out(tickets) == "200"
    assert "Authorization: Bearer" in tickets.locator(".curl-command").text_content()

    # An upload with the ticket's Upload-Token, as a customer's script would send it.
    ticket = factory.ticket(factory.platform("vm6"), 4711, attempts=1)

    def token_and_file(upload):
        upload.locator("tr[data-param-name='Upload-Token'] input").fill(ticket.token)
        upload.locator("input[type=file]").set_input_files(
            {"name": "logs.txt", "mimeType": "text/plain", "buffer": b"a log line\n"})

    assert try_it_out(page.locator("#operations-default-uploadArchive"), token_and_file) == "201"

    assert page.evaluate("window.__violations") == []
    assert console_errors == []
    # The token is kept nowhere beyond the tab's memory, and never in the address.
    assert page.evaluate("Object.keys(localStorage)") == []
    assert page.evaluate("Object.keys(sessionStorage)") == []
    assert page.context.cookies() == []
    assert staff.headers["Authorization"][7:] not in page.url
