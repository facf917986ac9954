"""The every-page check's runner: one page visited in one size and theme, every check run
on it, every problem and figure kept for the one report at the end.

Per visit: the answer's status, no console error of any kind and no uncaught exception,
no horizontal overflow, a full-page screenshot, axe-core (all rules in the light theme,
the colour rules again in the dark one: nothing else depends on the theme), and the
keyboard walk of keyboard.py. Problems are collected, not raised, so that one run lists
them all; ``Audit.report()`` is the text the test fails with and writes to ``var/``.
"""

import collections
import pathlib
import time

from .axe import COLOUR_RULES, FAILING_IMPACTS, IMPACTS, run_axe
from .keyboard import check_keyboard

REPO = pathlib.Path(__file__).resolve().parents[2]
SIZES = {"1280": {"width": 1280, "height": 800}, "390": {"width": 390, "height": 844}}
THEMES = ("light", "dark")

# The document's width against the window's; when wider, the innermost elements that
# reach past the window's right edge (what to fix).
OVERFLOW = """
() => {
  const inner = window.innerWidth;
  const scroll = document.documentElement.scrollWidth;
  const culprits = [];
  if (scroll > inner) {
    const past = [...document.body.querySelectorAll('*')]
      .filter((el) => el.getBoundingClientRect().right > inner + 1);
    for (const el of past) {
      if (!past.some((other) => other !== el && el.contains(other))) {
        culprits.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
          (el.className && typeof el.className === 'string'
            ? '.' + el.className.trim().split(/\\s+/).join('.') : ''));
      }
      if (culprits.length === 3) { break; }
    }
  }
  return {scroll, inner, culprits};
}
"""


class ConsoleWatch:
    """Every console error and uncaught exception of a page, since the last ``take()``."""

    def __init__(self, page):
        self.found = []
        self.expected_status = None
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.found.append(f"uncaught: {error}"))

    def _console(self, message):
        if message.type != "error":
            return
        url = message.location.get("url", "")
        # An error page's own status is what was asked for, not a fault of the page.
        if (self.expected_status and self.expected_status >= 400
                and f"status of {self.expected_status}" in message.text
                and url == self.document_url):
            return
        self.found.append(f"console: {message.text} ({url})")

    def start(self, url, status):
        self.found, self.document_url, self.expected_status = [], url, status

    def take(self):
        found, self.found = self.found, []
        return found


