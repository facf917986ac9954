"""What a ticket and a platform may be sent as: the one definition the API (cornice's
``schema=``) and the staff forms (``collector.validation.validate``) both apply, and the
OpenAPI document is generated from (api/v1/openapi_schema.py)."""

import colander

from collector.tickets.models import NUMBER_MAX, NUMBER_MIN
from collector.tickets.services import PLATFORM_NAME
from collector.validation import Boolean, DateTime, Integer, List, String

LIFETIME_MAX_DAYS = 3650
ATTEMPTS_MAX = 1000
RETENTION_MAX_DAYS = 36500
# The platform's retention overrides: null (or left out) follows the server's setting.
RETENTION = ("retention_resolved_days", "retention_max_days")


class TicketSchema(colander.MappingSchema):
    number = colander.SchemaNode(Integer(), validator=colander.Range(NUMBER_MIN, NUMBER_MAX),
                                 description="The help-desk case number")
    platform = colander.SchemaNode(String(), validator=colander.Length(1, 20),
                                   description="Platform name")
    attempts = colander.SchemaNode(Integer(), validator=colander.Range(0, ATTEMPTS_MAX),
                                   missing=None,
                                   description="Default: the server's TICKET_ATTEMPTS")
    resolved = colander.SchemaNode(Boolean(), missing=False)
    note = colander.SchemaNode(String(allow_empty=True),
                               validator=colander.Length(0, 10000), missing="")
    expires_at = colander.SchemaNode(
        DateTime(), missing=None,
        description="When the upload token is refused from (ISO 8601; UTC without a zone)")
    # Counts from now, on creation and on an edit alike (services.expiry_after).
    lifetime_days = colander.SchemaNode(
        Integer(), validator=colander.Range(1, LIFETIME_MAX_DAYS), missing=None,
        description="Token lifetime from now (when no expires_at); default: the "
                    "server's TICKET_LIFETIME_DAYS")
    legal_hold = colander.SchemaNode(Boolean(), missing=None,
                                     description="Admins only (403 otherwise); left out: "
                                                 "unchanged")


class PlatformSchema(colander.MappingSchema):
    name = colander.SchemaNode(String(), validator=colander.Regex(
        PLATFORM_NAME, "lower-case letters, digits, - and _, at most 20"))
    pretty_name = colander.SchemaNode(String(), validator=colander.Length(1, 100))
    restricted = colander.SchemaNode(Boolean(), missing=False,
                                     description="Only members and admins see it")
    # Usernames (services.member_ids turns them into users).
    members = colander.SchemaNode(List(), missing=[],
                                  description="Usernames of the members (restricted "
                                              "platforms)")
    # Retention overrides: null (or left out) follows the server's setting, 0 keeps forever.
    retention_resolved_days = colander.SchemaNode(
        Integer(), validator=colander.Range(0, RETENTION_MAX_DAYS), missing=None,
        description="Days after resolution its archives are kept; null: the server's "
                    "RETENTION_RESOLVED_DAYS, 0: forever")
    retention_max_days = colander.SchemaNode(
        Integer(), validator=colander.Range(0, RETENTION_MAX_DAYS), missing=None,
        description="Days after upload its archives are kept; null: the server's "
                    "RETENTION_MAX_DAYS, 0: forever")
