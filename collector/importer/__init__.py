"""Moving in from the original logs-collector: ``collector import-original``.

``source`` reads the old installation (read-only), ``services`` holds the rules of the
import, ``files`` brings the archive files into the storage manager, ``summary`` counts
what happened.
"""
