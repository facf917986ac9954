"""What sign-in, bearer tokens and personal API tokens may be sent as: the API's bodies
and the account page's token form apply the same schemas."""

import colander

from collector.validation import Boolean, Integer, String

TOKEN_NAME_MAX = 100
TOKEN_LIFETIME_MAX_DAYS = 3650


class Credentials(colander.MappingSchema):
    username = colander.SchemaNode(String(), validator=colander.Length(1, 150))
    password = colander.SchemaNode(String(), validator=colander.Length(1, 1024))
    otp = colander.SchemaNode(String(), validator=colander.Length(1, 16),
                              description="TOTP code")


class RefreshSchema(colander.MappingSchema):
    refresh = colander.SchemaNode(String(), validator=colander.Length(1, 200))


class TokenSchema(colander.MappingSchema):
    token = colander.SchemaNode(String(), validator=colander.Length(1, 200))


class PersonalTokenSchema(colander.MappingSchema):
    name = colander.SchemaNode(String(),
                               validator=colander.Length(1, TOKEN_NAME_MAX))
    # Left out: the token does not expire.
    lifetime_days = colander.SchemaNode(
        Integer(), validator=colander.Range(1, TOKEN_LIFETIME_MAX_DAYS), missing=None,
        description="Omit for a token that does not expire")


class RevokeAllSchema(colander.MappingSchema):
    keep_personal_tokens = colander.SchemaNode(
        Boolean(), missing=False, description="Revoke only access and refresh tokens")
