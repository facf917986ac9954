"""The converter from colander schemas to the JSON Schema of request bodies: each type
documented as what it accepts (checked against the type itself), the integer ranges spelt
out for digit strings, and no guess for a type it does not know."""

import random
import re

import colander
import jsonschema
import pytest

from collector import validation
from collector.api.v1.openapi_schema import integer_pattern, request_body
from collector.numbers import parse_int


@pytest.mark.parametrize("low,high", [(0, 1000), (1, 3650), (0, 36500), (1, 2**31 - 1),
                                      (-5, 5), (-100, -3), (7, 7), (0, 0),
                                      (validation.INT64_MIN, validation.INT64_MAX)])
def test_integer_pattern_reads_digits_as_parse_int_does(low, high):
    pattern = re.compile(integer_pattern(low, high))
    rng = random.Random(low ^ high)
    numbers = list(range(max(low, -1500), min(high, 1500) + 1))
    numbers += [low - 1, high + 1, low, high] + [rng.randint(low - 10**6, high + 10**6)
                                                 for _ in range(2000)]
    texts = []
    for number in numbers:
        text = str(number)
        texts += [text, f"+{text}", f" {text}\t", f"00{text.lstrip('-')}",
                  f"-0{text.lstrip('-')}", f"{text}x", f"1 {text}"]
    texts += ["", " ", "+", "-", "+-1", "0" * 19 + "1", "0" * 18 + "1", " " * 37 + "1",
              " " * 38 + "1", "١٢", "1_000"]
    for text in texts:
        expected = parse_int(text, low, high) is not None
        assert (pattern.search(text) is not None) == expected, (low, high, text)


def test_an_optional_integer_also_takes_an_empty_string():
    assert re.search(integer_pattern(1, 9, optional=True), "")
    assert not re.search(integer_pattern(1, 9), "")


class Sample(colander.MappingSchema):
    count = colander.SchemaNode(validation.Integer(), validator=colander.Range(1, 10),
                                description="How many")
    flag = colander.SchemaNode(validation.Boolean(), missing=False)
    name = colander.SchemaNode(validation.String(), validator=colander.Regex("^[a-z]+$"),
                               missing=None)
    note = colander.SchemaNode(validation.String(allow_empty=True),
                               validator=colander.Length(0, 5), missing="")
    when = colander.SchemaNode(validation.DateTime(), missing=None)
    tags = colander.SchemaNode(validation.List(), missing=[])


VALUES = [None, "", 0, 1, 2, 10, 11, -1, 1.0, 2.5, True, False, "1", " 7 ", "+3", "010",
          "x", "abc", "ABC", "true", "False", "yes", "12345", "123456", [], ["a"], [1],
          {}, {"a": 1}, "2030-01-02", "2030-01-02T03:04:05Z", "2030-01-02 03:04",
          "tomorrow", "20300102", "2030"]


@pytest.mark.parametrize("field", [child.name for child in Sample().children])
def test_each_field_documented_as_what_its_type_accepts(field):
    schema = Sample()
    document = request_body(schema)
    validator = jsonschema.Draft202012Validator(document)
    base = {"count": 5}
    for value in VALUES:
        if field == "tags" and value == [1]:
            # A list's items: documented as text, refused by the service that reads them
            # (tickets.services.member_ids: "members must be a list of usernames").
            continue
        body = {**base, field: value}
        try:
            schema.deserialize(body)
            accepted = True
        except colander.Invalid:
            accepted = False
        assert validator.is_valid(body) == accepted, (field, value)


def test_the_mapping_and_its_words():
    document = request_body(Sample())
    assert document["type"] == "object" and document["required"] == ["count"]
    assert document["properties"]["count"]["description"] == "How many"
    assert document["properties"]["flag"]["default"] is False
    assert document["properties"]["tags"]["default"] == []
    # A boolean left out is "unchanged", but null is no boolean: no default of null.
    assert "default" not in request_body(colander.MappingSchema(children=[
        colander.SchemaNode(validation.Boolean(), name="hold", missing=None)
    ]))["properties"]["hold"]


def test_a_type_it_does_not_know_is_an_error():
    schema = colander.MappingSchema(children=[
        colander.SchemaNode(colander.Float(), name="ratio")])
    with pytest.raises(TypeError, match="ratio"):
        request_body(schema)
    with pytest.raises(TypeError):
        request_body(colander.SchemaNode(validation.String(), name="alone"))
