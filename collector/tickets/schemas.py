"""What a ticket and a platform may be sent as: the one definition the API (cornice's
``schema=``) and the staff forms (``collector.validation.validate``) both apply, and the
OpenAPI document is generated from."""

import colander

from collector.tickets.models import NUMBER_MAX, NUMBER_MIN
from collector.tickets.services import PLATFORM_NAME
from collector.validation import Boolean, Integer

LIFETIME_MAX_DAYS = 3650
ATTEMPTS_MAX = 1000
RETENTION_MAX_DAYS = 36500
# The platform's retention overrides: null (or left out) follows the server's setting.
RETENTION = ("retention_resolved_days", "retention_max_days")


class TicketSchema(colander.MappingSchema):
    number = colander.SchemaNode(Integer(), validator=colander.Range(NUMBER_MIN, NUMBER_MAX))
    platform = colander.SchemaNode(colander.String(), validator=colander.Length(1, 20))
    attempts = colander.SchemaNode(Integer(), validator=colander.Range(0, ATTEMPTS_MAX),
                                   missing=None)
    resolved = colander.SchemaNode(Boolean(), missing=False)
    note = colander.SchemaNode(colander.String(allow_empty=True),
                               validator=colander.Length(0, 10000), missing="")
    expires_at = colander.SchemaNode(colander.DateTime(), missing=None)
    # Counts from now, on creation and on an edit alike (services.expiry_after).
    lifetime_days = colander.SchemaNode(Integer(),
                                        validator=colander.Range(1, LIFETIME_MAX_DAYS),
                                        missing=None)
    # Admin only; left out: unchanged.
    legal_hold = colander.SchemaNode(Boolean(), missing=None)


class PlatformSchema(colander.MappingSchema):
    name = colander.SchemaNode(colander.String(), validator=colander.Regex(
        PLATFORM_NAME, "lower-case letters, digits, - and _, at most 20"))
    pretty_name = colander.SchemaNode(colander.String(), validator=colander.Length(1, 100))
    restricted = colander.SchemaNode(Boolean(), missing=False)
    # Usernames (services.member_ids turns them into users).
    members = colander.SchemaNode(colander.List(), missing=[])
    # Retention overrides: null (or left out) follows the server's setting, 0 keeps forever.
    retention_resolved_days = colander.SchemaNode(
        Integer(), validator=colander.Range(0, RETENTION_MAX_DAYS), missing=None)
    retention_max_days = colander.SchemaNode(
        Integer(), validator=colander.Range(0, RETENTION_MAX_DAYS), missing=None)
