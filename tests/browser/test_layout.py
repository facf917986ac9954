"""The staff pages in Chromium at laptop width (1280 × 800), at a small laptop (1024 × 768),
a tablet (820 px) and on a phone (390 × 844): nothing wider than the window and no table
scrolling inside its box, navigation labels on one line, tables as cards on the phone,
long names and hashes shortened with a working copy button.

The pages hold what made them break before: an archive with a long name, a member with a
long path, a few dozen audit events with their user agents.
"""

import io
import tarfile
import time

import pytest

pytestmark = pytest.mark.slow

LAPTOP = {"width": 1280, "height": 800}
SMALL_LAPTOP = {"width": 1024, "height": 768}
TABLET = {"width": 820, "height": 1180}
PHONE = {"width": 390, "height": 844}
LONG_ARCHIVE = ("customer-prod-cluster-node03_2026-12-01_full-diagnostics-bundle-"
                "with-kernel-crashdump.tar.gz")
LONG_MEMBER = ("var/log/application-services-long-directory-name/"
               "service-instance-0001_rotated_2026-12-01T10-00-00.log")

# Whether the page is wider than the window, and its height.
MEASURE = ("[document.documentElement.scrollWidth, window.innerWidth,"
           " document.documentElement.scrollHeight]")
# How far each table scrolls inside its own box (the page may not, nor may they).
TABLE_SCROLL = ("[...document.querySelectorAll('.table-responsive')]"
                ".map((box) => box.scrollWidth - box.clientWidth)")
# Each visible navigation label's height against one line of its text.
WRAPPED_LABELS = """() => [...document.querySelectorAll('nav.navbar .nav-link')]
  .filter((link) => link.offsetParent !== null)
  .filter((link) => {
    const style = getComputedStyle(link);
    const inner = link.clientHeight - parseFloat(style.paddingTop)
      - parseFloat(style.paddingBottom);
    return inner > parseFloat(style.lineHeight) * 1.5;
  }).map((link) => link.textContent.trim())"""
# Rows of a table drawn as cards: a row is a grid (or flex) box with a border of its own.
CARD_ROWS = """(selector) => [...document.querySelectorAll(selector + ' > tbody > tr')]
  .filter((row) => !row.classList.contains('card-heading'))
  .map((row) => [getComputedStyle(row).display, getComputedStyle(row).borderTopStyle])"""


