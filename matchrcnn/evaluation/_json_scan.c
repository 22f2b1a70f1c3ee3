/* One pass over a JSON text for the fast reader (matchrcnn/evaluation/fast_json.py).

scan(text, skeleton, values, integer) -> (skeleton length, numbers) | None

Reads a bytes-like text into the caller's writable buffers:
skeleton  the text less its JSON whitespace, with each number as one '#' and strings copied
          verbatim, quotes included
values    8 bytes per number, in file order: an integer token's value as an int64, any other
          token as the float64 that float(token) gives (which is how json reads it)
integer   a byte per number: 1 for an integer token (no fraction, no exponent), else 0

None means the scanner does not vouch for the text, not that it is wrong: a string holding a
backslash or a control byte, a byte >= 0x80 outside strings, a number that breaks JSON's grammar
or runs into another ("01", "1.", "1e", "-", "1.5.3"), an integer token past int64, a float too
large to be finite (1e400), or more numbers than `values` has room for. Other odd bytes (letters,
a stray '+' or '.') go to the skeleton, which the caller compares with the one it expects.

Floats are converted exactly, in integer arithmetic: up to 19 significant digits make a mantissa
m and the value is m * 10^e. For |e| <= 27 it is rounded from m * 5^e, or from the quotient of m
by 5^-e; the 2^e part of 10^e only moves the binary exponent. Any other token (more digits, a
larger exponent) is converted after the scan by PyOS_string_to_double, float()'s own conversion.
The GIL is released during the scan. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#ifndef __SIZEOF_INT128__
#error "_json_scan needs unsigned __int128 (gcc or clang on a 64-bit target)"
#endif

typedef unsigned __int128 u128;

#define MARKER '#'
#define MAX_DIGITS 19        /* 10^19 - 1 < 2^64: the significant digits a uint64 holds */
#define MAX_POW5 27          /* 5^27 < 2^63: m * 5^27 < 2^127, and a divisor fits 64 bits */
#define HUGE_EXPONENT 100000 /* an exponent past this is left to PyOS_string_to_double */

static uint64_t pow5[MAX_POW5 + 1], reciprocal[MAX_POW5 + 1]; /* 5^k, floor(2^(64+t) / 5^k) */
static int pow5_bits[MAX_POW5 + 1];                            /* t: 2^t <= 5^k < 2^(t+1) */
static const uint64_t pow10[9] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000,
                                  100000000};

/* What a byte outside strings starts: kinds[byte], filled at import. */
enum { COPIED, SPACE, NUMBER, QUOTE, REFUSED };
static unsigned char kinds[256];
/* The bytes JSON does not allow right after a complete number ("01", "1.2.3", "1e2e3"). */
static unsigned char continues_number[256];

enum { SCANNED, DECLINED, NO_MEMORY };

typedef struct {
    Py_ssize_t index, start, length;
} Hard; /* a token left to PyOS_string_to_double: its number's index, offset and length */

typedef struct {
    const unsigned char *begin, *end;
    uint64_t *values; /* int64 or float64 bits */
    unsigned char *integer;
    Py_ssize_t count, capacity; /* numbers found, and room for them */
    Hard *hard;
    Py_ssize_t hard_count, hard_capacity;
} Scan;

static inline int is_digit(unsigned char c) { return (unsigned char)(c - '0') < 10; }


