"""Help-desk webhooks: the outbox, signed deliveries with retries, the admin's pages."""


def includeme(config):
    """The worker thread of the server process (``WEBHOOK_WORKER``), started once the
    configuration is committed, so the engine and storage it needs exist."""
    settings = config.get_settings()
    if not settings["webhooks.worker"]:
        return

    def start():
        from collector.webhooks.worker import Worker

        registry = config.registry
        registry["worker"] = Worker(registry["db_engine"], registry["archive_storage"],
                                    settings, registry.get("metrics")).start()

    config.action(None, start, order=1000)