class Audit:
    """The problems and figures of one run over every page."""

    def __init__(self, base_url, axe_source, screenshots):
        self.base_url = base_url
        self.axe_source = axe_source
        self.screenshots = screenshots
        self.problems = []
        self.notes = []  # moderate and minor axe findings: reported, not failing
        self.axe = collections.Counter()          # impact → nodes
        self.axe_rules = collections.Counter()    # (impact, rule) → nodes
        self.axe_pages = collections.defaultdict(set)  # rule → pages where it fails
        self.overflow = collections.defaultdict(list)  # size → pages
        self.console = 0
        self.keyboard = 0
        self.visits = 0
        self.focused = 0
        self.started = time.monotonic()
        self.seconds = collections.Counter()  # phase → time spent in it
        self.clock = time.monotonic()

    def _phase(self, name):
        now = time.monotonic()
        self.seconds[name] += now - self.clock
        self.clock = now

    def problem(self, where, text):
        self.problems.append(f"[{where}] {text}")

    def visit(self, page, watch, spec, url, size, theme):
        """Load ``url`` as ``spec`` says, in this size and theme, and check it."""
        where = f"{size}-{theme} {spec.name}"
        self._phase("other")
        page.set_viewport_size(SIZES[size])
        # Reduced motion: Bootstrap scrolls smoothly otherwise, and a focused element
        # would be measured while the page still scrolls towards it.
        page.emulate_media(color_scheme=theme, reduced_motion="reduce")
        watch.start(self.base_url + url.split("#")[0], spec.status)
        response = spec.open(page, url)
        if response is not None and response.status != spec.status:
            self.problem(where, f"answered {response.status}, expected {spec.status}")
        if spec.ready:
            page.locator(spec.ready).first.wait_for()
        self.visits += 1
        self._phase("load")
        actual_theme = page.evaluate("document.documentElement.getAttribute('data-bs-theme')")
        if spec.themed and actual_theme != theme:
            self.problem(where, f"the page shows the {actual_theme} theme")

        width = page.evaluate(OVERFLOW)
        if width["scroll"] > width["inner"]:
            self.overflow[size].append(spec.name)
            self.problem(where, f"horizontal overflow: {width['scroll']} px wide in "
                                f"{width['inner']} px ({', '.join(width['culprits'])})")
        path = self.screenshots / f"{size}-{theme}" / f"{spec.name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True, animations="disabled")
        if spec.docs and theme == "light":
            # The documentation's pictures: what the window shows, not a page metres long.
            name = spec.docs + ("-phone" if size == "390" else "")
            shot = self.screenshots / "docs" / f"{name}.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            if spec.ready:  # the state waited for is what the picture is about
                page.locator(spec.ready).first.scroll_into_view_if_needed()
            page.screenshot(path=str(shot), animations="disabled")
            page.evaluate("window.scrollTo(0, 0)")
        self._phase("screenshot")

        # Every page in both themes at 1280 px, a few at the phone's width too (light).
        if size == "1280" or (spec.phone_axe and theme == "light"):
            self._axe(page, where, spec, None if theme == "light" else COLOUR_RULES)
        self._phase("axe")
        # The focus ring does not depend on the width: the phone is walked in one theme.
        if size == "1280" or theme == "light":
            problems, checked = check_keyboard(page)
            self.focused += checked
            self.keyboard += len(problems)
            for text in problems:
                self.problem(where, f"keyboard: {text}")
        self._phase("keyboard")
        # Last: whatever the checks themselves made the page log counts too.
        for text in watch.take():
            self.console += 1
            self.problem(where, text)

    def _axe(self, page, where, spec, rules):
        for violation in run_axe(page, self.axe_source, rules):
            impact, rule = violation["impact"], violation["rule"]
            self.axe[impact] += violation["count"]
            self.axe_rules[(impact, rule)] += violation["count"]
            self.axe_pages[rule].add(spec.name)
            text = (f"axe {impact} {rule} ({violation['help']}) x{violation['count']}: "
                    f"{'; '.join(violation['targets'])}")
            if impact in FAILING_IMPACTS:
                self.problem(where, text)
            else:
                self.notes.append(f"[{where}] {text}")

    def report(self):
        """The figures, then every problem."""
        lines = [f"pages visited: {self.visits} (page x size x theme), "
                 f"{time.monotonic() - self.started:.1f} s ("
                 + ", ".join(f"{name} {spent:.1f} s" for name, spent in self.seconds.items())
                 + ")",
                 "axe violations (nodes) by impact: " + ", ".join(
                     f"{impact} {self.axe[impact]}" for impact in IMPACTS)]
        for (impact, rule), count in sorted(self.axe_rules.items(),
                                             key=lambda item: IMPACTS.index(item[0][0])):
            pages = sorted(self.axe_pages[rule])
            lines.append(f"  {impact:8} {rule}: {count} nodes on {len(pages)} pages "
                         f"({', '.join(pages)})")
        for size in SIZES:
            pages = sorted(set(self.overflow[size]))
            lines.append(f"horizontal overflow at {size} px: {len(pages)} pages"
                         + (f" ({', '.join(pages)})" if pages else ""))
        lines.append(f"console errors / uncaught exceptions: {self.console}")
        lines.append(f"keyboard failures: {self.keyboard} "
                     f"({self.focused} focusable elements checked)")
        lines.append(f"problems: {len(self.problems)}")
        return "\n".join(lines + [""] + self.problems + ["", "not failing:"] + self.notes)
