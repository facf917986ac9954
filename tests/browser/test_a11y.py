"""static/a11y.js in Chromium: a table box that scrolls sideways is a named, focusable
region while it overflows, and leaves the tab order again once it fits."""

import pytest

pytestmark = pytest.mark.slow

# A table box added to the page as a template would write it (CSSOM, which the site's
# Content-Security-Policy allows, sets the table's width).
ADD_TABLE = """
() => {
  const heading = document.createElement('h2');
  heading.textContent = 'Wide things';
  const box = document.createElement('div');
  box.className = 'table-responsive';
  box.id = 'wide-box';
  box.innerHTML = '<table class="table"><tr><td>cell</td></tr></table>';
  document.querySelector('main').append(heading, box);
}
"""


def _box(page):
    return page.evaluate("""() => {
      const box = document.getElementById('wide-box');
      return {tabindex: box.getAttribute('tabindex'), role: box.getAttribute('role'),
              label: box.getAttribute('aria-label')};
    }""")


def _set_table_width(page, width):
    page.evaluate(f"document.querySelector('#wide-box table').style.width = '{width}'")
    # a11y.js looks again on resize, once per frame.
    page.evaluate("""() => new Promise((done) => {
      window.dispatchEvent(new Event('resize'));
      requestAnimationFrame(() => requestAnimationFrame(done));
    })""")


def test_a_table_box_is_a_tab_stop_only_while_it_scrolls(page, factory, sign_in):
    sign_in(page, factory.user("dora"))
    page.evaluate(ADD_TABLE)
    _set_table_width(page, "100%")
    assert _box(page) == {"tabindex": None, "role": None, "label": None}

    _set_table_width(page, "4000px")
    assert _box(page) == {"tabindex": "0", "role": "region",
                          "label": "Wide things (scrolls sideways)"}
    # The arrow keys scroll it once it has the focus.
    page.focus("#wide-box")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.getElementById('wide-box').scrollLeft > 0")

    _set_table_width(page, "100%")
    assert _box(page) == {"tabindex": None, "role": None, "label": None}


def test_a_table_with_a_caption_is_named_by_it(page, factory, sign_in):
    sign_in(page, factory.user("erin"))
    page.evaluate(ADD_TABLE)
    page.evaluate("""() => {
      const caption = document.createElement('caption');
      caption.textContent = 'Archives of ticket 1';
      document.querySelector('#wide-box table').prepend(caption);
    }""")
    _set_table_width(page, "4000px")
    assert _box(page)["label"] == "Archives of ticket 1 (scrolls sideways)"