static inline uint64_t bits_of(double value)
{
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

/* 2^e as a double, for the normal range -1022 <= e <= 1023 (built from its bits: ldexp costs
   a library call per number). */
static inline double power_of_two(int e)
{
    uint64_t bits = (uint64_t)(e + 1023) << 52;
    double value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* The double nearest to (x + f) * 2^e, ties to even, for x > 0 and 0 <= f < 1 with f > 0 iff
   `sticky`. Callers guarantee x >= 2^53 whenever sticky is set (so f only breaks ties below the
   kept bits) and a result in the normal range; then the product below is exact. */
static inline double round_to_double(uint64_t x, int sticky, int e)
{
    int shift = 11 - __builtin_clzll(x); /* the bits of x past 53 */
    if (shift <= 0)
        return (double)x * power_of_two(e);
    uint64_t top = x >> shift, rest = x & ((UINT64_C(1) << shift) - 1);
    uint64_t half = UINT64_C(1) << (shift - 1);
    /* Rounding up is a coin toss for the branch predictor: computed, not branched on. The sum
       may reach 2^53, still exact as a double. */
    top += (rest > half) | ((rest == half) & ((sticky != 0) | (top & 1)));
    return (double)top * power_of_two(e + shift);
}

/* m * 10^e10 correctly rounded, for m > 0 and -MAX_POW5 <= e10 <= MAX_POW5. */
static inline double from_decimal(uint64_t m, int e10)
{
    if (e10 >= 0) { /* n = m * 5^e10 < 2^64 * 2^63: exact in 128 bits */
        u128 n = (u128)m * pow5[e10];
        uint64_t high = (uint64_t)(n >> 64);
        if (high == 0)
            return round_to_double((uint64_t)n, 0, e10);
        int s = 64 - __builtin_clzll(high); /* keep the top 64 bits, the rest is sticky */
        return round_to_double((uint64_t)(n >> s), ((uint64_t)n << (64 - s)) != 0, e10 + s);
    }
    /* m / 10^k = m / 5^k * 2^-k. With m normalised to a = m * 2^z in [2^63, 2^64) and
       2^t <= d = 5^k < 2^(t+1), the quotient q = floor(a * 2^t / d) lies in (2^62, 2^64): 53
       bits to keep, a rounding bit, and the rest with the remainder r as sticky bits. It is
       computed without a division: with R = floor(2^(64+t) / d) (a table), a * R / 2^64 falls
       short of a * 2^t / d by less than a / 2^64 < 1, so its floor is q or q - 1, and the
       remainder says which. That remainder is below 2d < 2^64, so 64-bit arithmetic, which
       computes it modulo 2^64, gives it exactly. */
    int k = -e10, t = pow5_bits[k], z = __builtin_clzll(m);
    uint64_t d = pow5[k], a = m << z;
    uint64_t q = (uint64_t)(((u128)a * reciprocal[k]) >> 64);
    uint64_t r = (a << t) - q * d;
    int short_by_one = r >= d; /* no branch: as unpredictable as the rounding */
    q += short_by_one;
    r -= short_by_one ? d : 0;
    return round_to_double(q, r != 0, -t - z - k); /* q + r/d = a * 2^t / d = m * 2^(z+t) / d */
}

/* The digits that start p[0..7] (at most 8): their count, and their value in *value. Needs 8
   readable bytes. */
static inline int digit_chunk(const unsigned char *p, uint64_t *value)
{
    uint64_t x;
    memcpy(&x, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    x = __builtin_bswap64(x); /* below, byte i of x is p[i] */
#endif
    /* '0'..'9' ^ 0x30 are 0..9, every other byte is above 9: the top bit of each byte of
       (b & 0x7F) + 0x76 is set iff b & 0x7F > 9 (and no carry leaves the byte). */
    x ^= 0x3030303030303030u;
    uint64_t other = (((x & 0x7F7F7F7F7F7F7F7Fu) + 0x7676767676767676u) | x) & 0x8080808080808080u;
    int n = other ? __builtin_ctzll(other) >> 3 : 8; /* the first non-digit byte, or 8 */
    /* The n digits to the top bytes and zeros below them: the same number with leading zeros.
       Two shifts, as one by 64 (no digit) is undefined. */
    x = (x << (32 - 4 * n)) << (32 - 4 * n);
    x = (x * 10 + (x >> 8)) & 0x00FF00FF00FF00FFu;   /* 16-bit lanes: pairs, 0..99 */
    x = (x * 100 + (x >> 16)) & 0x0000FFFF0000FFFFu; /* 32-bit lanes: fours, 0..9999 */
    *value = (x * 10000 + (x >> 32)) & 0xFFFFFFFFu;  /* 0..99999999 */
    return n;
}

/* Appends the digits at p to m (modulo 2^64: past 19 digits the caller does not use m) and
   returns the byte after them. Eight at a time: a byte loop's exit would be mispredicted. */
static inline const unsigned char *read_digits(const unsigned char *p, const unsigned char *end,
                                               uint64_t *m)
{
    uint64_t value;
    int n;
    do {
        if (end - p < 8) { /* the last bytes of the text */
            for (; p < end && is_digit(*p); p++)
                *m = *m * 10 + (*p - '0');
            return p;
        }
        n = digit_chunk(p, &value);
        *m = *m * pow10[n] + value;
        p += n;
    } while (n == 8);
    return p;
}

/* Reads the number at *pp (a '-' or a digit) into the next slot and moves *pp past it. */
static int scan_number(Scan *scan, const unsigned char **pp)
{
    const unsigned char *p = *pp, *end = scan->end, *start = p, *first;
    int negative = *p == '-', integer = 1, hard = 0;
    uint64_t m = 0;
    Py_ssize_t digits = 0; /* significant digits: from the first nonzero one */
    Py_ssize_t e10 = 0;    /* the value is m * 10^e10 while digits <= MAX_DIGITS */

    p += negative;
    if (p == end || !is_digit(*p))
        return DECLINED;
    if (*p == '0') {
        p++; /* a digit after it is refused below */
    } else {
        first = p;
        p = read_digits(p, end, &m);
        digits = p - first;
    }
    if (p < end && *p == '.') {
        integer = 0;
        if (++p == end || !is_digit(*p))
            return DECLINED;
        const unsigned char *fraction = p;
        while (digits == 0 && p < end && *p == '0') /* not significant: 0.05 is 5 * 10^-2 */
            p++;
        first = p;
        p = read_digits(p, end, &m);
        digits += p - first;
        e10 = -(p - fraction);
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        integer = 0;
        int exponent_negative = 0;
        Py_ssize_t exponent = 0;
        if (++p < end && (*p == '+' || *p == '-'))
            exponent_negative = *p++ == '-';
        if (p == end || !is_digit(*p))
            return DECLINED;
        for (; p < end && is_digit(*p); p++) {
            if (exponent > HUGE_EXPONENT)
                hard = 1; /* stop counting before it overflows */
            else
                exponent = exponent * 10 + (*p - '0');
        }
        e10 += exponent_negative ? -exponent : exponent;
    }
    if (p < end && continues_number[*p])
        return DECLINED;
    *pp = p;

    Py_ssize_t i = scan->count;
    if (i == scan->capacity)
        return DECLINED;
    scan->count++;
    scan->integer[i] = (unsigned char)integer;
    if (integer) {
        /* m holds the whole token (19 digits fit a uint64); past int64 the strict reader
           judges it (out of range for an integer field, a float for the others) */
        if (digits > MAX_DIGITS || m > (uint64_t)INT64_MAX + negative)
            return DECLINED;
        scan->values[i] = negative ? 0 - m : m; /* the int64's two's complement */
        return SCANNED;
    }
    if (digits == 0) { /* 0.0, -0.0, 0e400 */
        scan->values[i] = (uint64_t)negative << 63;
        return SCANNED;
    }
    if (!hard && digits <= MAX_DIGITS && -MAX_POW5 <= e10 && e10 <= MAX_POW5) {
        scan->values[i] = bits_of(from_decimal(m, (int)e10)) | (uint64_t)negative << 63;
        return SCANNED;
    }
    if (scan->hard_count == scan->hard_capacity) {
        Py_ssize_t capacity = scan->hard_capacity ? 2 * scan->hard_capacity : 256;
        Hard *grown = PyMem_RawRealloc(scan->hard, (size_t)capacity * sizeof(Hard));
        if (grown == NULL)
            return NO_MEMORY;
        scan->hard = grown;
        scan->hard_capacity = capacity;
    }
    scan->hard[scan->hard_count++] = (Hard){i, start - scan->begin, p - start};
    return SCANNED; /* its value is set after the scan */
}

/* The skeleton into `out` (room for the whole text), the numbers into the scan's arrays. */
static int scan_text(Scan *scan, unsigned char *out, Py_ssize_t *out_length)
{
    const unsigned char *p = scan->begin, *end = scan->end;
    unsigned char *written = out;
    while (p < end) {
        unsigned char kind = kinds[*p];
        if (kind == NUMBER) {
            int status = scan_number(scan, &p);
            if (status != SCANNED)
                return status;
            *written++ = MARKER; /* a number is at least one byte: out keeps up with p */
            if (end - p >= 2 && p[0] == ',' && p[1] == ' ') { /* json.dumps' separator */
                *written++ = ',';
                p += 2;
            }
        } else if (kind == COPIED) {
            *written++ = *p++;
        } else if (kind == SPACE) {
            p++;
        } else if (kind == QUOTE) {
            *written++ = *p++;
            while (p < end && *p != '"') {
                if (*p == '\\' || *p < 0x20)
                    return DECLINED; /* escapes are json's to decode; controls are invalid */
                *written++ = *p++;
            }
            if (p == end)
                return DECLINED;
            *written++ = *p++;
        } else {
            return DECLINED; /* not ASCII outside a string: a byte order mark, say */
        }
    }
    *out_length = written - out;
    return SCANNED;
}

/* Converts the tokens the scan left to PyOS_string_to_double (with the GIL held): SCANNED,
   DECLINED if one overflows (the strict reader refuses what json reads as infinite), or -1 with
   an exception set. */
static int convert_hard(Scan *scan)
{
    for (Py_ssize_t h = 0; h < scan->hard_count; h++) {
        Hard token = scan->hard[h];
        char *text = PyMem_Malloc((size_t)token.length + 1);
        if (text == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(text, scan->begin + token.start, (size_t)token.length);
        text[token.length] = '\0';
        /* float()'s own conversion; NULL: an overflow gives +-inf rather than an error */
        double value = PyOS_string_to_double(text, NULL, NULL);
        PyMem_Free(text);
        if (value == -1.0 && PyErr_Occurred())
            return -1;
        if (!Py_IS_FINITE(value))
            return DECLINED;
        scan->values[token.index] = bits_of(value);
    }
    return SCANNED;
}

static PyObject *scan_buffer(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    /* text, then the outputs, which the caller allocates (numpy backs large arrays with huge
       pages, several times cheaper to fill than malloc's): skeleton, room for len(text) bytes,
       values (8-byte aligned) and integer, room for as many numbers as the text may hold. A
       text of n bytes holds at most n / 2 + 1, as numbers are separated by at least a byte. */
    Py_buffer views[4];
    int held = 0, status;
    PyObject *result = NULL;
    Scan scan = {0};
    Py_ssize_t skeleton_length = 0;

    (void)module;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "scan(text, skeleton, values, integer)");
        return NULL;
    }
    for (; held < 4; held++)
        if (PyObject_GetBuffer(args[held], &views[held], held ? PyBUF_WRITABLE : PyBUF_SIMPLE))
            goto done;
    if (views[1].len < views[0].len || (uintptr_t)views[2].buf % 8) {
        PyErr_SetString(PyExc_ValueError, "the skeleton needs len(text) bytes, values alignment");
        goto done;
    }
    scan.begin = views[0].buf;
    scan.end = scan.begin + views[0].len;
    scan.values = views[2].buf;
    scan.integer = views[3].buf;
    scan.capacity = Py_MIN(views[2].len / 8, views[3].len);
    Py_BEGIN_ALLOW_THREADS
    status = scan_text(&scan, views[1].buf, &skeleton_length);
    Py_END_ALLOW_THREADS
    if (status == SCANNED && (status = convert_hard(&scan)) == SCANNED)
        result = Py_BuildValue("nn", skeleton_length, scan.count);
    else if (status == NO_MEMORY)
        PyErr_NoMemory();
    else if (status != -1)
        result = Py_NewRef(Py_None); /* declined */
done:
    PyMem_RawFree(scan.hard);
    while (held > 0)
        PyBuffer_Release(&views[--held]);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan_buffer, METH_FASTCALL,
     "scan(text, skeleton, values, integer) -> (skeleton length, numbers) or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_json_scan",
    .m_doc = "A one-pass scanner of JSON texts of numbers for matchrcnn.evaluation.fast_json.",
    .m_size = -1,
    .m_methods = methods,
};

static void fill_tables(void)
{
    for (int c = 0; c < 256; c++)
        kinds[c] = COPIED;
    for (int c = 0x80; c < 256; c++)
        kinds[c] = REFUSED;
    for (const char *c = "0123456789-"; *c; c++)
        kinds[(unsigned char)*c] = NUMBER;
    for (const char *c = " \t\n\r"; *c; c++)
        kinds[(unsigned char)*c] = SPACE;
    kinds['"'] = QUOTE;
    for (const char *c = "0123456789.eE+-"; *c; c++)
        continues_number[(unsigned char)*c] = 1;
    pow5[0] = 1;
    for (int k = 1; k <= MAX_POW5; k++) {
        pow5[k] = pow5[k - 1] * 5;
        pow5_bits[k] = 63 - __builtin_clzll(pow5[k]);
        reciprocal[k] = (uint64_t)(((u128)1 << (64 + pow5_bits[k])) / pow5[k]);
    }
}

PyMODINIT_FUNC PyInit__json_scan(void)
{
    fill_tables();
    return PyModule_Create(&module);
}
