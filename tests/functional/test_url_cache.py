"""Pyramid's cache of quoted URL path segments stays bounded (collector/web.py): a new
tus upload id, archive id or ticket number in a link must not grow the process forever."""

import base64

from pyramid import traversal

import collector.web


def test_quoted_segments_of_links_do_not_pile_up(testapp, factory, monkeypatch):
    monkeypatch.setattr(collector.web, "QUOTED_SEGMENTS_KEPT", 20)
    platform = factory.platform()
    tickets = [factory.ticket(platform, attempts=20) for _ in range(3)]
    ids = []
    for number in range(45):
        # At most 16 unfinished uploads per ticket: three tickets in turn.
        headers = {"Tus-Resumable": "1.0.0", "Upload-Token": tickets[number % 3].token,
                   "Upload-Length": "10",
                   "Upload-Metadata": "filename " + base64.b64encode(b"a.log").decode()}
        created = testapp.post("/api/v1/uploads/", b"", headers=headers, status=201)
        ids.append(created.headers["Location"].rsplit("/", 1)[-1])
        # Each answer's link quoted its new id; the cache never holds many more than the
        # bound (what one request quotes after the check).
        assert len(traversal._segment_cache) <= 20 + 5
    cached = {segment for segment, _safe in traversal._segment_cache}
    assert ids[-1] in cached
    assert not cached.issuperset(ids[:20])
    # Links are still right after the cache was emptied.
    headers["Upload-Token"] = tickets[0].token
    assert testapp.head(f"/api/v1/uploads/{ids[0]}", headers=headers,
                        status=200).headers["Upload-Length"] == "10"
