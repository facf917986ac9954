"""Every model, imported in one place so the metadata is complete (alembic, tests)."""

from collector.accounts.models import ApiToken, AuthFailure, ThrottleCounter, User
from collector.archives.inspect.models import ArchiveIndex, ArchiveMember
from collector.archives.models import Archive, StorageAlertState
from collector.audit.models import AuditEvent
from collector.tickets.models import Platform, PlatformMember, Ticket
from collector.webhooks.models import Webhook, WebhookAttempt, WebhookDelivery

__all__ = ["ApiToken", "Archive", "ArchiveIndex", "ArchiveMember", "AuditEvent", "AuthFailure",
           "Platform", "PlatformMember", "StorageAlertState", "ThrottleCounter", "Ticket", "User",
           "Webhook",
           "WebhookAttempt", "WebhookDelivery"]
