"""Looking inside archives through API v1: members, member bytes (Range), lines, search of
an archive and of a whole ticket — every format, the awkward cases, the limits and the ACL."""

import gzip
import threading

import pytest
import sample_archives as samples
from s3server import on_both_storages
from sqlalchemy import select, update

from collector.archives.inspect import store
from collector.archives.inspect.models import ArchiveIndex, ArchiveMember
from collector.errors import ServiceUnavailable

# Commits: the member index is built by a thread of the app's own.
pytestmark = pytest.mark.commits

FORMATS = {
    "logs.tar": samples.tar(),
    "logs.tar.gz": samples.tar(compression="gz"),
    "logs.tgz": samples.tar(compression="gz"),
    "logs.tar.bz2": samples.tar(compression="bz2"),
    "logs.tar.xz": samples.tar(compression="xz"),
    "logs.tar.zst": samples.tar(compression="zst"),
    "logs.zip": samples.zip_archive(),
}
SINGLE = {name: samples.compress(samples.APP_LOG, name.rsplit(".", 1)[1])
          for name in ("app.log.gz", "app.log.bz2", "app.log.xz", "app.log.zst")}


@pytest.fixture
def ticket(factory):
    return factory.ticket(factory.platform("vm6"), 5005, attempts=50)


@pytest.fixture
def upload(testapp, ticket, admin):
    """Upload an archive; unless ``index=False``, have its member index built."""

    def upload(name, data, to=ticket, index=True):
        res = testapp.post("/api/v1/archives/", upload_files=[("file", name, data)],
                           headers={"Upload-Token": to.token}, status=201)
        if index:
            build_index(testapp, res.json["id"], admin.headers)
        return res.json["id"]

    return upload


def build_index(testapp, archive_id, headers):
    """The first look starts the build (503 meanwhile); wait for it to end."""
    first = testapp.get(api(archive_id, "members/"), headers=headers, status=(200, 422, 503))
    if first.status_int == 503:
        assert first.headers["Retry-After"] == "2"
        store.wait_for_builders()


def api(archive_id, rest=""):
    return f"/api/v1/archives/{archive_id}/{rest}"


@on_both_storages
@pytest.mark.parametrize("name", sorted(FORMATS))
def test_members_of_every_archive_format(testapp, staff, upload, name):
    archive_id = upload(name, FORMATS[name])
    res = testapp.get(api(archive_id, "members/"), headers=staff.headers)
    expected_format = {"logs.tgz": "tar.gz"}.get(name, name.removeprefix("logs."))
    assert res.headers["X-Archive-Format"] == expected_format
    by_path = {m["path"]: m for m in res.json}
    assert by_path["var/log/syslog"]["size"] == len(samples.SYSLOG)
    assert by_path["var/log/syslog"]["kind"] == "text"
    assert by_path["var/log/syslog.2.gz"]["compression"] == "gz"
    assert by_path["core.bin"]["kind"] == "binary"
    assert by_path["core.bin"]["lines"] is None
    if name != "logs.zip":
        assert by_path["var/log/current"]["kind"] == "link"
        assert by_path["var/log/current"]["target"] == "../../etc/shadow"
    assert res.headers["X-Total-Count"] == str(len(res.json))
    # The member's bytes, as stored (the nested .gz stays compressed).
    raw = testapp.get(by_path["var/log/syslog.2.gz"]["download"], headers=staff.headers)
    assert raw.body == samples.MEMBERS["var/log/syslog.2.gz"]
    assert raw.content_type == "application/octet-stream"
    assert "syslog.2.gz" in raw.headers["Content-Disposition"]
    # Its lines, decompressed.
    lines = testapp.get(by_path["var/log/syslog.2.gz"]["lines"] + "?tail=1&count=2",
                        headers=staff.headers).json
    assert [line["text"] for line in lines["lines"]] == ["old rotated line 300",
                                                         "NEEDLE in rotated"]
    assert lines["total_lines"] == 301


