"""JSON Schema (OpenAPI 3.1) of a request body, generated from the colander schema that
validates it: the document cannot drift from what the API accepts.

Only the types of ``collector.validation`` (and mappings of them) are known; anything else
is an error here, so a new field type is translated on purpose, not guessed. Each type is
documented as what it really accepts, which is more than its JSON type: the staff forms
send numbers and booleans as text, and so may API clients (as the original project's API
allowed) —

* ``Integer``: a JSON integer, or a string of ASCII digits (sign and surrounding spaces
  allowed) — both within the field's bounds: ``minimum``/``maximum`` constrain the number,
  ``pattern`` the text (``integer_pattern`` spells the range out digit by digit);
* ``Boolean``: ``true``/``false``, ``1``/``0``, or those words or digits as a string;
* ``String``: a string (``minLength``/``maxLength``, ``pattern`` from a ``Regex``);
* ``DateTime``: an ISO 8601 date or date and time (the ``iso8601`` package's forms);
* ``List``: an array of strings (what ``members`` holds; the service checks the items).

A field that may be left out also accepts ``null`` and ``""`` (both mean "left out"),
except booleans; ``missing`` values become ``default``; a colander ``description``
becomes the field's description. Unknown fields are ignored, as colander ignores them.
"""

import colander

from collector import validation

# What ``iso8601.parse_date`` matches (its ISO8601_REGEX, in ECMA-262 syntax): a year,
# optionally a month and day, then optionally a time and a zone.
ISO8601_PATTERN = (
    r"^[0-9]{4}(?:(?:-[0-9]{1,2}|[0-9]{2}(?!$))(?:(?:-[0-9]{1,2}|[0-9]{2})"
    r"(?:[ T][0-9]{2}(?::?[0-9]{2})?(?::?[0-9]{1,2}(?:[.,][0-9]+)?)?"
    r"(?:Z|[-+][0-9]{2}:?(?:[0-9]{2})?)?)?)?)?$")
BOOLEAN_TEXT = r"^(?:[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[01])$"


def _same_length(low, high):
    """A regex of the decimal strings from ``low`` to ``high``, both of one length."""
    if low == high:
        return low
    if len(low) == 1:
        return f"[{low}-{high}]"
    if low[0] == high[0]:
        return f"{low[0]}(?:{_same_length(low[1:], high[1:])})"
    rest = len(low) - 1
    parts = []
    first, last = int(low[0]), int(high[0])
    if low[1:] != "0" * rest:
        parts.append(f"{low[0]}(?:{_same_length(low[1:], '9' * rest)})")
        first += 1
    if high[1:] != "9" * rest:
        last -= 1
    if first <= last:
        parts.append(f"[{first}-{last}][0-9]{{{rest}}}")
    if high[1:] != "9" * rest:
        parts.append(f"{high[0]}(?:{_same_length('0' * rest, high[1:])})")
    return "|".join(parts)


def _magnitudes(low, high):
    """A regex of the decimal strings, without leading zeros, of ``low..high`` (≥ 0)."""
    parts = []
    while low <= high:
        end = min(high, 10 ** len(str(low)) - 1)
        parts.append(_same_length(str(low), str(end)))
        low = end + 1
    return "|".join(parts)


def integer_pattern(minimum, maximum, optional=False):
    """What ``collector.numbers.parse_int`` reads as a number within ``minimum..maximum``:
    at most 38 characters, ASCII spaces or tabs around an optional sign and at most 19
    digits (leading zeros included)."""
    signs = []
    if maximum >= 0:
        signs.append(rf"\+?{_digits(max(minimum, 0), maximum)}")
    if minimum <= 0:
        signs.append(f"-{_digits(max(-maximum, 0), -minimum)}")
    pattern = rf"^(?=.{{1,38}}$)[ \t]*(?:{'|'.join(signs)})[ \t]*$"
    return f"^$|{pattern}" if optional else pattern


def _digits(low, high):
    """At most 19 digits, leading zeros allowed, of a magnitude within ``low..high``."""
    return rf"(?=[0-9]{{1,19}}[ \t]*$)0*(?:{_magnitudes(low, high)})"


def _bounds(node, low, high):
    """The node's own Range within ``low..high``."""
    validators = _validators(node)
    for validator in validators:
        if isinstance(validator, colander.Range):
            if validator.min is not None:
                low = max(low, validator.min)
            if validator.max is not None:
                high = min(high, validator.max)
    return low, high


def _validators(node):
    validator = node.validator
    if validator is None:
        return []
    if isinstance(validator, colander.All):
        return list(validator.validators)
    return [validator]


def field(node, required):
    """The JSON Schema of one field of a mapping."""
    typ = node.typ
    optional = not required
    if isinstance(typ, validation.IntegerType):
        low, high = _bounds(node, validation.INT64_MIN, validation.INT64_MAX)
        schema = {"type": ["integer", "string", "null"] if optional else ["integer", "string"],
                  "minimum": low, "maximum": high,
                  "pattern": integer_pattern(low, high, optional)}
    elif isinstance(typ, validation.BooleanType):
        schema = {"type": ["boolean", "integer", "string"], "minimum": 0, "maximum": 1,
                  "pattern": BOOLEAN_TEXT}
    elif isinstance(typ, validation.DateTimeType):
        schema = {"type": ["string", "null"] if optional else "string",
                  "pattern": f"^$|{ISO8601_PATTERN}" if optional else ISO8601_PATTERN}
    elif isinstance(typ, validation.ListType):
        schema = {"type": "array", "items": {"type": "string"}}
    elif isinstance(typ, validation.StringType):
        schema = _string(node, optional)
    else:
        raise TypeError(f"{node.name}: no JSON Schema for {type(typ).__name__}")
    if node.description:
        schema["description"] = str(node.description)
    # A default of None stands for "left out" where null itself is refused (booleans).
    if node.missing not in (colander.required, colander.drop, colander.null) and (
            node.missing is not None or "null" in schema["type"]):
        schema["default"] = node.missing
    return schema


def _string(node, optional):
    schema = {"type": ["string", "null"] if optional else "string"}
    # Left out, "" means "not given" unless the type keeps it (allow_empty).
    empty_is_absent = optional and not node.typ.allow_empty
    for validator in _validators(node):
        if isinstance(validator, colander.Length):
            low = validator.min or 0
            if not node.typ.allow_empty:
                low = max(low, 1)
            if empty_is_absent and low > 1:
                raise TypeError(f"{node.name}: an optional string of {low}+ characters")
            if low and not empty_is_absent:
                schema["minLength"] = low
            if validator.max is not None:
                schema["maxLength"] = validator.max
        elif isinstance(validator, colander.Regex):
            # colander matches at the start (re.match); JSON Schema searches.
            pattern = f"^(?:{validator.match_object.pattern})"
            schema["pattern"] = f"^$|{pattern}" if empty_is_absent else pattern
        else:
            raise TypeError(f"{node.name}: no JSON Schema for {type(validator).__name__}")
    if not optional and not node.typ.allow_empty:
        schema.setdefault("minLength", 1)
    return schema


def request_body(schema):
    """The JSON Schema of a JSON object that ``schema`` (a colander mapping) accepts."""
    if not isinstance(schema.typ, colander.Mapping):
        raise TypeError(f"{schema.name or type(schema).__name__}: not a mapping")
    properties, required = {}, []
    for child in schema.children:
        is_required = child.missing is colander.required
        properties[child.name] = field(child, is_required)
        if is_required:
            required.append(child.name)
    document = {"type": "object", "properties": properties, "required": required}
    if schema.description:
        document["description"] = str(schema.description)
    return document
