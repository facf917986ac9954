"""axe-core for the every-page check: installed from npm, once, into the gitignored ``var/``,
and run inside a page without loosening its Content-Security-Policy.

The install follows the ``tus_js`` fixture of tests/interop/test_tus_js.py: one directory
per pinned version, made beside its final place and renamed, reused while it exists.
Without ``npm`` the caller is told why (the test skips, or fails with ``REQUIRE_NODE=1``).

The site's CSP (``script-src 'self'``) refuses inline scripts and eval, so axe is neither a
``<script>`` tag nor eval'd by the page: its source is one DevTools ``Runtime.evaluate``
(``page.evaluate`` of the text), which the page's CSP does not govern.
"""

import json
import os
import pathlib
import shutil
import subprocess
import tempfile

AXE_VERSION = "4.10.3"
REPO = pathlib.Path(__file__).resolve().parents[2]
PREFIX = REPO / "var" / "axe" / f"axe-core-{AXE_VERSION}"
IMPACTS = ("critical", "serious", "moderate", "minor")
FAILING_IMPACTS = ("critical", "serious")

# The rules that depend on colours: all axe needs to re-run once the theme changes.
COLOUR_RULES = ["color-contrast", "link-in-text-block"]


class AxeUnavailable(Exception):
    """npm is missing or the install failed; the message says which."""


def _installed_version(prefix):
    try:
        manifest = prefix / "node_modules" / "axe-core" / "package.json"
        return json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def axe_source():
    """The text of axe.min.js of the pinned version, installing it first if needed."""
    if _installed_version(PREFIX) != AXE_VERSION:
        npm = shutil.which("npm")
        if npm is None:
            raise AxeUnavailable("`npm` is not on PATH")
        PREFIX.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(PREFIX, ignore_errors=True)
        staging = pathlib.Path(tempfile.mkdtemp(prefix=".install-", dir=PREFIX.parent))
        try:
            done = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", f"--prefix={staging}",
                 f"axe-core@{AXE_VERSION}"],
                capture_output=True, text=True, timeout=600,
                env={**os.environ, "npm_config_update_notifier": "false"})
            if done.returncode != 0 or _installed_version(staging) != AXE_VERSION:
                raise AxeUnavailable(f"npm install axe-core@{AXE_VERSION} failed:\n"
                                     f"{done.stdout}{done.stderr}")
            try:
                staging.rename(PREFIX)
            except OSError:  # another session installed it meanwhile
                if _installed_version(PREFIX) != AXE_VERSION:
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return (PREFIX / "node_modules" / "axe-core" / "axe.min.js").read_text()


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