@on_both_storages
@pytest.mark.parametrize("name", sorted(SINGLE))
def test_single_compressed_file_is_one_member(testapp, staff, upload, name):
    archive_id = upload(name, SINGLE[name])
    [member] = testapp.get(api(archive_id, "members/"), headers=staff.headers).json
    assert member["path"] == "app.log"
    assert member["size"] == len(samples.APP_LOG)
    raw = testapp.get(member["download"], headers=staff.headers)
    assert raw.body == samples.APP_LOG
    found = testapp.get(api(archive_id, "search?q=refused"), headers=staff.headers).json
    assert found["members"][0]["hits"][0]["line"] == 2


@on_both_storages
def test_plain_file_is_its_own_member(testapp, staff, upload):
    archive_id = upload("app.log", samples.APP_LOG)
    res = testapp.get(api(archive_id, "members/"), headers=staff.headers)
    assert res.headers["X-Archive-Format"] == "plain"
    [member] = res.json
    assert (member["path"], member["kind"]) == ("app.log", "text")
    ranged = testapp.get(member["download"], headers={**staff.headers, "Range": "bytes=5-9"},
                         status=206)
    assert ranged.body == samples.APP_LOG[5:10]
    assert ranged.headers["Content-Range"] == f"bytes 5-9/{len(samples.APP_LOG)}"


@on_both_storages
def test_member_range_inside_a_tar_gz(testapp, staff, upload):
    archive_id = upload("logs.tar.gz", FORMATS["logs.tar.gz"])
    url = api(archive_id, "members/var/log/syslog")
    ranged = testapp.get(url, headers={**staff.headers, "Range": "bytes=100-"}, status=206)
    assert ranged.body == samples.SYSLOG[100:]
    testapp.get(url, headers={**staff.headers, "Range": "bytes=999999-"}, status=416)
    head = testapp.head(url, headers=staff.headers)
    assert head.headers["Content-Length"] == str(len(samples.SYSLOG))


@on_both_storages
def test_lines_pages_and_long_lines(testapp, staff, upload):
    long_line = b"x" * (2 * 1024 * 1024)
    data = b"first\n" + long_line + b"\nthird caf\xe9\n"
    archive_id = upload("logs.tar.gz", samples.tar({"big.log": data}, "gz", links=False))
    url = api(archive_id, "lines/big.log")
    page = testapp.get(url + "?count=2", headers=staff.headers).json
    assert [line["line"] for line in page["lines"]] == [1, 2]
    assert page["more"] is True and page["total_lines"] is None
    assert page["lines"][1]["cut"] is True
    assert page["lines"][1]["length"] == len(long_line)
    assert len(page["lines"][1]["text"]) == 4096
    last = testapp.get(url + "?start=3", headers=staff.headers).json
    assert last["lines"] == [{"line": 3, "text": "third caf\\xe9", "length": 10,
                              "cut": False}]
    assert last["total_lines"] == 3 and last["more"] is False
    beyond = testapp.get(url + "?start=10", headers=staff.headers).json
    assert beyond["lines"] == []
    for bad in ("count=0", "count=1001", "start=0", "start=x", "tail=maybe"):
        res = testapp.get(f"{url}?{bad}", headers=staff.headers, status=400)
        assert res.json["detail"]


def test_jump_to_a_line_of_a_big_member(testapp, staff, upload):
    archive_id = upload("logs.tar", samples.tar(links=False))
    page = testapp.get(api(archive_id, "lines/var/log/syslog?start=998&count=10"),
                       headers=staff.headers).json
    assert [line["line"] for line in page["lines"]] == [998, 999, 1000]
    assert page["lines"][-1]["text"].endswith("kernel: line 1000 of syslog")
    assert page["more"] is False and page["total_lines"] == 1000


def test_binary_members_and_links_are_refused_as_text(testapp, staff, upload):
    archive_id = upload("logs.tar.gz", FORMATS["logs.tar.gz"])
    res = testapp.get(api(archive_id, "lines/core.bin"), headers=staff.headers, status=422)
    assert "binary" in res.json["detail"]
    res = testapp.get(api(archive_id, "lines/var/log/current"), headers=staff.headers,
                      status=422)
    assert "link" in res.json["detail"]
    # The binary member still downloads.
    assert testapp.get(api(archive_id, "members/core.bin"),
                       headers=staff.headers).body == samples.BINARY
    testapp.get(api(archive_id, "members/no/such"), headers=staff.headers, status=404)


