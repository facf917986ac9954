"""Reading inside archives: the member index, the viewer's lines, search.

- ``formats``: what an archive is (by its bytes) and bounded decompressing readers;
- ``index``: one pass over an archive that lists its members (and gzip seek points);
- ``store``: keeps that index (rows), built once per archive, never twice at a time;
- ``reader``: one member's bytes and lines, by random access where the format allows;
- ``search``: grep-like search, capped in results, bytes and time;
- ``services``: what the API (``api/v1/inspect.py``) and the pages (``views.py``) call.

Nothing is ever extracted to disk: members are streamed from the archive file itself.
"""
