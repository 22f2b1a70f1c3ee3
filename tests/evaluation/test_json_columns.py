"""The fast JSON reader (pysimdjson) vouches only for files the strict reader accepts, and with the
same arrays, to the bit.

Every file here goes through both: ``read_columns`` either declines (None) or returns arrays equal
to the bit to those of the entry-by-entry ``columns`` over ``json.load``, and the public readers,
which try the fast reader first, raise exactly the strict reader's errors. The malformed-file
corpus of test_results and the traps below (leniencies of parsers and of numpy) run through it;
so do tokens that are hard to convert exactly.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from matchrcnn.evaluation.entries import (
    EntriesError,
    Problems,
    columns,
    load_columns,
    load_entries,
)
from matchrcnn.evaluation.json_columns import Field, read_columns
from matchrcnn.evaluation.results import (
    _COCO_FIELDS,
    _RETRIEVAL_FIELDS,
    read_retrieval_results,
    retrieval_results,
    write_results,
)
from matchrcnn.evaluation.retrieval import (
    _GALLERY_FIELDS,
    _QUERY_FIELDS,
    read_gallery_gt,
    read_query_gt,
)
from matchrcnn.evaluation.synthetic import random_retrieval_results

from .test_results import COCO_CASES, RETRIEVAL_CASES, RETRIEVAL_ENTRY, _file_with_bad_entry


def _strict(path: Path, fields) -> dict | str:
    """What the entry-by-entry reader makes of a file: its arrays, or its error message."""
    try:
        entries, name = load_entries(path)
        return columns(entries, fields, Problems(name))
    except EntriesError as error:
        return str(error)


def _agree(path: Path, fields) -> dict | None:
    """The fast reader's arrays (None if it declined), checked against the strict reader's."""
    fast = read_columns(path, fields)
    if fast is None:
        return None
    strict = _strict(path, fields)
    assert not isinstance(strict, str), f"fast reader took what the strict one refuses: {strict}"
    assert fast.keys() == strict.keys()
    for key, array in strict.items():
        assert (fast[key].dtype, fast[key].shape) == (array.dtype, array.shape), key
        assert fast[key].tobytes() == array.tobytes(), key
        assert fast[key].flags.writeable and fast[key].flags.c_contiguous
    return fast


def _reader_message(path: Path) -> str:
    with pytest.raises(EntriesError) as error:
        read_retrieval_results(path, strict=True)
    return str(error.value)


# --- the malformed corpus of test_results ------------------------------------------------------

WELL_TYPED = {"bad_class", "unknown_image", "flipped_box"}
"""Corpus cases whose values are well-formed; the checks after reading judge them."""


@pytest.mark.parametrize("case", sorted(RETRIEVAL_CASES))
def test_retrieval_corpus_is_declined_or_read_identically(tmp_path, case):
    change, message = RETRIEVAL_CASES[case]
    path = _file_with_bad_entry(tmp_path, RETRIEVAL_ENTRY, change)
    fast = _agree(path, _RETRIEVAL_FIELDS)
    assert (fast is not None) == (case in WELL_TYPED)
    if case != "unknown_image":
        assert f"entry 1: {message}" in _reader_message(path)


@pytest.mark.parametrize("case", sorted(COCO_CASES))
def test_coco_corpus_is_declined_or_read_identically(tmp_path, case):
    task, base, change, _ = COCO_CASES[case]
    _agree(_file_with_bad_entry(tmp_path, base, change), _COCO_FIELDS[task])


# --- leniencies of other parsers and of numpy that must not leak through -----------------------

ENTRY = json.dumps(RETRIEVAL_ENTRY)

TRAPS = {  # the second entry's text edited (old -> new), and the strict reader's message
    "integer_as_float": ('"query_image_id": 1', '"query_image_id": 1.0',
                         "entry 1: 'query_image_id' must be an integer, got 1.0"),
    "integer_with_exponent": ('"query_image_id": 1', '"query_image_id": 1e0',
                              "entry 1: 'query_image_id' must be an integer, got 1.0"),
    "integer_with_fraction": ('"query_cls": 3', '"query_cls": 3.4',
                              "entry 1: 'query_cls' must be an integer, got 3.4"),
    "integer_as_string": ('"query_cls": 3', '"query_cls": "3"',
                          "entry 1: 'query_cls' must be an integer, got '3'"),
    "integer_as_bool": ('"query_cls": 3', '"query_cls": true',
                        "entry 1: 'query_cls' must be an integer, got True"),
    "listed_integer_as_float": ('"gallery_image_id": [0,', '"gallery_image_id": [0.0,',
                                "entry 1: 'gallery_image_id' [0] must be an integer, got 0.0"),
    "listed_integer_as_string": ('"gallery_image_id": [0,', '"gallery_image_id": ["0",',
                                 "entry 1: 'gallery_image_id' [0] must be an integer, got '0'"),
    "integer_past_int64": ('"query_image_id": 1', '"query_image_id": 9223372036854775808',
                           "entry 1: 'query_image_id' is out of range: 9223372036854775808"),
    "number_as_string": ('"query_score": 0.5', '"query_score": "0.5"',
                         "entry 1: 'query_score' must be a number, got '0.5'"),
    "number_as_bool": ('"query_score": 0.5', '"query_score": false',
                       "entry 1: 'query_score' must be a number, got False"),
    "listed_number_as_bool": ('"query_bbox": [1,', '"query_bbox": [true,',
                              "entry 1: 'query_bbox' [0] must be a number, got True"),
    "null": ('"query_score": 0.5', '"query_score": null',
             "entry 1: 'query_score' must be a number, got None"),
    "listed_null": ('"gallery_bbox": [[0,', '"gallery_bbox": [[null,',
                    "entry 1: 'gallery_bbox' [0] [0] must be a number, got None"),
    "nan": ('"query_score": 0.5', '"query_score": NaN',
            "entry 1: 'query_score' holds a non-finite number"),
    "negative_infinity": ('"query_bbox": [1,', '"query_bbox": [-Infinity,',
                          "entry 1: 'query_bbox' holds a non-finite number"),
    "overflowing_exponent": ('"query_score": 0.5', '"query_score": 1e400',
                             "entry 1: 'query_score' holds a non-finite number"),
    "integer_past_uint64_as_number": ('"query_score": 0.5', '"query_score": 18446744073709551616',
                                      "entry 0: 'query_score' values do not convert"),
    "nested_deeper": ('"query_bbox": [1, 2, 30, 40]', '"query_bbox": [[1, 2, 30, 40]]',
                      "entry 1: 'query_bbox' has 1 items, expected 4"),
    "number_for_list": ('"query_bbox": [1, 2, 30, 40]', '"query_bbox": 1',
                        "entry 1: 'query_bbox' must be a list of 4, got int"),
    "list_too_long": ('"query_bbox": [1, 2, 30, 40]', '"query_bbox": [1, 2, 30, 40, 50]',
                      "entry 1: 'query_bbox' has 5 items, expected 4"),
    "repeated_key_last_wrong": ('"query_score": 0.5', '"query_score": 0.5, "query_score": "x"',
                                "entry 1: 'query_score' must be a number, got 'x'"),
    "misspelt_key": ('"query_score"', '"qury_scor"', "entry 1: missing key 'query_score'"),
    "key_in_other_case": ('"query_score"', '"quEry_scorE"', "entry 1: missing key 'query_score'"),
    "trailing_comma_in_list": ("[1, 2, 30, 40]", "[1, 2, 30, 40,]", "not valid JSON"),
    "trailing_comma_after_three": ("[1, 2, 30, 40]", "[1, 2, 30,]", "not valid JSON"),
    "trailing_comma_in_entry": ("]]}", "]],}", "not valid JSON"),
    "comment": ('"query_cls": 3', '"query_cls": /* three */ 3', "not valid JSON"),
    "lowercase_nan": ('"query_score": 0.5', '"query_score": nan', "not valid JSON"),
    "leading_zero": ('"query_cls": 3', '"query_cls": 03', "not valid JSON"),
}


def _file_with_edited_entry(tmp_path: Path, old: str, new: str) -> Path:
    assert old in ENTRY
    path = tmp_path / "results.json"
    path.write_text(f"[{ENTRY}, {ENTRY.replace(old, new, 1)}, {ENTRY}]", encoding="utf-8")
    return path


@pytest.mark.parametrize("case", sorted(TRAPS))
def test_lenient_conversions_are_left_to_the_strict_reader(tmp_path, case):
    old, new, message = TRAPS[case]
    path = _file_with_edited_entry(tmp_path, old, new)
    assert read_columns(path, _RETRIEVAL_FIELDS) is None
    text = _reader_message(path)
    assert text == _strict(path, _RETRIEVAL_FIELDS)
    assert message in text


ACCEPTED = {  # edits the strict reader accepts, with a value it must read
    "repeated_key_last_right": ('"query_score": 0.5', '"query_score": "x", "query_score": 0.75',
                                "query_score", 0.75),
    "extra_key": ('"query_score": 0.5', '"query_score": 0.5, "note": "true, [1,]"',
                  "query_score", 0.5),
    "escaped_key": ('"query_score": 0.5', '"query\\u005fscore": 0.25', "query_score", 0.25),
    "keys_reordered": ('"query_image_id": 1, "query_bbox": [1, 2, 30, 40]',
                       '"query_bbox": [1, 2, 30, 40], "query_image_id": 1', "query_image_id", 1),
    "integer_past_2_53_as_number": ('"query_score": 0.5', '"query_score": 9007199254740993',
                                    "query_score", 9007199254740992.0),
    "integer_past_int64_as_number": ('"query_score": 0.5', '"query_score": 9223372036854775808',
                                     "query_score", 2.0**63),
    "negative_zero_integer": ('"query_score": 0.5', '"query_score": -0', "query_score", 0.0),
    "negative_zero": ('"query_score": 0.5', '"query_score": -0.0', "query_score", -0.0),
    "tabs_and_newlines": ('"query_cls": 3', '"query_cls":\t\r\n3', "query_cls", 3),
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_what_the_strict_reader_accepts_reads_the_same(tmp_path, case):
    old, new, key, value = ACCEPTED[case]
    path = _file_with_edited_entry(tmp_path, old, new)
    _agree(path, _RETRIEVAL_FIELDS)
    read = load_columns(path, _RETRIEVAL_FIELDS)[0][key][1]
    assert read == value
    assert np.signbit(read) == np.signbit(value)
    assert len(read_retrieval_results(path)) == 3


WHOLE_FILES = {  # the text of a whole file, and the strict reader's message
    "byte_order_mark": (f"\ufeff[{ENTRY}]", "not valid JSON"),
    "form_feed": (f"[{ENTRY}]\f", "not valid JSON"),
    "empty": ("", "not valid JSON"),
    "whitespace_only": (" \n", "not valid JSON"),
    "trailing_comma": (f"[{ENTRY},]", "not valid JSON"),
    "two_documents": (f"[{ENTRY}][{ENTRY}]", "not valid JSON"),
    "object": (ENTRY, "holds a JSON list of entries, not a dict"),
    "list_of_lists": (f"[[{ENTRY}]]", "entry 0: must be a JSON object, got list"),
    "list_of_numbers": ("[1, 2]", "entry 0: must be a JSON object, got int"),
}


@pytest.mark.parametrize("case", sorted(WHOLE_FILES))
def test_files_that_are_not_lists_of_entries_are_left_to_the_strict_reader(tmp_path, case):
    text, message = WHOLE_FILES[case]
    path = tmp_path / "results.json"
    path.write_text(text, encoding="utf-8")
    assert read_columns(path, _RETRIEVAL_FIELDS) is None
    text = _reader_message(path)
    assert text == _strict(path, _RETRIEVAL_FIELDS)
    assert message in text


def test_bools_among_numbers_are_refused_in_lists_too():
    entries = [RETRIEVAL_ENTRY, dict(RETRIEVAL_ENTRY, query_cls=True),
               dict(RETRIEVAL_ENTRY, query_bbox=[1, 2, 30, False])]
    with pytest.raises(EntriesError) as error:
        read_retrieval_results(entries)
    assert "entry 1: 'query_cls' must be an integer, got True" in str(error.value)
    assert "entry 2: 'query_bbox' [3] must be a number, got False" in str(error.value)


@pytest.mark.parametrize(("old", "new", "message"), [
    ('"query_cls": 3', '"query_cls": 9223372036854775808',
     "entry 2999: 'query_cls' is out of range"),
    ("[1, 2, 30, 40]", "[1, 2, 30,]", "not valid JSON"),
])
def test_a_fault_far_into_the_file_leaves_it_to_the_strict_reader(tmp_path, old, new, message):
    path = tmp_path / "results.json"
    path.write_text(f"[{', '.join([ENTRY] * 2999)}, {ENTRY.replace(old, new)}]")
    assert read_columns(path, _RETRIEVAL_FIELDS) is None
    assert message in _reader_message(path)


def test_integers_past_int64_in_every_entry_are_out_of_range(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps([dict(RETRIEVAL_ENTRY, gallery_image_id=[2**63] * 20)]))
    assert read_columns(path, _RETRIEVAL_FIELDS) is None
    assert "entry 0: 'gallery_image_id' [0] is out of range" in _reader_message(path)


def test_an_empty_list_reads_as_empty_arrays(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("[ ]")
    submission = read_retrieval_results(path)
    assert len(submission) == 0
    assert submission.gallery_box.shape == (0, 20, 4)
    _agree(path, _RETRIEVAL_FIELDS)


def test_a_file_name_with_glob_characters_is_read_fast(tmp_path):
    path = tmp_path / "results[1]*?{a}.json"
    path.write_text(json.dumps([RETRIEVAL_ENTRY] * 2))
    assert _agree(path, _RETRIEVAL_FIELDS) is not None
    assert len(read_retrieval_results(path)) == 2


# --- clean files take the fast path, to the bit --------------------------------------------------

def test_written_results_of_every_magnitude_are_read_fast_and_identically(tmp_path):
    rng = np.random.default_rng(0)
    count = 3000
    scale = 10.0 ** rng.integers(-12, 12, (count, 1))
    prediction = {
        "image_id": 7, "labels": rng.integers(1, 14, count),
        "scores": rng.random(count) * scale[:, 0],
        "boxes": np.sort(rng.random((count, 4)), axis=1) * scale,
        "gallery_image_ids": rng.integers(0, 2**62, (count, 20)) - 2**61,
        "gallery_boxes": np.sort(rng.random((count, 20, 4)), axis=2) * scale[:, :, None],
    }
    path = tmp_path / "results.json"
    write_results(path, retrieval_results([prediction]))
    arrays = _agree(path, _RETRIEVAL_FIELDS)
    assert arrays is not None
    submission = read_retrieval_results(path)
    assert submission.gallery_box.flags.writeable
    assert np.array_equal(submission.gallery_image_id, prediction["gallery_image_ids"])


def test_the_real_ground_truth_is_read_fast_and_identically(val_query_gt, val_gallery_gt,
                                                            tmp_path):
    for name, data, fields, reader in (("q.json", val_query_gt, _QUERY_FIELDS, read_query_gt),
                                       ("g.json", val_gallery_gt, _GALLERY_FIELDS,
                                        read_gallery_gt)):
        path = tmp_path / name
        path.write_text(json.dumps(data))
        assert _agree(path, fields) is not None
        from_file, from_list = reader(path), reader(data)
        assert np.array_equal(from_file.box, from_list.box)
        assert np.array_equal(from_file.image_id, from_list.image_id)


# --- exactness: every number to the bit of what json.load and numpy make of it ------------------

VALUE = (Field("v", (), False),)


def _read_tokens(tmp_path: Path, tokens: list[str]) -> dict | None:
    path = tmp_path / "tokens.json"
    path.write_text("[" + ", ".join(f'{{"v": {token}}}' for token in tokens) + "]")
    return _agree(path, VALUE)


def _assert_exact(tmp_path: Path, tokens: list[str]) -> None:
    arrays = _read_tokens(tmp_path, tokens)
    assert arrays is not None
    expected = np.array([float(json.loads(token)) for token in tokens])
    assert arrays["v"].tobytes() == expected.tobytes()


SPECIAL = [
    "0", "-0", "7", "-7", "9223372036854775807", "-9223372036854775808", "999999999999999999",
    "0.0", "-0.0", "0e5", "-0e-5", "0.000", "0e999999", "-0.0e-999999",
    "1e22", "1e23", "1e27", "1e28", "1E+2", "1e+0", "1e-0", "2.5E-3", "1e-05", "1.0",
    "9007199254740993", "9007199254740993.0", "9007199254740993e0", "9007199254740995.0",
    "4.9e-324", "5e-324", "2.4703282292062327e-324", "2.2250738585072014e-308", "1e-400",
    "1.7976931348623157e308", "1.7976931348623158e308", "-1e308", "1e300", "1e20",
    "0.000123", "0.0000000000000000000000000123", "0.00000000000000000001234567890123456789",
    "1.5e-20", "123e-27", "123e-28", "12345678901234567e10", "1234567890123456789e-27",
    "1234567890123456789", "1234567890123456789.0", "12345678901234567890.0",
    "1234567890123456789012345.0", "1.234567890123456789012345", "0.1", "0.2", "0.3",
    "100000000000000000000000000000e-30", "3.141592653589793", "2.718281828459045e-10",
    "9223372036854775808", "18446744073709551615",
]


def test_special_tokens_convert_exactly(tmp_path):
    _assert_exact(tmp_path, SPECIAL)


@pytest.mark.parametrize("token", ["1e400", "-1e400", "1.7976931348623159e308", "1" * 400])
def test_numbers_past_the_float_range_are_left_to_the_strict_reader(tmp_path, token):
    # json reads these as infinities (or an integer no float array holds): the strict reader
    # refuses them, so the fast one must not read them.
    assert _read_tokens(tmp_path, ["1.5", token]) is None
    assert isinstance(_strict(tmp_path / "tokens.json", VALUE), str)


def test_float32_values_written_as_float64_convert_exactly(tmp_path):
    rng = np.random.default_rng(0)
    scale = 10.0 ** rng.integers(-8, 9, 20000)
    values = (rng.random(20000) * scale).astype(np.float32).astype(np.float64)
    _assert_exact(tmp_path, [repr(float(v)) for v in values * rng.choice([-1, 1], 20000)])


def test_random_doubles_convert_exactly(tmp_path):
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2**63, 20000, dtype=np.int64).view(np.float64)
    tokens = [repr(float(value)) for value in bits[np.isfinite(bits)]]
    tokens += [repr(float(value)) for value in rng.standard_normal(20000) * 1e5]
    tokens += [f"{value:.15e}" for value in rng.standard_normal(5000) * 1e-5]
    tokens += [f"{value:.20f}" for value in rng.random(5000)]
    _assert_exact(tmp_path, tokens)


def test_integers_and_integral_floats_convert_exactly(tmp_path):
    rng = np.random.default_rng(2)
    integers = rng.integers(-(2**63), 2**63 - 1, 5000, dtype=np.int64, endpoint=True)
    tokens = [str(int(value)) for value in integers]
    tokens += [repr(float(value)) for value in integers]  # 1.2345e+18 style
    tokens += [f"{int(value)}.0" for value in integers[:1000] // 10]
    tokens += [f"{int(value)}e0" for value in integers[:1000]]
    _assert_exact(tmp_path, tokens)


def test_ties_and_near_ties_round_to_even_exactly(tmp_path):
    """Values halfway between two doubles, exactly, and a hair either side of halfway."""
    rng = np.random.default_rng(3)
    tokens = []
    for _ in range(3000):
        mantissa = int(rng.integers(2**52, 2**53))  # 53 bits: the tie of mantissa and mantissa+1
        exponent = int(rng.integers(-4, 14))  # the ulp is 2**exponent
        tie = Decimal(2 * mantissa + 1) * Decimal(2) ** (exponent - 1)
        text = format(tie, "f")
        tokens.append(text if "." in text else text + ".0")
        digits, point = text.replace(".", ""), len(text.split(".")[0])
        tokens.append(f"{digits}e{point - len(digits)}")  # the same, as an exponent form
        tokens.append(f"{digits}1e{point - len(digits) - 1}")  # a hair above
        below = str(int(digits) - 1) + "9"
        tokens.append(f"{below}e{point - len(below)}")  # a hair below
    _assert_exact(tmp_path, tokens)


def test_long_and_short_mantissas_with_every_exponent_convert_exactly(tmp_path):
    rng = np.random.default_rng(4)
    tokens = []
    for digits in (1, 5, 15, 16, 17, 18, 19, 20, 25, 40):
        for _ in range(300):
            text = "".join(str(int(digit)) for digit in rng.integers(0, 10, digits))
            text = str(int(rng.integers(1, 10))) + text[1:]
            point = int(rng.integers(1, digits + 1))
            mantissa = text[:point] + ("." + text[point:] if point < digits else "")
            exponent = int(rng.integers(-40, 41))
            tokens.append(f"{mantissa}e{exponent:+d}")
            tokens.append(mantissa if "." in mantissa else mantissa + ".0")
            tokens.append("0." + "0" * int(rng.integers(0, 30)) + text)
    _assert_exact(tmp_path, tokens)


NOT_NUMBERS = ["01", "-01", "00", "1.", "-", "1e", "1e+", "1.5e+", "1E-", "+1", ".5", "-.5", "1.e5",
               "1.5.3", "1e5e5", "1ee5", "--1", "0x10", "1_000", "Infinity", "-Infinity", "NaN",
               "1 2", "- 1", "1.5 e3", "\u0663", "true", "null", '"1"', "[1]", "{}"]


@pytest.mark.parametrize("token", NOT_NUMBERS)
def test_what_is_not_a_json_number_is_left_to_the_strict_reader(tmp_path, token):
    path = tmp_path / "results.json"
    entry = json.dumps(RETRIEVAL_ENTRY)
    path.write_text(f"[{entry}, {entry.replace('0.5', token, 1)}]", encoding="utf-8")
    assert read_columns(path, _RETRIEVAL_FIELDS) is None
    with pytest.raises(EntriesError) as error:
        load_columns(path, _RETRIEVAL_FIELDS)
    assert str(error.value) == _strict(path, _RETRIEVAL_FIELDS)


def test_a_list_hidden_where_a_number_belongs_is_left_to_the_strict_reader(tmp_path):
    # flattened, [1, [2], 30, 40] holds four numbers like a box; the count of lists betrays it
    path = tmp_path / "results.json"
    entry = json.dumps(RETRIEVAL_ENTRY)
    hidden = entry.replace("[1, 2, 30, 40]", "[1, [2], 30, 40]", 1)
    emptied = entry.replace("[0, 0, 5.5, 6]", "[[], 0, 5.5, [6, 7]]", 1)
    for edited in (hidden, emptied):
        path.write_text(f"[{entry}, {edited}]", encoding="utf-8")
        assert read_columns(path, _RETRIEVAL_FIELDS) is None
        assert "entry 1: " in _reader_message(path)


def test_json_whitespace_and_indentation_read_identically(tmp_path):
    path = tmp_path / "results.json"
    entries = [json.loads(json.dumps(RETRIEVAL_ENTRY)) for _ in range(30)]
    for index, entry in enumerate(entries):
        entry["query_score"] = index / 7
        entry["gallery_bbox"][3] = [-index * 1.25e-7, 2.5, 1e17, 3]
    path.write_text(json.dumps(entries, indent="\t").replace("\n", "\r\n"), encoding="utf-8")
    arrays = _agree(path, _RETRIEVAL_FIELDS)
    assert arrays is not None
    assert arrays["query_score"][7] == 1.0


def test_a_random_validation_scale_submission_round_trips_bit_exactly(tmp_path, val_query_gt,
                                                                    val_gallery_gt):
    entries = random_retrieval_results(val_query_gt[:1500], val_gallery_gt, seed=5)
    path = tmp_path / "results.json"
    write_results(path, entries)
    arrays = _agree(path, _RETRIEVAL_FIELDS)
    assert arrays is not None
    boxes = np.array([entry["gallery_bbox"] for entry in entries], dtype=np.float64)
    assert arrays["gallery_bbox"].tobytes() == boxes.tobytes()
    assert arrays["query_score"].tolist() == [entry["query_score"] for entry in entries]
    assert len(read_retrieval_results(path)) == len(entries)
