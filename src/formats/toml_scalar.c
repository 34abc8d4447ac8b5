/* TOML scalars that are not strings: integers (decimal, 0x, 0o, 0b; 64-bit), floats
 * (fraction, exponent, inf, nan), booleans and the four date-time forms (RFC 3339 with the
 * TOML relaxations: space or 't' as the separator, lower-case 'z', local forms). */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/toml_internal.h"

/* Characters that may belong to a number, boolean or date-time. The token is taken greedily
 * and then checked as a whole, so "1.2.3" or "truex" fail instead of splitting. */
static bool is_token_char(int c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           c == '+' || c == '-' || c == '.' || c == ':';
}

static bool is_digit(int c) {
    return c >= '0' && c <= '9';
}

static bool all_digits(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!is_digit((unsigned char)s[i]))
            return false;
    return true;
}

static int digit_in_radix(int c, int radix) {
    int v = -1;
    if (c >= '0' && c <= '9')
        v = c - '0';
    else if (c >= 'a' && c <= 'f')
        v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
        v = c - 'A' + 10;
    return v >= 0 && v < radix ? v : -1;
}

/* Checks a run of digits with single underscores between digits. `offset` is where s starts in
 * the input, for the message. */
static int check_digit_group(TomlParser *p, const char *s, size_t n, size_t offset, int radix,
                             const char *what) {
    if (n == 0) {
        char found[32];
        return toml_fail(p, offset, "%s needs at least one digit, found %s", what,
                         toml_describe(p, offset, found, sizeof found));
    }
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '_') {
            if (i == 0 || i + 1 == n || s[i + 1] == '_')
                return toml_fail(p, offset + i, "in %s, an underscore must sit between two digits",
                                 what);
            continue;
        }
        if (digit_in_radix(c, radix) < 0) {
            char found[32];
            return toml_fail(p, offset + i, "invalid character %s in %s (in '%.*s')",
                             toml_describe(p, offset + i, found, sizeof found), what,
                             (int)(n < 40 ? n : 40), s);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Numbers */

static int parse_radix_integer(TomlParser *p, const char *s, size_t n, size_t offset,
                               TomlValue *out) {
    int radix = s[1] == 'x' ? 16 : s[1] == 'o' ? 8 : 2;
    const char *what = radix == 16  ? "a hexadecimal integer"
                       : radix == 8 ? "an octal integer"
                                    : "a binary integer";
    if (check_digit_group(p, s + 2, n - 2, offset + 2, radix, what) != 0)
        return -1;
    uint64_t acc = 0;
    for (size_t i = 2; i < n; i++) {
        if (s[i] == '_')
            continue;
        uint64_t d = (uint64_t)digit_in_radix((unsigned char)s[i], radix);
        if (acc > (UINT64_C(0x7FFFFFFFFFFFFFFF) - d) / (uint64_t)radix)
            return toml_fail(p, offset, "%s %.*s does not fit in a signed 64-bit integer", what,
                             (int)n, s);
        acc = acc * (uint64_t)radix + d;
    }
    out->kind = TOML_INTEGER;
    out->integer = (int64_t)acc;
    return 0;
}

static int parse_decimal_integer(TomlParser *p, const char *s, size_t n, size_t offset,
                                 TomlValue *out) {
    bool negative = s[0] == '-';
    size_t b = (s[0] == '+' || s[0] == '-') ? 1 : 0;
    if (check_digit_group(p, s + b, n - b, offset + b, 10, "an integer") != 0)
        return -1;
    if (s[b] == '0' && n - b > 1)
        return toml_fail(p, offset + b, "leading zeros are not allowed in integer %.*s", (int)n, s);
    uint64_t limit = negative ? UINT64_C(0x8000000000000000) : UINT64_C(0x7FFFFFFFFFFFFFFF);
    uint64_t acc = 0;
    for (size_t i = b; i < n; i++) {
        if (s[i] == '_')
            continue;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (acc > (limit - d) / 10)
            return toml_fail(p, offset,
                             "integer %.*s is out of the 64-bit range "
                             "-9223372036854775808..9223372036854775807",
                             (int)n, s);
        acc = acc * 10 + d;
    }
    out->kind = TOML_INTEGER;
    /* -2^63 has no positive counterpart, so negate in unsigned arithmetic. */
    out->integer = negative ? (int64_t)(~acc + 1) : (int64_t)acc;
    return 0;
}

static int parse_float(TomlParser *p, const char *s, size_t n, size_t offset, TomlValue *out) {
    size_t b = (s[0] == '+' || s[0] == '-') ? 1 : 0;
    size_t int_end = b;
    while (int_end < n && s[int_end] != '.' && s[int_end] != 'e' && s[int_end] != 'E')
        int_end++;
    if (check_digit_group(p, s + b, int_end - b, offset + b, 10, "the integer part of a float") !=
        0)
        return -1;
    if (s[b] == '0' && int_end - b > 1)
        return toml_fail(p, offset + b, "leading zeros are not allowed in float %.*s", (int)n, s);
    size_t i = int_end;
    if (i < n && s[i] == '.') {
        size_t frac = ++i;
        while (i < n && s[i] != 'e' && s[i] != 'E')
            i++;
        if (check_digit_group(p, s + frac, i - frac, offset + frac, 10,
                              "the fraction of a float") != 0)
            return -1;
    }
    if (i < n) { /* at 'e' or 'E' */
        size_t e = ++i;
        if (e < n && (s[e] == '+' || s[e] == '-'))
            e++;
        if (check_digit_group(p, s + e, n - e, offset + e, 10, "the exponent of a float") != 0)
            return -1;
    }
    /* Underscores out, then the C library's conversion (correctly rounded in glibc; the
     * program never changes LC_NUMERIC, so '.' is the decimal point). */
    char small[128];
    char *clean = n < sizeof small ? small : malloc(n + 1);
    if (!clean)
        return toml_fail(p, offset, "out of memory");
    size_t m = 0;
    for (size_t k = 0; k < n; k++)
        if (s[k] != '_')
            clean[m++] = s[k];
    clean[m] = '\0';
    char *end = NULL;
    errno = 0;
    double v = strtod(clean, &end);
    bool whole = end == clean + m;
    if (clean != small)
        free(clean);
    if (!whole)
        return toml_fail(p, offset, "invalid float %.*s", (int)n, s);
    /* Out-of-range values become +-inf or 0, as Python's float() (and tomllib) give. */
    out->kind = TOML_FLOAT;
    out->number = v;
    return 0;
}

static int parse_number(TomlParser *p, const char *s, size_t n, size_t offset, TomlValue *out) {
    size_t b = (s[0] == '+' || s[0] == '-') ? 1 : 0;
    const char *body = s + b;
    size_t bn = n - b;
    if (bn == 3 && (memcmp(body, "inf", 3) == 0 || memcmp(body, "nan", 3) == 0)) {
        double v = body[0] == 'i' ? INFINITY : NAN;
        out->kind = TOML_FLOAT;
        out->number = s[0] == '-' ? -v : v;
        return 0;
    }
    if (bn >= 2 && body[0] == '0' && (body[1] == 'x' || body[1] == 'o' || body[1] == 'b')) {
        if (b)
            return toml_fail(p, offset,
                             "a sign is not allowed on hexadecimal, octal or binary integers");
        return parse_radix_integer(p, s, n, offset, out);
    }
    if (bn > 0 && !is_digit((unsigned char)body[0]))
        return toml_fail(p, offset,
                         "expected a value (string, number, true/false, date-time, array or "
                         "inline table), found '%.*s'",
                         (int)(n < 40 ? n : 40), s);
    for (size_t i = b; i < n; i++)
        if (s[i] == '.' || s[i] == 'e' || s[i] == 'E')
            return parse_float(p, s, n, offset, out);
    return parse_decimal_integer(p, s, n, offset, out);
}

/* ------------------------------------------------------------------------------------------
 * Date-times */

static int two_digits(const char *s) {
    return (s[0] - '0') * 10 + (s[1] - '0');
}

static int days_in_month(int year, int month) {
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month - 1];
}

