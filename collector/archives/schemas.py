"""What an archive's change may be sent as (its upload is bytes, not a schema)."""

import colander

from collector.validation import Integer, String


class ArchivePatchSchema(colander.MappingSchema):
    name = colander.SchemaNode(String(), validator=colander.Length(1, 255),
                               missing=colander.drop,
                               description="A new name (sanitised as an upload's)")
    # services.change_archive
    ticket = colander.SchemaNode(Integer(), missing=colander.drop,
                                 description="Move to the ticket with this number")
