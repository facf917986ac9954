"""The background worker: webhook deliveries and the low-space check, every few seconds.

Started by the app factory in the server process (``WEBHOOK_WORKER``), or run on its own by
``collector deliver --loop``. Deliveries are claimed in the database, so any number of
workers in any number of processes share the outbox without sending an event twice.
"""

import logging
import threading
import uuid

from collector.archives.storage import alerts
from collector.webhooks import services

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, engine, backend, settings, metrics=None):
        self.engine = engine
        self.backend = backend
        self.settings = settings
        self.metrics = metrics
        self.name = f"worker-{uuid.uuid4().hex[:12]}"
        self._stop = threading.Event()
        self._thread = None

    def run_once(self, now=None):
        """One pass; errors are logged (a database that is down must not end the loop)."""
        outcomes = []
        try:
            alerts.check(self.engine, self.backend, self.settings, now=now)
        except Exception:
            log.exception("worker: the low-space check failed")
        try:
            outcomes = services.deliver_pending(self.engine, self.settings, now=now,
                                                metrics=self.metrics, worker=self.name,
                                                stopping=self._stop.is_set)
        except Exception:
            log.exception("worker: webhook delivery failed")
        return outcomes

    def loop(self):
        while not self._stop.is_set():
            self.run_once()
            if self._stop.wait(self.settings["webhooks.interval"]):
                return

    def start(self):
        self._thread = threading.Thread(target=self.loop, name="collector-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=10):
        """End the loop after the delivery being made (the pass's other claims are given
        back); wait up to ``timeout`` seconds (0: do not wait). Whether it has ended."""
        self._stop.set()
        if self._thread is None:
            return True
        if timeout:
            self._thread.join(timeout)
        return not self._thread.is_alive()
