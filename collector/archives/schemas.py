"""What an archive's change may be sent as (its upload is bytes, not a schema)."""

import colander

from collector.validation import Integer


class ArchivePatchSchema(colander.MappingSchema):
    name = colander.SchemaNode(colander.String(), validator=colander.Length(1, 255),
                               missing=colander.drop)
    # Move it to the ticket with this number (services.change_archive).
    ticket = colander.SchemaNode(Integer(), missing=colander.drop)
