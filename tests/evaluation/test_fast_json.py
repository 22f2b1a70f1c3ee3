"""The fast JSON reader vouches only for files the strict reader accepts, and with the same arrays.

Every file here goes through both: ``read_columns`` either declines (None) or returns arrays equal
to the bit to those of the entry-by-entry ``columns``, and the public readers, which try the fast
reader first, raise exactly the strict reader's errors.
"""

from __future__ import annotations

import json
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
from matchrcnn.evaluation.fast_json import read_columns
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
    return fast


def _reader_message(path: Path) -> str:
    with pytest.raises(EntriesError) as error:
        read_retrieval_results(path)
    return str(error.value)


# --- the malformed corpus of test_results ------------------------------------------------------

WELL_TYPED = {"bad_class", "unknown_image", "flipped_box"}
"""Corpus cases whose values are well-formed; the checks after reading refuse them."""


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
