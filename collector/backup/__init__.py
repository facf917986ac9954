"""``collector backup``, ``verify`` and ``restore``: a consistent copy of an installation
while it runs, checked against a manifest, and brought back into an empty place.

A backup directory holds the database copy (``database.sqlite3`` through SQLite's online
backup API, or ``database.pgdump``, ``pg_dump``'s custom format), the archives the copy's
rows name (``archives/<key[:2]>/<key>``, hard-linked when on the same filesystem; on S3
only listed) and ``manifest.json``, written last: a directory without it is no backup.
``database.py`` copies and restores the database of each engine; ``services.py`` holds the
order of the steps, the manifest and the checks. The console only prints what they return.
"""