def test_zip_with_dotdot_names_is_listed_safely(testapp, staff, upload, data_dir):
    data = samples.zip_archive({"../../evil.log": b"evil line\n", "/abs/x.log": b"abs\n",
                                "ok/../../x.log": b"dup\n", "x.log": b"plain\n"})
    archive_id = upload("evil.zip", data)
    members = testapp.get(api(archive_id, "members/"), headers=staff.headers).json
    paths = [m["path"] for m in members]
    assert paths == ["evil.log", "abs/x.log", "ok/x.log", "x.log"]
    assert members[0]["name"] == "../../evil.log"
    assert testapp.get(api(archive_id, "members/evil.log"),
                       headers=staff.headers).body == b"evil line\n"
    # Nothing was written anywhere by a member's name.
    assert not any(p.name in {"evil.log", "x.log"} for p in data_dir.rglob("*"))


@on_both_storages
def test_truncated_tar_gz_lists_what_it_can(testapp, staff, upload):
    archive_id = upload("cut.tar.gz", samples.truncated_tar_gz())
    res = testapp.get(api(archive_id, "members/"), headers=staff.headers)
    assert "truncated" in res.headers["X-Index-Incomplete"]
    assert 1 <= len(res.json) < 4
    first = testapp.get(api(archive_id, "lines/logs/0.log?count=1"), headers=staff.headers)
    assert first.json["lines"][0]["text"] == "file 0 line 0"
    found = testapp.get(api(archive_id, "search?q=line 5"), headers=staff.headers).json
    assert any("truncated" in error["detail"] for error in found["errors"])
    # The rest of the app keeps working.
    testapp.get("/api/v1/check/health/", status=200)


def test_decompression_bomb_is_refused(testapp, staff, upload):
    archive_id = upload("zeros.gz", samples.bomb())
    res = testapp.get(api(archive_id, "members/"), headers=staff.headers, status=422)
    assert "decompression bomb" in res.json["detail"]
    res = testapp.get(api(archive_id, "search?q=x"), headers=staff.headers, status=422)
    assert "decompression bomb" in res.json["detail"]


def test_index_limits_stop_and_say_so(testapp, staff, upload, app):
    app.registry.settings["inspect.max_members"] = 2
    archive_id = upload("logs.tar", FORMATS["logs.tar"])
    res = testapp.get(api(archive_id, "members/"), headers=staff.headers)
    assert len(res.json) == 2
    assert "first 2 members" in res.headers["X-Index-Incomplete"]


def test_read_limit_bounds_a_nested_bomb(testapp, staff, upload, app):
    app.registry.settings["inspect.max_read_bytes"] = 1024 * 1024
    nested = {"big.log.gz": gzip.compress(b"y\n" * (4 * 1024 * 1024))}
    archive_id = upload("nest.tar", samples.tar(nested, links=False))
    res = testapp.get(api(archive_id, "lines/big.log.gz?tail=1"), headers=staff.headers,
                      status=422)
    assert "limit" in res.json["detail"]


@on_both_storages
def test_search_an_archive(testapp, staff, upload):
    archive_id = upload("logs.tar.gz", FORMATS["logs.tar.gz"])
    found = testapp.get(api(archive_id, "search?q=NEEDLE"), headers=staff.headers).json
    [member] = found["members"]
    assert member["path"] == "var/log/syslog.2.gz"
    assert member["hits"][0]["line"] == 301
    assert found["truncated"] is False and found["reason"] is None
    assert found["bytes_scanned"] > len(samples.SYSLOG)

    regex = testapp.get(api(archive_id, "search"), {"q": r"line\s+50[0-2]\b", "regex": "true",
                                                    "context": "1"},
                        headers=staff.headers).json
    [syslog] = [m for m in regex["members"] if m["path"] == "var/log/syslog"]
    assert [hit["line"] for hit in syslog["hits"]] == [500, 501, 502]
    assert syslog["hits"][0]["before"][0]["line"] == 499
    assert syslog["hits"][2]["after"][0]["line"] == 503

    markup = testapp.get(api(archive_id, "search?q=%3Cscript%3E&member=var/log/app.log"),
                         headers=staff.headers).json
    hit = markup["members"][0]["hits"][0]
    assert hit["text"].startswith("<script>") and hit["match"] == [0, 8]

    latin = testapp.get(api(archive_id, "search?q=CAF&ignore_case=1"),
                        headers=staff.headers).json
    assert latin["members"][0]["hits"][0]["text"] == "caf\\xe9 latin-1 bytes \\xff\\xfe here"


