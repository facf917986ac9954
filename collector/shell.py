"""``pshell development.ini``: a Python shell with the app's database session, its models
and its storage manager, in one transaction (``[pshell] setup = collector.shell.setup``).

    >>> dbsession.scalars(select(models.Ticket).limit(3)).all()
    >>> tm.commit()   # writes; then tm.begin() for the next transaction

Leaving the shell without ``tm.commit()`` writes nothing.
"""

from sqlalchemy import select
from transaction.interfaces import NoTransaction

from collector import models


def setup(env):
    """Fill pshell's namespace: ``tm`` (begun), ``dbsession`` and ``storage`` joined to it,
    ``models``, ``select`` and ``settings``; abort what is left uncommitted at the end."""
    request = env["request"]
    request.tm.begin()
    env["tm"] = request.tm
    env["dbsession"] = request.dbsession
    env["storage"] = request.storage
    env["models"] = models
    env["select"] = select
    env["settings"] = env["registry"].settings
    try:
        yield
    finally:
        try:
            request.tm.abort()
        except NoTransaction:  # committed, and no new one begun
            pass
