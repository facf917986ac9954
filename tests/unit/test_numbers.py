"""collector.numbers: ASCII digits only, whatever Python calls a digit."""

import pytest

from collector.db import INTEGER_MAX, as_integer
from collector.numbers import is_digits, parse_int, parse_natural

# Each of these is a "digit" to str.isdigit or to int(), and none is ASCII.
NOT_ASCII = [
    "²", "¹²³", "①", "٣", "٠١٢٣٤٥", "۳", "३", "১২", "１２３", "𝟏𝟐", "߁", "๓",
    "1²", "12٣456", "１", "\u0661\u0662\u0663\u0664\u0665\u0666",
]
MALFORMED = ["", " ", "1 2", "1_000", "0x10", "1e3", "1.0", "+", "-", "--1", "١-", "\x001",
             "1\n", "12\u00a0", "\u20071"]


@pytest.mark.parametrize("value", NOT_ASCII + MALFORMED)
def test_non_ascii_and_malformed_are_refused_everywhere(value):
    assert not is_digits(value)
    assert parse_natural(value) is None
    assert parse_int(value, -(2 ** 63), 2 ** 63) is None
    assert as_integer(value) is None


@pytest.mark.parametrize("value", ["0", "7", "0123", "2147483647", "9" * 19])
def test_ascii_digits_are_taken(value):
    assert is_digits(value)
    assert parse_natural(value) == int(value)


def test_lengths_and_ranges():
    assert not is_digits("1" * 20)
    assert parse_natural("1" * 20) is None
    assert not is_digits("1234567", max_length=6)
    assert parse_natural("11", maximum=10) is None
    assert parse_int(" -12 ", -20, 0) == -12
    assert parse_int("+5", 0, 10) == 5
    assert parse_int("-" + "9" * 40, -(10 ** 50), 0) is None
    assert as_integer(str(INTEGER_MAX + 1)) is None
    assert as_integer(True) is None and as_integer(None) is None and as_integer(3.0) is None
    assert as_integer(12) == 12
