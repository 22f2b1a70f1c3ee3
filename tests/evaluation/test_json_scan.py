"""The C scanner behind the fast JSON reader: built, exact to the bit, and strict about grammar.

``matchrcnn.evaluation._json_scan.scan`` turns a JSON text into a skeleton (numbers as ``#``,
whitespace dropped) and one 8-byte value per number: an integer token's int64, or the float64
that ``float(token)`` gives. These tests hold it to Python's own conversions token by token, and
to the strict reader's errors for files it must not vouch for.
"""

from __future__ import annotations

import json
import mmap
import struct
from decimal import Decimal

import numpy as np
import pytest

from matchrcnn.evaluation import fast_json
from matchrcnn.evaluation.entries import EntriesError, load_columns
from matchrcnn.evaluation.fast_json import read_columns
from matchrcnn.evaluation.results import (
    _RETRIEVAL_FIELDS,
    read_retrieval_results,
    retrieval_results,
    write_results,
)
from matchrcnn.evaluation.synthetic import random_retrieval_results

from .test_fast_json import ENTRY, _agree, _strict


def test_the_scanner_is_built_and_used():
    # An install without a compiler falls back to the strict reader; this project's CI builds
    # the scanner, so a silent fallback must fail here rather than skip.
    from matchrcnn.evaluation import _json_scan

    assert fast_json._json_scan is _json_scan


def _scan(text: bytes | bytearray | memoryview | mmap.mmap | np.ndarray):
    """The scanner's skeleton, values and integer flags for a whole text, or None."""
    skeleton, values, integer = fast_json.scan_outputs(len(text))
    scanned = fast_json._json_scan.scan(text, skeleton, values, integer)
    if scanned is None:
        return None
    length, count = scanned
    return skeleton[:length].tobytes(), values[:count], integer[:count]


def _is_integer_token(token: str) -> bool:
    return not any(character in token for character in ".eE")


def _expected(token: str) -> tuple[bool, int]:
    """Whether json reads the token as an int, and its value's int64 or float64 bits."""
    if _is_integer_token(token):
        return True, int(token)
    return False, struct.unpack("<q", struct.pack("<d", float(token)))[0]


def _assert_exact(tokens: list[str]) -> None:
    scanned = _scan(("[" + ", ".join(tokens) + "]").encode())
    assert scanned is not None
    skeleton, values, integer = scanned
    assert skeleton == b"[" + b",".join([b"#"] * len(tokens)) + b"]"
    wrong = [(token, int(value), expected)
             for token, value, flag in zip(tokens, values, integer, strict=True)
             if (bool(flag), int(value)) != (expected := _expected(token))]
    assert not wrong, wrong[:5]


# --- exactness: every value to the bit of float(token), or int(token) ---------------------------

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
]


def test_special_tokens_convert_exactly():
    _assert_exact(SPECIAL)


@pytest.mark.parametrize("token", ["1e400", "-1e400", "1.7976931348623159e308", "1" * 400])
def test_floats_that_overflow_to_infinity_are_declined(token):
    # json reads these as infinities, which the strict reader refuses; the digits alone are an
    # integer token past int64.
    assert _scan(f"[1.5, {token}]".encode()) is None


def test_large_finite_floats_are_read_fast_and_identically(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(f"[{ENTRY}, {ENTRY.replace('0.5', '-1.7976931348623157e308', 1)}, "
                    f"{ENTRY.replace('0.5', '9223372036854775808.0', 1)}]", encoding="utf-8")
    arrays = _agree(path, _RETRIEVAL_FIELDS)
    assert arrays is not None
    assert arrays["query_score"].tolist() == [0.5, -1.7976931348623157e308, 2.0**63]


def test_json_reads_the_integer_minus_zero_as_zero_and_the_float_as_minus_zero():
    assert json.loads("[-0, -0.0]") == [0, -0.0]
    _, values, integer = _scan(b"[-0, -0.0, -0e1]")
    assert list(integer) == [True, False, False]
    assert values[0] == 0
    assert np.signbit(values[1:].view(np.float64)).all()


def test_float32_values_written_as_float64_convert_exactly():
    rng = np.random.default_rng(0)
    scale = 10.0 ** rng.integers(-8, 9, 20000)
    values = (rng.random(20000) * scale).astype(np.float32).astype(np.float64)
    tokens = [repr(float(value)) for value in values * rng.choice([-1, 1], 20000)]
    _assert_exact(tokens)


def test_random_doubles_convert_exactly():
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2**63, 20000, dtype=np.int64).view(np.float64)
    tokens = [repr(float(value)) for value in bits[np.isfinite(bits)]]
    tokens += [repr(float(value)) for value in rng.standard_normal(20000) * 1e5]
    tokens += [f"{value:.15e}" for value in rng.standard_normal(5000) * 1e-5]
    tokens += [f"{value:.20f}" for value in rng.random(5000)]
    _assert_exact(tokens)


