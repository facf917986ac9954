"""The one low-space rule: a threshold given as bytes or as a share of the total, "full"
at the reserve, "off" at 0 — and the older STORAGE_WARN_PERCENT as its alias."""

import pytest

import collector.models  # noqa: F401  (every model: the mappers configure)
from collector import settings as s
from collector.archives.storage import alerts

GIB = 1024 ** 3


def usage(free, total=100 * GIB):
    return {"total": total, "used": total - free, "free": free}


def rule(alert_free, reserve=GIB):
    return {"storage.alert_free": alert_free, "storage.reserve": reserve}


@pytest.mark.parametrize("alert_free,free,expected", [
    (2 * GIB, 3 * GIB, "ok"), (2 * GIB, 2 * GIB, "ok"), (2 * GIB, 2 * GIB - 1, "low"),
    (s.Share(10), 11 * GIB, "ok"), (s.Share(10), 9 * GIB, "low"),
    (2 * GIB, GIB, "full"), (s.Share(10), GIB // 2, "full"),
    (0, 2 * GIB, "ok"), (0, GIB, "full"),
])
def test_level(alert_free, free, expected):
    assert alerts.level(usage(free), rule(alert_free)) == expected
    assert alerts.is_low(usage(free), rule(alert_free)) == (
        bool(alert_free) and expected != "ok")


def test_threshold_of_a_share_follows_the_total():
    assert alerts.low_threshold(rule(s.Share(10)), 100 * GIB) == 10 * GIB
    assert alerts.low_threshold(rule(s.Share(10)), 0) == 0
    assert alerts.low_threshold(rule(5 * GIB), 1) == 5 * GIB
    assert alerts.low_threshold(rule(0), 100 * GIB) == 0


def load(ini=None, env=None):
    return s.load({"debug": "true", **(ini or {})}, env or {})["storage.alert_free"]


def test_settings_read_a_size_or_a_share():
    assert load() == s.Share(10) and isinstance(load(), s.Share)
    assert load({"storage.alert_free": "2GiB"}) == 2 * GIB
    assert load(env={"STORAGE_ALERT_FREE": " 15% "}) == s.Share(15)
    assert load(env={"STORAGE_ALERT_FREE": "0"}) == 0
    for bad in ("101%", "-1%", "lots", "%"):
        with pytest.raises(s.SettingsError, match="STORAGE_ALERT_FREE"):
            load(env={"STORAGE_ALERT_FREE": bad})


def test_warn_percent_is_an_alias_below_alert_free():
    # Alone, anywhere: the disk use at which storage is low.
    assert load({"storage.warn_percent": "80"}) == s.Share(20)
    assert load(env={"STORAGE_WARN_PERCENT": "95"}) == s.Share(5)
    # The environment overrides the ini, whichever name either uses.
    assert load({"storage.alert_free": "2GiB"}, {"STORAGE_WARN_PERCENT": "80"}) == s.Share(20)
    assert load({"storage.warn_percent": "80"}, {"STORAGE_ALERT_FREE": "1GiB"}) == GIB
    # At the same level the rule's own name wins.
    assert load({"storage.alert_free": "2GiB", "storage.warn_percent": "80"}) == 2 * GIB
    assert load(env={"STORAGE_ALERT_FREE": "3GiB", "STORAGE_WARN_PERCENT": "80"}) == 3 * GIB
    with pytest.raises(s.SettingsError, match="STORAGE_WARN_PERCENT"):
        load(env={"STORAGE_WARN_PERCENT": "120"})
