"""The shared colander types: strict about JSON (a number is no string, a string of other
digits no number), lenient where forms and older clients need it (digits as text, "1"
and "0" for booleans), and the same refusals for a form and a JSON body."""

import colander
import pytest

from collector import validation


def node(typ, **kwargs):
    return colander.SchemaNode(typ, name="field", **kwargs)


@pytest.mark.parametrize("value,expected", [
    (42, 42), ("42", 42), (" +42\t", 42), (42.0, 42), ("-7", -7), ("", colander.null),
    (None, colander.null)])
def test_integer_accepts(value, expected):
    assert validation.Integer().deserialize(node(validation.Integer()), value) == expected


@pytest.mark.parametrize("value", [True, 4.5, "4.5", "seven", "١٢", "1_000", [], {}, 2**63,
                                   "9" * 20])
def test_integer_refuses(value):
    with pytest.raises(colander.Invalid, match="is not a number"):
        node(validation.Integer()).deserialize(value)


@pytest.mark.parametrize("value,expected", [
    (True, True), (False, False), (1, True), (0, False), (1.0, True), ("TRUE", True),
    ("false", False), ("1", True), ("0", False)])
def test_boolean_accepts(value, expected):
    assert node(validation.Boolean()).deserialize(value) is expected


@pytest.mark.parametrize("value", [None, "", "yes", "on", 2, 0.5, [], {}])
def test_boolean_refuses(value):
    with pytest.raises(colander.Invalid):
        node(validation.Boolean(), missing=False).deserialize(value)


@pytest.mark.parametrize("value", [0, False, [], {}, 42, True])
def test_text_and_times_refuse_what_is_not_text(value):
    # colander took the falsy ones for a field left out.
    for typ in (validation.String(), validation.DateTime()):
        with pytest.raises(colander.Invalid):
            node(typ, missing=None).deserialize(value)


def test_left_out_text_and_times():
    assert node(validation.String(), missing="d").deserialize(None) == "d"
    assert node(validation.String(), missing="d").deserialize("") == "d"
    assert node(validation.String(allow_empty=True), missing="d").deserialize("") == ""
    assert node(validation.DateTime(), missing=None).deserialize("") is None
    assert node(validation.DateTime()).deserialize("2030-01-02").year == 2030


def test_lists_are_arrays():
    assert node(validation.List()).deserialize(["a"]) == ["a"]
    for value in ({"a": 1}, "a", None):
        with pytest.raises(colander.Invalid):
            node(validation.List(), missing=[]).deserialize(value)


def test_validate_answers_in_cornice_s_shape():
    schema = colander.MappingSchema(children=[
        colander.SchemaNode(validation.Integer(), name="number",
                            validator=colander.Range(1, 9))])
    with pytest.raises(validation.ValidationFailed) as refused:
        validation.validate(schema, {"number": "12"}, "form")
    assert refused.value.detail == "number: 12 is greater than maximum value 9"
    assert refused.value.errors == [{"location": "form", "name": "number",
                                     "description": "12 is greater than maximum value 9"}]
    with pytest.raises(validation.BadRequest, match="form must be a JSON object"):
        validation.validate(schema, ["x"], "form")
