"""Help-desk webhooks: the outbox, signed deliveries with retries, the admin's pages."""

from collector.audit import services as audit
from collector.webhooks import services
from collector.webhooks.worker import Worker


def listen():
    """Queue the webhook events of every audit event recorded from now on in this process
    (the outbox rows share the event's transaction). The app and the console commands
    that record events both call it."""
    audit.subscribe(services.enqueue)


def includeme(config):
    """Listen to the audit log; and the worker thread of the server process
    (``WEBHOOK_WORKER``), started once the configuration is committed, so the engine and
    storage it needs exist."""
    listen()
    settings = config.get_settings()
    if not settings["webhooks.worker"]:
        return

    def start():
        registry = config.registry
        registry["worker"] = Worker(registry["db_engine"], registry["archive_storage"],
                                    settings, registry.get("metrics")).start()

    config.action(None, start, order=1000)
