"""Numbers and codes sent by clients: ASCII digits only, parsed in one place.

Python's own tests for digits accept far more than ``0``–``9``: ``str.isdigit`` is true
for superscripts (``"²"``) and circled digits, which ``int()`` then refuses with a
ValueError (a 500 where it was not caught); ``int()`` itself accepts Arabic-Indic,
Devanagari or fullwidth digits, surrounding whitespace and ``_`` separators. Every number,
one-time code, offset, length or id a client sends goes through this module instead, so a
header, a form field, a query parameter and a JSON value are all held to the same rule:
nothing but ASCII digits (and, where a sign makes sense, one leading ``+`` or ``-``).
"""

import re

# With a str pattern, [0-9] matches the ten ASCII digits only (unlike \d).
_DIGITS = re.compile(r"[0-9]+")
_SIGNED = re.compile(r"[+-]?[0-9]+")

# A 64-bit count has at most 19 digits; longer input is refused before int() sees it.
MAX_DIGITS = 19


def is_digits(value, max_length=MAX_DIGITS):
    """Whether ``value`` is a str of 1..``max_length`` ASCII digits, nothing else."""
    return (isinstance(value, str) and 0 < len(value) <= max_length
            and _DIGITS.fullmatch(value) is not None)


def parse_natural(value, maximum=None, max_length=MAX_DIGITS):
    """A non-negative int from ASCII digits (no sign, no spaces), or None."""
    if not is_digits(value, max_length):
        return None
    number = int(value)
    return number if maximum is None or number <= maximum else None


def parse_int(value, minimum, maximum):
    """An int within ``minimum..maximum`` from an int or a str of ASCII digits with an
    optional leading sign (surrounding ASCII spaces are ignored), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif (isinstance(value, str) and len(value) <= 2 * MAX_DIGITS
            and _SIGNED.fullmatch(value.strip(" \t")) is not None
            and len(value.strip(" \t").lstrip("+-")) <= MAX_DIGITS):
        number = int(value.strip(" \t"))
    else:
        return None
    return number if minimum <= number <= maximum else None