def test_integers_and_integral_floats_convert_exactly():
    rng = np.random.default_rng(2)
    integers = rng.integers(-(2**63), 2**63 - 1, 5000, dtype=np.int64, endpoint=True)
    tokens = [str(int(value)) for value in integers]
    tokens += [repr(float(value)) for value in integers]  # 1.2345e+18 style
    tokens += [f"{int(value)}.0" for value in integers[:1000] // 10]
    tokens += [f"{int(value)}e0" for value in integers[:1000]]
    _assert_exact(tokens)


def test_ties_and_near_ties_round_to_even_exactly():
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
    _assert_exact(tokens)


def test_long_and_short_mantissas_with_every_exponent_convert_exactly():
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
    _assert_exact(tokens)


# --- grammar: what JSON refuses, the scanner declines or leaves to the skeleton -----------------

NOT_NUMBERS = ["01", "-01", "00", "1.", "-", "1e", "1e+", "1.5e+", "1E-", "+1", ".5", "-.5", "1.e5",
               "1.5.3", "1e5e5", "1ee5", "--1", "0x10", "1_000", "Infinity", "-Infinity", "NaN",
               "1 2", "- 1", "1.5 e3", "\u0663", "12345678901234567890", "-9223372036854775809"]


@pytest.mark.parametrize("token", NOT_NUMBERS)
def test_what_json_refuses_as_a_number_is_not_scanned_as_one(token):
    scanned = _scan(f"[{token}]".encode())
    assert scanned is None or scanned[0] != b"[#]"


@pytest.mark.parametrize("token", NOT_NUMBERS)
def test_a_token_the_scanner_refuses_leaves_the_file_to_the_strict_reader(tmp_path, token):
    path = tmp_path / "results.json"
    path.write_text(f"[{ENTRY}, {ENTRY.replace('0.5', token, 1)}]", encoding="utf-8")
    assert read_columns(path, _RETRIEVAL_FIELDS) is None
    strict = _strict(path, _RETRIEVAL_FIELDS)
    if isinstance(strict, str):  # malformed: the same error as before
        with pytest.raises(EntriesError) as error:
            load_columns(path, _RETRIEVAL_FIELDS)
        assert str(error.value) == strict
    else:  # a float field holding a long integer is valid, and read strictly
        arrays = load_columns(path, _RETRIEVAL_FIELDS)[0]
        assert all(arrays[key].tobytes() == strict[key].tobytes() for key in strict)


@pytest.mark.parametrize("text", [b'["a\\"b"]', b'["a\\u0041"]', b'["a\tb"]', b'["a\nb"]',
                                  b'["open]', b"[\xc3\xa9]", b"\xef\xbb\xbf[1]", b'[1, "\x00"]'])
def test_escapes_controls_and_non_ascii_outside_strings_are_declined(text):
    assert _scan(text) is None


def test_strings_and_other_bytes_are_copied_verbatim():
    skeleton, values, _ = _scan(b' {"k\xc3\xa9y , 1": [1 ,\t2e0 ,-3.5 ] , "x": true}\r\n')
    assert skeleton == b'{"k\xc3\xa9y , 1":[#,#,#],"x":true}'
    assert list(values[:1]) == [1]
    assert list(values[1:].view(np.float64)) == [2.0, -3.5]


# --- the scanner's interface --------------------------------------------------------------------

def test_any_buffer_of_the_text_scans_alike(tmp_path):
    text = ("[" + ", ".join([ENTRY] * 5) + "]").encode()
    path = tmp_path / "text.json"
    path.write_bytes(text)
    expected = _scan(text)
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m:
        others = [_scan(m)]
    others += [_scan(bytearray(text)), _scan(memoryview(text)), _scan(np.frombuffer(text, "u1"))]
    for other in others:
        assert other[0] == expected[0]
        assert other[1].tobytes() == expected[1].tobytes()
        assert other[2].tobytes() == expected[2].tobytes()


def test_outputs_too_small_are_refused_or_declined():
    scan = fast_json._json_scan.scan
    text = b"[1, 2, 3]"
    skeleton, integer = np.empty(9, np.uint8), np.empty(5, np.bool_)
    assert scan(text, skeleton, np.empty(2, np.int64), integer) is None  # room for 2 numbers
    assert scan(text, skeleton, np.empty(3, np.int64), integer) == (7, 3)
    with pytest.raises(ValueError):
        scan(text, np.empty(8, np.uint8), np.empty(5, np.int64), integer)
    with pytest.raises(TypeError):
        scan(text, skeleton, np.empty(5, np.int64))
    with pytest.raises((TypeError, BufferError)):
        scan(text, bytes(9), np.empty(5, np.int64), integer)  # read-only


# --- files: read in chunks, and written submissions round-trip -----------------------------------

@pytest.mark.parametrize("chunk", [8, 64, 1000])
def test_files_read_in_small_chunks_read_identically(tmp_path, monkeypatch, chunk):
    """Chunks are cut after commas; a stretch without one (a key, say) grows the buffer."""
    monkeypatch.setattr(fast_json, "CHUNK", chunk)
    path = tmp_path / "results.json"
    entries = [json.loads(ENTRY) for _ in range(30)]
    for index, entry in enumerate(entries):
        entry["query_score"] = index / 7
        entry["gallery_bbox"][3] = [-index * 1.25e-7, 2.5, 1e17, 3]
    path.write_text(json.dumps(entries, indent=1), encoding="utf-8")
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


def test_predictions_written_by_the_project_read_back_to_the_bit(tmp_path):
    rng = np.random.default_rng(6)
    count = 500
    prediction = {
        "image_id": 3, "labels": rng.integers(1, 14, count),
        "scores": rng.random(count).astype(np.float32),
        "boxes": np.sort(rng.random((count, 4)) * 800, axis=1).astype(np.float32),
        "gallery_image_ids": rng.integers(0, 40000, (count, 20)),
        "gallery_boxes": np.sort(rng.random((count, 20, 4)) * 800, axis=2).astype(np.float32),
    }
    path = tmp_path / "results.json"
    write_results(path, retrieval_results([prediction]))
    arrays = _agree(path, _RETRIEVAL_FIELDS)
    assert arrays is not None
    assert np.array_equal(arrays["gallery_bbox"], prediction["gallery_boxes"].astype(np.float64))