def tarball():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in {LONG_MEMBER: b"hello\nerror here\n", "var/log/syslog": b"a\n"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = time.time()
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def world(page, factory, sign_in):
    """An admin signed in, a ticket with two archives, a few dozen audit events."""
    user = factory.user("carol", admin=True)
    ticket = factory.ticket(factory.platform("vm6"), 4800, user=user,
                            note="Crash of the storage node after the upgrade")
    ids = []
    for name in (LONG_ARCHIVE, "node3.tar.gz"):
        sent = page.request.post("/api/v1/archives/", headers={"Upload-Token": ticket.token},
                                 multipart={"file": {"name": name, "buffer": tarball(),
                                                     "mimeType": "application/gzip"}})
        assert sent.status == 201, sent.text()
        ids.append(sent.json()["id"])
    sign_in(page, user)
    page.goto(f"/archives/{ids[0]}/members")  # builds the index, reloading until it is
    page.locator("#members").wait_for()
    for number in range(10):
        assert page.request.get(f"/archives/{ids[0]}/download").ok
        assert page.request.get(f"/archives/{ids[0]}/search?q=error{number}").ok
        assert page.request.get(f"/platforms/vm6/tickets/4800/search?q=x{number}&regex=1").ok
    return {"archive": ids[0], "ticket": "/platforms/vm6/tickets/4800/"}


def pages(world):
    return {"tickets": "/tickets/", "ticket": world["ticket"],
            "members": f"/archives/{world['archive']}/members", "audit": "/admin/audit",
            "platforms": "/platforms/"}


def measure(page):
    width, window, height = page.evaluate(MEASURE)
    return width <= window, height


def test_no_overflow_and_one_line_labels_at_laptop_widths(page, world):
    for viewport in (LAPTOP, SMALL_LAPTOP, TABLET):
        page.set_viewport_size(viewport)
        for name, path in pages(world).items():
            page.goto(path)
            fits, _ = measure(page)
            assert fits, f"{name} is wider than {viewport['width']} px"
            assert not any(page.evaluate(TABLE_SCROLL)), f"{name} at {viewport['width']} px"
            assert page.evaluate(WRAPPED_LABELS) == [], f"{name} at {viewport['width']} px"
            # Tables are tables at this width, not cards.
            for table in page.locator("table.table-cards").all():
                assert table.evaluate("t => getComputedStyle(t).display") == "table"
    # Below xl the menu folds behind the toggler; opened, its labels are on one line too.
    page.set_viewport_size(SMALL_LAPTOP)
    page.goto("/tickets/")
    assert not page.locator("#nav-tickets").is_visible()
    page.click(".navbar-toggler")
    page.locator("#nav-webhooks").wait_for()
    assert page.evaluate(WRAPPED_LABELS) == [] and measure(page)[0]
    page.set_viewport_size(LAPTOP)
    page.goto("/admin/audit")
    current = page.locator("nav.navbar .nav-link.active")
    assert current.count() == 1 and current.get_attribute("aria-current") == "page"
    assert current.text_content() == "Audit log"


def test_phone_cards_and_no_overflow(page, world):
    page.set_viewport_size(PHONE)
    heights = {}
    for name, path in pages(world).items():
        page.goto(path)
        fits, heights[name] = measure(page)
        assert fits, f"{name} is wider than the phone"
        for table in page.locator("table.table-cards").all():
            table_id = table.get_attribute("id")
            if not table.is_visible():
                continue  # the ticket's older history, folded away
            rows = page.evaluate(CARD_ROWS, f"#{table_id}")
            assert rows and all(display in ("grid", "flex") and border == "solid"
                                for display, border in rows), (name, table_id, rows)
            # Nothing inside a card sticks out of it.
            assert table.evaluate("t => t.scrollWidth <= t.clientWidth"), (name, table_id)
    # The member with the long path: its name and Download button within the window.
    page.goto(pages(world)["members"])
    member = page.locator("#members tr.tree-file", has_text="service-instance")
    download = member.locator(".download-member").bounding_box()
    assert download["x"] + download["width"] <= PHONE["width"]
    name = member.locator(".tree-name").bounding_box()
    assert name["width"] > PHONE["width"] / 2  # not squeezed to a letter a line
    # The audit page's few dozen events stay short (each a compact card).
    assert heights["audit"] < 5000, heights


def test_long_values_are_shortened_and_the_copy_button_copies(page, world, live_server):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
    for viewport in (LAPTOP, PHONE):
        page.set_viewport_size(viewport)
        page.goto(world["ticket"])
        archive = page.locator(f"#archive-{world['archive']}")
        sha256 = archive.locator(".sha256").text_content()
        assert len(sha256) == 64
        value = archive.locator(".long-value", has=page.locator(".sha256"))
        assert value.get_attribute("title") == sha256
        text = value.locator(".long-value-text")
        # Shortened: the element shows less than its whole text.
        assert text.evaluate("e => e.scrollWidth > e.clientWidth") or \
            text.locator(".long-value-head").evaluate("e => e.scrollWidth > e.clientWidth")
        button = value.locator("button.copy-button")
        button.click()
        page.locator(f"#archive-{world['archive']} .copy-button", has_text="Copied").wait_for()
        assert page.evaluate("navigator.clipboard.readText()") == sha256
        # The long archive name wraps only after separators: each line ends with one.
        lines = archive.locator(".archive-name .file-name").evaluate("""(name) => {
          const range = document.createRange(), ends = [];
          let last = null;
          for (const node of name.childNodes) {
            if (node.nodeType !== Node.TEXT_NODE) continue;
            for (let i = 0; i < node.length; i++) {
              range.setStart(node, i); range.setEnd(node, i + 1);
              const top = Math.round(range.getBoundingClientRect().top);
              if (last !== null && top > last.top) ends.push(last.char);
              last = {top, char: node.data[i]};
            }
          }
          return ends;
        }""")
        assert all(char in "/._-" for char in lines), lines
