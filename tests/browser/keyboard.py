"""Keyboard use of a page: Tab through every focusable element and check what each shows.

The page lists its focusable elements first (visible, enabled, in the tab order; one radio
per group) and notes each one's outline and box-shadow while unfocused. Then the real Tab
key is pressed, as many times as there are elements and a few more: a listener in the
page measures the focused element just before each following Tab (by then the browser
has scrolled it into view), so the presses need no round trip each. An element passes
when it received focus, was in the viewport with a size, and its outline or box-shadow
differed visibly from its unfocused state.
"""

# Installed once per page load: the expected elements and their unfocused styles, and the
# listener that records the focused element before each Tab.
PREPARE = """
() => {
  const selector = 'a[href], area[href], button, input, select, textarea, iframe, summary, ' +
    '[tabindex], [contenteditable=""], [contenteditable="true"], audio[controls], ' +
    'video[controls]';
  const radios = new Set();
  const visible = (el) => {
    // checkVisibility: also false inside a closed <details> (content-visibility: hidden).
    if (!el.getClientRects().length || !el.checkVisibility({visibilityProperty: true})) {
      return false;
    }
    const style = getComputedStyle(el);
    return style.visibility !== 'hidden' && style.display !== 'none';
  };
  const expected = [...document.querySelectorAll(selector)].filter((el) => {
    if (el.tabIndex < 0 || el.disabled || el.closest('[inert]')) { return false; }
    if (el.type === 'hidden' || !visible(el)) { return false; }
    if (el.type === 'radio' && el.name) {
      const group = el.form ? el.form.elements[el.name] : null;
      const checked = group && [...group].find((item) => item.checked);
      if (radios.has(el.name) || (checked && checked !== el)) { return false; }
      radios.add(el.name);
    }
    return true;
  });
  const ring = (el) => {
    const style = getComputedStyle(el);
    return {outlineStyle: style.outlineStyle, outlineWidth: parseFloat(style.outlineWidth),
            outlineColor: style.outlineColor, boxShadow: style.boxShadow};
  };
  const describe = (el) => {
    const text = (el.getAttribute('aria-label') || el.textContent || el.value || '')
      .replace(/\\s+/g, ' ').trim().slice(0, 40);
    return el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
      (el.name ? `[name=${el.name}]` : '') + (text ? ` "${text}"` : '');
  };
  const seen = [];
  const start = document.createElement('span');
  const record = () => {
    const el = document.activeElement;
    if (!el || el === start || el === document.body || el === document.documentElement) {
      return;
    }
    const rect = el.getBoundingClientRect();
    const now = ring(el);
    const before = base.get(el);
    const outline = now.outlineStyle !== 'none' && now.outlineWidth > 0 &&
      now.outlineColor !== 'rgba(0, 0, 0, 0)';
    const shadow = now.boxShadow !== 'none';
    const changed = !before || now.outlineStyle !== before.outlineStyle ||
      now.outlineWidth !== before.outlineWidth || now.outlineColor !== before.outlineColor ||
      now.boxShadow !== before.boxShadow;
    seen.push({
      index: expected.indexOf(el), what: describe(el),
      sized: rect.width > 0 && rect.height > 0,
      inViewport: rect.bottom > 0 && rect.right > 0 && rect.top < window.innerHeight &&
        rect.left < window.innerWidth,
      ring: changed && (outline || (shadow && (!before || before.boxShadow !== now.boxShadow))),
      style: `outline ${now.outlineStyle} ${now.outlineWidth}px ${now.outlineColor}; ` +
        `box-shadow ${now.boxShadow}`,
    });
  };
  window.addEventListener('keydown', (event) => {
    if (event.key === 'Tab') { record(); }
  }, true);
  window.__keyboard = {record, seen, expected: expected.map(describe)};
  // Tab starts from the top of the document, not from a field focused on load: a focused
  // spot first in <body> (not itself in the tab order) is where the walk begins.
  start.tabIndex = -1;
  document.body.prepend(start);
  start.focus({preventScroll: true});
  // Measured unfocused: after the focus left a field that had it on load.
  const base = new Map(expected.map((el) => [el, ring(el)]));
  return expected.length;
}
"""

COLLECT = """
() => { window.__keyboard.record(); return window.__keyboard; }
"""

# Elements focused that are not in the expected list (e.g. a scrollable region Chromium
# makes focusable) still need a visible ring; a few spare presses reach past the end.
SPARE_PRESSES = 3
# Past this many, a page is checked on its first elements only (the API explorer's
# operations are one kind of control repeated; their rings are the same).
MAX_PRESSES = 120


def check_keyboard(page):
    """Tab through the page; returns (problems, number of elements checked)."""
    count = page.evaluate(PREPARE)
    presses = min(count + SPARE_PRESSES, MAX_PRESSES)
    for _ in range(presses):
        page.keyboard.press("Tab")
    state = page.evaluate(COLLECT)
    seen, expected = state["seen"], state["expected"]
    problems = []
    first = seen[0]["what"] if seen else "nothing"
    if not first.startswith('a#skip-link "Skip to content"'):
        problems.append(f"the first focusable element is {first}, not the skip link")
    else:
        # Followed, it puts the keyboard at the start of the page's own content.
        page.focus("#skip-link")
        page.keyboard.press("Enter")
        landed = page.evaluate("() => document.activeElement.id")
        if landed != "main":
            problems.append(f"the skip link leads the focus to #{landed}, not #main")
    reached = {item["index"] for item in seen}
    checked = expected[:presses - SPARE_PRESSES] if count > presses - SPARE_PRESSES \
        else expected
    for index, what in enumerate(checked):
        if index not in reached:
            problems.append(f"never focused by Tab: {what}")
    reported = set()
    for item in seen:
        if item["what"] in reported:
            continue
        faults = [name for name, ok in (("no size", item["sized"]),
                                        ("outside the viewport", item["inViewport"]),
                                        ("no visible focus ring", item["ring"])) if not ok]
        if faults:
            reported.add(item["what"])
            problems.append(f"{item['what']}: {', '.join(faults)} ({item['style']})")
    return problems, len(checked)
