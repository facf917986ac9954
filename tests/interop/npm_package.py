"""An npm package the tests run (tus-js-client, axe-core), installed once into the gitignored
``var/``: one directory per pinned version, made beside its final place and renamed, so an
interrupted install is never mistaken for a finished one; reused while it exists."""

import json
import os
import pathlib
import shutil
import subprocess
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[2]


class NpmUnavailable(Exception):
    """npm is missing or the install failed; the message says which."""


def installed_version(prefix, name):
    manifest = prefix / "node_modules" / name / "package.json"
    try:
        return json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def npm_package(name, version, folder):
    """The directory holding ``node_modules/<name>`` at ``version``, under
    ``var/<folder>/``; installed first if it is not there yet."""
    prefix = REPO / "var" / folder / f"{name}-{version}"
    if installed_version(prefix, name) == version:
        return prefix
    npm = shutil.which("npm")
    if npm is None:
        raise NpmUnavailable("`npm` is not on PATH")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(prefix, ignore_errors=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=".install-", dir=prefix.parent))
    try:
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", f"--prefix={staging}",
             f"{name}@{version}"],
            capture_output=True, text=True, timeout=600,
            env={**os.environ, "npm_config_update_notifier": "false"})
        if done.returncode != 0 or installed_version(staging, name) != version:
            raise NpmUnavailable(f"npm install {name}@{version} failed:\n"
                                 f"{done.stdout}{done.stderr}")
        try:
            staging.rename(prefix)
        except OSError:  # another session installed it meanwhile
            if installed_version(prefix, name) != version:
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return prefix