def test_search_caps_are_reported(testapp, staff, upload, app):
    archive_id = upload("logs.tar", FORMATS["logs.tar"])
    capped = testapp.get(api(archive_id, "search?q=syslog&limit=5"), headers=staff.headers)
    assert capped.json["results"] == 5 and capped.json["reason"] == "limit"
    assert capped.json["truncated"] is True
    app.registry.settings["inspect.search_max_bytes"] = 1
    by_bytes = testapp.get(api(archive_id, "search?q=nothing-like-this"),
                           headers=staff.headers).json
    assert by_bytes["reason"] == "bytes" and by_bytes["limits"]["bytes"] == 1


def test_runaway_regex_is_stopped_by_the_deadline(testapp, staff, upload, app):
    app.registry.settings["inspect.search_timeout"] = 0.5
    archive_id = upload("a.log", b"a" * 5000 + b"\n")
    res = testapp.get(api(archive_id, "search?regex=1&q=(a%2Ba%2B)%2Bb"),
                      headers=staff.headers).json
    assert res["reason"] == "time" and res["elapsed"] < 5


def test_bad_search_input_is_a_400_with_the_reason(testapp, staff, upload):
    archive_id = upload("a.log", b"text\n")
    res = testapp.get(api(archive_id, "search?q=(unclosed&regex=true"), headers=staff.headers,
                      status=400)
    assert "not a valid regular expression" in res.json["detail"]
    assert "missing )" in res.json["detail"]
    for bad in ("", "q=", "q=x&context=11", "q=x&limit=0", "q=x&regex=perhaps"):
        testapp.get(api(archive_id, f"search?{bad}"), headers=staff.headers, status=400)
    testapp.get(api(archive_id, "search?q=x&member=nope"), headers=staff.headers, status=404)


@on_both_storages
def test_search_a_whole_ticket(testapp, staff, upload, factory, ticket):
    first = upload("one.tar.gz", FORMATS["logs.tar.gz"])
    second = upload("two.log", b"nothing\nNEEDLE two\n")
    upload("zeros.gz", samples.bomb())
    other = factory.ticket(factory.platform("other"), 6006)
    upload("elsewhere.log", b"NEEDLE elsewhere\n", to=other)
    res = testapp.get("/api/v1/tickets/5005/search?q=NEEDLE", headers=staff.headers).json
    assert res["ticket"] == 5005
    assert [a["id"] for a in res["archives"]][:2] == [first, second]
    hits = {(a["name"], m["path"]): m["hits"][0]["line"]
            for a in res["archives"] for m in a["members"]}
    assert hits == {("one.tar.gz", "var/log/syslog.2.gz"): 301, ("two.log", "two.log"): 2}
    assert "decompression bomb" in res["archives"][2]["errors"][0]["detail"]
    testapp.get("/api/v1/tickets/5005/search?q=(&regex=1", headers=staff.headers, status=400)


def test_everything_needs_two_factor_download(testapp, factory, staff, upload):
    archive_id = upload("a.log", b"secret line\n")
    no_mfa = factory.token(factory.user("weak"), mfa=False)
    urls = [api(archive_id, "members/"), api(archive_id, "members/a.log"),
            api(archive_id, "lines/a.log"), api(archive_id, "search?q=secret"),
            "/api/v1/tickets/5005/search?q=secret"]
    for url in urls:
        assert testapp.get(url, headers=no_mfa, status=403).json["detail"] == \
            "two-factor authentication required"
        testapp.get(url, status=401)
    member = factory.user("member")
    factory.platform("locked", restricted=True, members=[member])
    locked = factory.ticket(factory.platform("locked2", restricted=True), 7007)
    hidden = upload("hidden.log", b"x\n", to=locked)
    testapp.get(api(hidden, "members/"), headers=staff.headers, status=404)
    testapp.get("/api/v1/tickets/7007/search?q=x", headers=staff.headers, status=404)


