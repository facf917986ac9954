"""axe-core for the every-page check: installed from npm, once, into the gitignored ``var/``,
and run inside a page without loosening its Content-Security-Policy.

Installed as tus-js-client is (tests/interop/npm_package.py). Without ``npm`` the caller is
told why (the test skips, or fails with ``REQUIRE_NODE=1``).

The site's CSP (``script-src 'self'``) refuses inline scripts and eval, so axe is neither a
``<script>`` tag nor eval'd by the page: its source is one DevTools ``Runtime.evaluate``
(``page.evaluate`` of the text), which the page's CSP does not govern.
"""

from npm_package import NpmUnavailable, npm_package

AXE_VERSION = "4.10.3"
IMPACTS = ("critical", "serious", "moderate", "minor")
FAILING_IMPACTS = ("critical", "serious")

# The rules that depend on colours: all axe needs to re-run once the theme changes.
COLOUR_RULES = ["color-contrast", "link-in-text-block"]


# Raised when npm is missing or the install failed; the message says which.
AxeUnavailable = NpmUnavailable


def axe_source():
    """The text of axe.min.js of the pinned version, installing it first if needed."""
    prefix = npm_package("axe-core", AXE_VERSION, "axe")
    return (prefix / "node_modules" / "axe-core" / "axe.min.js").read_text()


# Runs axe on the document; for each violation its rule, impact and the nodes' selectors.
RUN_AXE = """
async (rules) => {
  const options = {resultTypes: ['violations']};
  if (rules) { options.runOnly = {type: 'rule', values: rules}; }
  const result = await window.axe.run(document, options);
  return result.violations.map((violation) => ({
    rule: violation.id, impact: violation.impact, help: violation.help,
    targets: violation.nodes.slice(0, 8).map((node) => node.target.join(' ')),
    count: violation.nodes.length}));
}
"""


def run_axe(page, source, rules=None):
    """The violations on the page as it is now (axe injected if the page has none yet);
    ``rules``: only these rules (None: axe's default set)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(source)
    return page.evaluate(RUN_AXE, rules)