/* Checks s[i..] against "NN<sep>" patterns; returns false when a digit or separator is off. */
static bool match_pattern(const char *s, size_t n, size_t i, const char *pattern) {
    size_t k = 0;
    for (; pattern[k]; k++) {
        if (i + k >= n)
            return false;
        char c = s[i + k];
        if (pattern[k] == 'D' ? !is_digit((unsigned char)c) : c != pattern[k])
            return false;
    }
    return true;
}

static int parse_time(TomlParser *p, const char *s, size_t n, size_t offset, size_t *i) {
    if (!match_pattern(s, n, *i, "DD:DD:DD"))
        return toml_fail(p, offset,
                         "invalid time in %.*s: expected HH:MM:SS (two digits each, seconds "
                         "required)",
                         (int)n, s);
    int hour = two_digits(s + *i), minute = two_digits(s + *i + 3), second = two_digits(s + *i + 6);
    if (hour > 23 || minute > 59 || second > 60)
        return toml_fail(p, offset,
                         "invalid time in %.*s: hour must be 00-23, minute 00-59, second 00-60",
                         (int)n, s);
    *i += 8;
    if (*i < n && s[*i] == '.') {
        size_t f = ++*i;
        while (*i < n && is_digit((unsigned char)s[*i]))
            ++*i;
        if (*i == f)
            return toml_fail(p, offset + f, "invalid time in %.*s: digits must follow the '.'",
                             (int)n, s);
    }
    return 0;
}