def test_index_is_built_once_and_kept(testapp, staff, upload, dbsession):
    archive_id = upload("logs.tar.gz", FORMATS["logs.tar.gz"], index=False)
    # Not in the upload request: no index until someone looks.
    assert dbsession.get(ArchiveIndex, archive_id) is None
    testapp.get(api(archive_id, "members/"), headers=staff.headers, status=503)
    store.wait_for_builders()
    row = dbsession.get(ArchiveIndex, archive_id)
    assert row.state == "ready" and row.members == 5
    built = row.time_create
    testapp.get(api(archive_id, "members/"), headers=staff.headers)
    dbsession.expire_all()
    assert dbsession.get(ArchiveIndex, archive_id).time_create == built


def test_concurrent_first_views_build_once(app, testapp, staff, upload, dbsession,
                                           monkeypatch):
    from collector.archives.inspect import index

    archive_id = upload("logs.tar.gz", FORMATS["logs.tar.gz"], index=False)
    builds, entered, release = [], threading.Event(), threading.Event()
    real_build = index.build

    def slow_build(*args, **kwargs):
        builds.append(1)
        entered.set()
        release.wait(10)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(index, "build", slow_build)
    url = api(archive_id, "members/")
    testapp.get(url, headers=staff.headers, status=503)
    assert entered.wait(10)
    # While it builds, every view (and a second process's claim) is told to come back.
    for _ in range(3):
        busy = testapp.get(url, headers=staff.headers, status=503)
        assert busy.headers["Retry-After"] == "2" and "being built" in busy.json["detail"]
    with pytest.raises(ServiceUnavailable):
        store._claim(dbsession.get_bind(), archive_id)
    release.set()
    store.wait_for_builders()
    assert builds == [1]
    assert len(testapp.get(url, headers=staff.headers).json) == 5


def test_half_built_index_is_rebuilt(testapp, staff, upload, dbsession):
    import datetime as dt

    archive_id = upload("logs.zip", FORMATS["logs.zip"], index=False)
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    # What a crash during the build leaves: a building row, no members.
    dbsession.add(ArchiveIndex(archive_id=archive_id, state="building", claim="dead",
                               format="", error="", members=0, total_size=0,
                               heartbeat_at=stale, time_create=stale))
    dbsession.commit()
    testapp.get(api(archive_id, "members/"), headers=staff.headers, status=503)
    store.wait_for_builders()
    res = testapp.get(api(archive_id, "members/"), headers=staff.headers)
    assert len(res.json) == 4
    dbsession.expire_all()
    assert dbsession.get(ArchiveIndex, archive_id).state == "ready"
    # A fresh heartbeat means someone is building right now.
    dbsession.execute(update(ArchiveIndex).values(state="building",
                                                  heartbeat_at=dt.datetime.now(dt.UTC)))
    dbsession.commit()
    testapp.get(api(archive_id, "members/"), headers=staff.headers, status=503)


@on_both_storages
def test_index_goes_with_the_archive(testapp, staff, upload, dbsession, data_dir):
    archive_id = upload("logs.tar.gz", FORMATS["logs.tar.gz"])
    assert list((data_dir / "index").glob("*.gzidx"))
    testapp.delete(api(archive_id), headers=staff.headers, status=204)
    assert not dbsession.scalars(select(ArchiveMember)).all()
    assert dbsession.get(ArchiveIndex, archive_id) is None
    assert not list((data_dir / "index").iterdir())


@on_both_storages
def test_lost_seek_points_are_rebuilt(testapp, staff, upload, data_dir):
    archive_id = upload("logs.tar.gz", FORMATS["logs.tar.gz"])
    [seek_points] = (data_dir / "index").glob("*.gzidx")
    seek_points.unlink()
    assert testapp.get(api(archive_id, "members/var/log/syslog"),
                       headers=staff.headers).body == samples.SYSLOG
    assert seek_points.exists()
    seek_points.write_bytes(b"garbage")
    assert testapp.get(api(archive_id, "members/var/log/app.log"),
                       headers=staff.headers).body == samples.APP_LOG
