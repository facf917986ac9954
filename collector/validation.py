"""What every way in shares to read what a client sends: colander types strict enough for
JSON and forms alike, the one way a schema is applied outside cornice, and the parsers of
query-string values.

The domain packages' ``schemas.py`` build on these, and so do the API (through cornice's
validators) and the pages (through ``validate``): neither owns them, so neither imports the
other to check a field.
"""

import datetime as dt

import colander

from collector.db import INTEGER_MAX, INTEGER_MIN, as_integer
from collector.errors import BadRequest
from collector.numbers import parse_int

# Python's int range a JSON integer or a form's digits may hold before a schema's own
# range applies (collector.numbers: ASCII digits only).
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1


def _shown(value):
    return f'"{str(value)[:40]}"'


class StringType(colander.String):
    """colander's String, strict about JSON: a value that is not text is refused, where
    colander took ``0``, ``false``, ``[]`` or ``{}`` for a field left out."""

    def deserialize(self, node, cstruct):
        if cstruct is not None and cstruct is not colander.null and \
                not isinstance(cstruct, str):
            raise colander.Invalid(node, f"{_shown(cstruct)} is not a string")
        return super().deserialize(node, cstruct)


def String(allow_empty=False):
    """Text; ``null`` or ``""`` is a field left out (``""`` is kept with ``allow_empty``)."""
    return StringType(allow_empty=allow_empty)


class BooleanType(colander.Boolean):
    """A strict boolean: ``"no"`` is an error, not ``True`` (colander's default). JSON
    ``true``/``false``, ``1``/``0``, and the strings ``"true"``/``"false"``/``"1"``/``"0"``
    in any case (forms send ``"1"`` and ``"0"``)."""

    def __init__(self):
        super().__init__(true_choices=("true", "1"), false_choices=("false", "0"))

    def deserialize(self, node, cstruct):
        # 1.0 is the JSON number 1 (JSON Schema says so too).
        if isinstance(cstruct, float) and cstruct in (0.0, 1.0):
            cstruct = int(cstruct)
        return super().deserialize(node, cstruct)


def Boolean():
    return BooleanType()


class IntegerType(colander.SchemaType):
    """A JSON integer, or a string of ASCII digits (form fields): never a boolean, a
    fraction, or the other digits Python's ``int()`` reads (collector.numbers)."""

    def serialize(self, node, appstruct):
        return colander.null if appstruct in (None, colander.null) else str(appstruct)

    def deserialize(self, node, cstruct):
        if cstruct is colander.null or cstruct is None or cstruct == "":
            return colander.null
        # 42.0 is the JSON number 42 (JSON Schema says so too).
        if isinstance(cstruct, float) and cstruct.is_integer():
            cstruct = int(cstruct)
        number = parse_int(cstruct, INT64_MIN, INT64_MAX)
        if number is None:
            raise colander.Invalid(node, f"{_shown(cstruct)} is not a number")
        return number


def Integer():
    """A strict integer (see ``IntegerType``); ranges are the schemas' validators."""
    return IntegerType()


class DateTimeType(colander.DateTime):
    """An ISO 8601 date or date and time (UTC when it names no zone); ``null`` or ``""``
    is a field left out, any other value that is not text is refused."""

    def deserialize(self, node, cstruct):
        if cstruct is not None and cstruct is not colander.null and \
                not isinstance(cstruct, str):
            raise colander.Invalid(node, "Invalid date")
        return super().deserialize(node, cstruct)


def DateTime():
    return DateTimeType()


class ListType(colander.List):
    """A JSON array (colander also took an object, for its keys)."""

    def deserialize(self, node, cstruct):
        if cstruct is not colander.null and not isinstance(cstruct, list):
            raise colander.Invalid(node, f"{_shown(cstruct)} is not a list")
        return super().deserialize(node, cstruct)


def List():
    return ListType()


def partial(schema):
    """A copy of ``schema`` where every field is optional (PATCH)."""
    schema = schema.clone()
    for node in schema.children:
        node.missing = colander.drop
    return schema


class ValidationFailed(BadRequest):
    """A schema refused the data: ``errors`` in cornice's shape (location, name,
    description), ``detail`` the first of them."""

    def __init__(self, detail, errors):
        super().__init__(detail)
        self.errors = errors


def validate(schema, data, location="body"):
    """Deserialise ``data`` with a colander schema; 400 with cornice-shaped errors. For
    what cornice does not validate: the pages' forms."""
    if not isinstance(data, dict):
        raise BadRequest(f"{location} must be a JSON object")
    try:
        return schema.deserialize(data)
    except colander.Invalid as exc:
        errors = [{"location": location, "name": name, "description": message}
                  for name, message in exc.asdict().items()]
        name, message = next(iter(exc.asdict().items()))
        raise ValidationFailed(f"{name}: {message}", errors) from None


# --- query-string values ------------------------------------------------------------------

def int_list(value, name):
    numbers = [as_integer(part) for part in str(value).split(",") if part.strip()]
    if None in numbers:
        raise BadRequest(f"{name} must be a comma-separated list of integers "
                         f"{INTEGER_MIN}..{INTEGER_MAX}")
    return numbers


def parse_bool(value, name):
    text = str(value).strip().lower()
    if text in {"1", "true", "yes"}:
        return True
    if text in {"0", "false", "no"}:
        return False
    raise BadRequest(f"{name} must be true or false")


def parse_time(value, name):
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise BadRequest(f"{name} must be an ISO 8601 date or time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