static int parse_datetime(TomlParser *p, const char *s, size_t n, size_t offset, TomlValue *out) {
    size_t i = 0;
    bool has_date = false, has_time = false, has_offset = false;
    if (n >= 5 && s[4] == '-') {
        if (!match_pattern(s, n, 0, "DDDD-DD-DD") || (n > 10 && is_digit((unsigned char)s[10])))
            return toml_fail(p, offset, "invalid date %.*s: expected YYYY-MM-DD", (int)n, s);
        int year = atoi(s), month = two_digits(s + 5), day = two_digits(s + 8);
        if (month < 1 || month > 12)
            return toml_fail(p, offset, "invalid date %.*s: month must be 01-12", (int)n, s);
        if (day < 1 || day > days_in_month(year, month))
            return toml_fail(p, offset, "invalid date %.*s: day %02d does not exist in %04d-%02d",
                             (int)n, s, day, year, month);
        has_date = true;
        i = 10;
        if (i == n - 1 && (s[i] == 'T' || s[i] == 't'))
            return toml_fail(p, offset + i, "invalid date-time %.*s: a time must follow the 'T'",
                             (int)n, s);
        if (i < n) {
            if (s[i] != 'T' && s[i] != 't' && s[i] != ' ')
                return toml_fail(p, offset + i,
                                 "invalid date-time %.*s: expected 'T' or a space between the "
                                 "date and the time",
                                 (int)n, s);
            i++;
        }
    }
    if (!has_date || i < n) {
        if (parse_time(p, s, n, offset, &i) != 0)
            return -1;
        has_time = true;
    }
    if (has_date && has_time && i < n) {
        if (s[i] == 'Z' || s[i] == 'z') {
            i++;
        } else if ((s[i] == '+' || s[i] == '-') && match_pattern(s, n, i + 1, "DD:DD")) {
            if (two_digits(s + i + 1) > 23 || two_digits(s + i + 4) > 59)
                return toml_fail(p, offset + i,
                                 "invalid offset in %.*s: hours must be 00-23, minutes 00-59",
                                 (int)n, s);
            i += 6;
        } else {
            return toml_fail(p, offset + i, "invalid offset in %.*s: expected Z or +HH:MM / -HH:MM",
                             (int)n, s);
        }
        has_offset = true;
    }
    if (i != n) {
        char found[32];
        return toml_fail(p, offset + i, "unexpected %s after the %s %.*s",
                         toml_describe(p, offset + i, found, sizeof found),
                         has_date && has_time ? "date-time"
                         : has_date           ? "date"
                                              : "time",
                         (int)i, s);
    }
    out->kind = has_offset             ? TOML_DATETIME
                : has_date && has_time ? TOML_DATETIME_LOCAL
                : has_date             ? TOML_DATE_LOCAL
                                       : TOML_TIME_LOCAL;
    out->str = malloc(n + 1);
    if (!out->str)
        return toml_fail(p, offset, "out of memory");
    for (size_t k = 0; k < n; k++) {
        char c = s[k];
        out->str[k] = (k == 10 && has_date) ? 'T' : c == 'z' ? 'Z' : c;
    }
    out->str[n] = '\0';
    out->str_len = n;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */

int toml_parse_scalar(TomlParser *p, TomlValue *out) {
    size_t start = p->pos, end = start;
    while (end < p->len && is_token_char((unsigned char)p->text[end]))
        end++;
    /* "1979-05-27 07:32:00": a space may separate date and time, so the token goes on when a
     * date is followed by a space and the start of a time. */
    if (end - start == 10 && match_pattern(p->text + start, p->len - start, 0, "DDDD-DD-DD") &&
        match_pattern(p->text, p->len, end, " DD:"))
        for (end++; end < p->len && is_token_char((unsigned char)p->text[end]);)
            end++;
    const char *s = p->text + start;
    size_t n = end - start;
    if (n == 0) {
        char found[32];
        return toml_fail(p, start,
                         "expected a value (string, number, true/false, date-time, array or "
                         "inline table), found %s",
                         toml_describe(p, start, found, sizeof found));
    }
    p->pos = end;
    if ((n == 4 && memcmp(s, "true", 4) == 0) || (n == 5 && memcmp(s, "false", 5) == 0)) {
        out->kind = TOML_BOOL;
        out->boolean = n == 4;
        return 0;
    }
    if ((n >= 5 && all_digits(s, 4) && s[4] == '-') || (n >= 3 && all_digits(s, 2) && s[2] == ':'))
        return parse_datetime(p, s, n, start, out);
    return parse_number(p, s, n, start, out);
}
