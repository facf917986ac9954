"""The audit log: who did what, to which ticket or archive, from where, and how it ended.

``services.record`` is the one entry point; it publishes each event to its subscribers
(``services.subscribe``: the webhooks' outbox) and depends on none of them.
"""
