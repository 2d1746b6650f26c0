/* indexer._scan: the compiled fast path of indexer/parse.py's parse_lines, and a sink that takes
its calls as columns (CallColumns').

The idea: the Python parser (parse.py) is the reference and decides every unusual case; this
scanner only does, in one C pass, what parse.py does for the lines Claude Code actually writes,
and hands back the rest. For each chunk of complete lines it counts lines, finds the lines that
hold a needle ("usage" or compact_boundary), tracks the last user line's timestamp (the same
byte patterns as parse._last_user_ms) and fully parses a needle line with a strict, validating
JSON reader that keeps only the metadata fields, building its CallRow (identity keys hashed with
BLAKE2b, 8 bytes, as parse.hash64), or writing its fields into a Sink's columns. A line it
cannot decide with certainty (an escape in a key, a lone surrogate, a count that is not a plain small integer, an API error, a
timestamp not in the plain ISO form, invalid JSON of any kind...) is deferred: scanning stops
there and parse.py parses that line, then calls again after it. A user timestamp it cannot parse
makes it give up on the whole chunk (parse.py redoes it). So a line this scanner accepts is
one orjson accepts, with the values parse.py would compute; tests/test_scan.py checks both
paths against each other on fixtures and on generated lines.

Never stored and never returned: message content. Only spans, numbers and the metadata strings.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

typedef unsigned char uc;
typedef Py_ssize_t ssize;

#define OK 0
#define DEFER 1   /* parse.py decides this line */
#define NOTHING 2 /* parsed: neither a call nor a user line */
#define CALL 3
#define USER 4
#define MAX_DEPTH 128 /* deeper lines are deferred (orjson's own limit is higher) */
#define MAX_COUNT 1000000000LL
#define MAX_COST_USD 10000.0
#define FIRST_MS 946684800000LL /* 2000-01-01T00:00:00Z, as parse._FIRST_MS */
#define LAST_MS 4102444800000LL /* 2100-01-01T00:00:00Z, as parse._LAST_MS */
#define MAX_LATENCY_MS (15LL * 60 * 1000)

/* ---- strict JSON reading ------------------------------------------------------------------ */

enum { T_NONE = 0, T_STR, T_INT, T_NUM, T_TRUE, T_FALSE, T_NULL, T_OBJ, T_ARR };

typedef struct {
    int type;          /* T_NONE: the key is absent */
    ssize start, end;  /* strings: the bytes inside the quotes; numbers: the token */
    int escaped;       /* strings: holds a backslash escape */
    int small;         /* T_INT: 0 <= value <= MAX_COUNT, written without a sign */
    int64_t ival;      /* T_INT and small */
} Val;

/* The fields kept, in one flat array; each object level knows which of its keys are fields. */
enum {
    F_MESSAGE, F_ERROR, F_TIMESTAMP, F_COST, F_REQUEST, F_UUID, F_CWD, F_AGENT, F_BRANCH,
    F_VERSION, F_SIDECHAIN, F_TYPE, F_SUBTYPE,
    F_MODEL, F_ID, F_USAGE,
    F_INPUT, F_OUTPUT, F_CACHE_TOTAL, F_CACHE_READ, F_CREATION, F_SERVER, F_SPEED,
    F_1H, F_5M,
    F_WEB,
    N_FIELDS
};

typedef struct {
    const char *name;
    int len;
    int field;
    int child; /* the level an object value is read with, or -1 */
} Key;

enum { L_TOP, L_MSG, L_USAGE, L_CREATION, L_SERVER, N_LEVELS };

#define K(s, f, c) {s, sizeof(s) - 1, f, c}
static const Key top_keys[] = {
    K("message", F_MESSAGE, L_MSG), K("isApiErrorMessage", F_ERROR, -1), K("timestamp", F_TIMESTAMP, -1),
    K("costUSD", F_COST, -1), K("requestId", F_REQUEST, -1), K("uuid", F_UUID, -1), K("cwd", F_CWD, -1),
    K("agentId", F_AGENT, -1), K("gitBranch", F_BRANCH, -1), K("version", F_VERSION, -1),
    K("isSidechain", F_SIDECHAIN, -1), K("type", F_TYPE, -1), K("subtype", F_SUBTYPE, -1)};
static const Key msg_keys[] = {K("model", F_MODEL, -1), K("id", F_ID, -1), K("usage", F_USAGE, L_USAGE)};
static const Key usage_keys[] = {
    K("input_tokens", F_INPUT, -1), K("output_tokens", F_OUTPUT, -1),
    K("cache_creation_input_tokens", F_CACHE_TOTAL, -1), K("cache_read_input_tokens", F_CACHE_READ, -1),
    K("cache_creation", F_CREATION, L_CREATION), K("server_tool_use", F_SERVER, L_SERVER), K("speed", F_SPEED, -1)};
static const Key creation_keys[] = {K("ephemeral_1h_input_tokens", F_1H, -1), K("ephemeral_5m_input_tokens", F_5M, -1)};
static const Key server_keys[] = {K("web_search_requests", F_WEB, -1)};
#undef K

static const struct {
    const Key *keys;
    int n;
} levels[N_LEVELS] = {
    {top_keys, sizeof(top_keys) / sizeof(Key)},
    {msg_keys, sizeof(msg_keys) / sizeof(Key)},
    {usage_keys, sizeof(usage_keys) / sizeof(Key)},
    {creation_keys, sizeof(creation_keys) / sizeof(Key)},
    {server_keys, sizeof(server_keys) / sizeof(Key)},
};

typedef struct {
    const uc *d;
    ssize p, e;
    Val f[N_FIELDS];
} Reader;

static uc plain[256]; /* string bytes needing no check: printable ASCII but '"' and '\\' */

static inline void skip_ws(Reader *r) {
    while (r->p < r->e) {
        uc c = r->d[r->p];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return;
        r->p++;
    }
}

static inline int hexval(uc c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One UTF-8 sequence starting at d[p] (a byte >= 0x80): its length, or 0 if invalid. */
static inline int utf8_len(const uc *d, ssize p, ssize e) {
    uc c = d[p];
    int n;
    uc lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        else if (c == 0xED) hi = 0x9F; /* no encoded surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        else if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if (p + n > e) return 0;
    if (d[p + 1] < lo || d[p + 1] > hi) return 0;
    for (int i = 2; i < n; i++)
        if (d[p + i] < 0x80 || d[p + i] > 0xBF) return 0;
    return n;
}

/* A string at r->p (its opening quote). Escapes are checked; \u escapes of surrogates defer. */
static int read_string(Reader *r, Val *v) {
    const uc *d = r->d;
    ssize p = r->p + 1, e = r->e;
    int escaped = 0;
    ssize start = p;
    for (;;) {
#ifdef __SSE2__
        /* 16 bytes at a time while none is '"', '\\', a control byte or >= 0x80 (signed: < 0x20). */
        const __m128i quote = _mm_set1_epi8('"'), slash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
        for (; p + 16 <= e; p += 16) {
            __m128i x = _mm_loadu_si128((const __m128i *)(d + p));
            __m128i stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, slash)),
                                        _mm_cmplt_epi8(x, space));
            unsigned m = (unsigned)_mm_movemask_epi8(stop);
            if (m) {
                p += __builtin_ctz(m);
                break;
            }
        }
#endif
        while (p < e && plain[d[p]]) p++;
        if (p >= e) return DEFER;
        uc c = d[p];
        if (c == '"') break;
        if (c == '\\') {
            escaped = 1;
            if (p + 1 >= e) return DEFER;
            uc x = d[p + 1];
            if (x == 'u') {
                if (p + 6 > e) return DEFER;
                int cp = 0;
                for (int i = 2; i < 6; i++) {
                    int h = hexval(d[p + i]);
                    if (h < 0) return DEFER;
                    cp = cp * 16 + h;
                }
                if (cp >= 0xD800 && cp <= 0xDFFF) return DEFER;
                p += 6;
            } else if (x == '"' || x == '\\' || x == '/' || x == 'b' || x == 'f' || x == 'n' || x == 'r' ||
                       x == 't') {
                p += 2;
            } else return DEFER;
        } else if (c < 0x20) {
            return DEFER;
        } else { /* >= 0x80 */
            int n = utf8_len(d, p, e);
            if (!n) return DEFER;
            p += n;
        }
    }
    if (v) {
        v->type = T_STR;
        v->start = start;
        v->end = p;
        v->escaped = escaped;
    }
    r->p = p + 1;
    return OK;
}

/* A number at r->p, by JSON's grammar; unusually long ones (huge values, infinities) defer. */
static int read_number(Reader *r, Val *v) {
    const uc *d = r->d;
    ssize p = r->p, e = r->e, start = p;
    int neg = 0, is_int = 1;
    if (p < e && d[p] == '-') {
        neg = 1;
        p++;
    }
    ssize digits = p;
    if (p >= e || d[p] < '0' || d[p] > '9') return DEFER;
    if (d[p] == '0') p++;
    else
        while (p < e && d[p] >= '0' && d[p] <= '9') p++;
    ssize int_end = p;
    if (p < e && d[p] == '.') {
        is_int = 0;
        p++;
        if (p >= e || d[p] < '0' || d[p] > '9') return DEFER;
        while (p < e && d[p] >= '0' && d[p] <= '9') p++;
    }
    if (p < e && (d[p] == 'e' || d[p] == 'E')) {
        is_int = 0;
        p++;
        if (p < e && (d[p] == '+' || d[p] == '-')) p++;
        ssize exp = p;
        if (p >= e || d[p] < '0' || d[p] > '9') return DEFER;
        while (p < e && d[p] >= '0' && d[p] <= '9') p++;
        if (p - exp > 2) return DEFER;
    }
    if (p - start > 40) return DEFER;
    if (v) {
        v->type = is_int ? T_INT : T_NUM;
        v->start = start;
        v->end = p;
        v->small = 0;
        if (is_int && !neg && int_end - digits <= 10) {
            int64_t x = 0;
            for (ssize i = digits; i < int_end; i++) x = x * 10 + (d[i] - '0');
            if (x <= MAX_COUNT) {
                v->small = 1;
                v->ival = x;
            }
        }
    }
    r->p = p;
    return OK;
}

static int read_value(Reader *r, int depth, int level, Val *v);

#define CONTINUE (-1)

/* After an object member or array item: CONTINUE past a comma, OK past `close`, else DEFER. */
static inline int after_item(Reader *r, uc close) {
    skip_ws(r);
    if (r->p >= r->e) return DEFER;
    uc c = r->d[r->p++];
    if (c == ',') {
        skip_ws(r);
        return CONTINUE;
    }
    return c == close ? OK : DEFER;
}

/* Past the opening bracket at r->p: OK when `close` follows (empty), CONTINUE when items do, DEFER
   when nested deeper than MAX_DEPTH. */
static inline int open_container(Reader *r, int depth, uc close) {
    if (depth > MAX_DEPTH) return DEFER;
    r->p++;
    skip_ws(r);
    if (r->p < r->e && r->d[r->p] == close) {
        r->p++;
        return OK;
    }
    return CONTINUE;
}

/* An object at r->p. With `level` >= 0, the values of that level's keys are kept in r->f (a key
   seen twice defers: orjson keeps the last, and the fields read inside the first would linger). */
static int read_object(Reader *r, int depth, int level) {
    const uc *d = r->d;
    int first = open_container(r, depth, '}');
    if (first != CONTINUE) return first;
    for (;;) {
        if (r->p >= r->e || d[r->p] != '"') return DEFER;
        Val key;
        if (read_string(r, &key) != OK) return DEFER;
        const Key *match = NULL;
        if (level >= 0) {
            if (key.escaped) return DEFER; /* it might spell a kept key */
            ssize klen = key.end - key.start;
            for (int i = 0; i < levels[level].n; i++) {
                const Key *k = &levels[level].keys[i];
                if (k->len == klen && memcmp(d + key.start, k->name, (size_t)klen) == 0) {
                    match = k;
                    break;
                }
            }
        }
        skip_ws(r);
        if (r->p >= r->e || d[r->p] != ':') return DEFER;
        r->p++;
        skip_ws(r);
        if (match) {
            Val *v = &r->f[match->field];
            if (v->type != T_NONE) return DEFER;
            if (read_value(r, depth + 1, match->child, v) != OK) return DEFER;
        } else if (read_value(r, depth + 1, -1, NULL) != OK) {
            return DEFER;
        }
        int next = after_item(r, '}');
        if (next != CONTINUE) return next;
    }
}

static int read_array(Reader *r, int depth) {
    int first = open_container(r, depth, ']');
    if (first != CONTINUE) return first;
    for (;;) {
        if (read_value(r, depth + 1, -1, NULL) != OK) return DEFER;
        int next = after_item(r, ']');
        if (next != CONTINUE) return next;
    }
}

static inline int literal(Reader *r, const char *word, int n, int type, Val *v) {
    if (r->e - r->p < n || memcmp(r->d + r->p, word, (size_t)n) != 0) return DEFER;
    if (v) {
        v->type = type;
        v->start = r->p;
        v->end = r->p + n;
    }
    r->p += n;
    return OK;
}

/* Any value at r->p; `v` (may be NULL) receives its kind and span; an object is read with `level`. */
static int read_value(Reader *r, int depth, int level, Val *v) {
    if (r->p >= r->e) return DEFER;
    uc c = r->d[r->p];
    switch (c) {
    case '"':
        return read_string(r, v);
    case '{': {
        ssize start = r->p;
        if (read_object(r, depth, level) != OK) return DEFER;
        if (v) {
            v->type = T_OBJ;
            v->start = start;
            v->end = r->p;
        }
        return OK;
    }
    case '[': {
        ssize start = r->p;
        if (read_array(r, depth) != OK) return DEFER;
        if (v) {
            v->type = T_ARR;
            v->start = start;
            v->end = r->p;
        }
        return OK;
    }
    case 't':
        return literal(r, "true", 4, T_TRUE, v);
    case 'f':
        return literal(r, "false", 5, T_FALSE, v);
    case 'n':
        return literal(r, "null", 4, T_NULL, v);
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return read_number(r, v);
        return DEFER;
    }
}

/* ---- values as parse.py computes them ----------------------------------------------------- */

/* A string value's decoded UTF-8 bytes, into buf (at least the raw length); its length. */
static ssize decode(const uc *d, const Val *v, uc *buf) {
    ssize n = 0;
    for (ssize p = v->start; p < v->end;) {
        uc c = d[p];
        if (c != '\\') {
            buf[n++] = c;
            p++;
            continue;
        }
        uc x = d[p + 1];
        p += 2;
        switch (x) {
        case 'b': buf[n++] = '\b'; break;
        case 'f': buf[n++] = '\f'; break;
        case 'n': buf[n++] = '\n'; break;
        case 'r': buf[n++] = '\r'; break;
        case 't': buf[n++] = '\t'; break;
        case 'u': {
            int cp = 0;
            for (int i = 0; i < 4; i++) cp = cp * 16 + hexval(d[p + i]);
            p += 4;
            if (cp < 0x80) buf[n++] = (uc)cp;
            else if (cp < 0x800) {
                buf[n++] = (uc)(0xC0 | (cp >> 6));
                buf[n++] = (uc)(0x80 | (cp & 0x3F));
            } else {
                buf[n++] = (uc)(0xE0 | (cp >> 12));
                buf[n++] = (uc)(0x80 | ((cp >> 6) & 0x3F));
                buf[n++] = (uc)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: buf[n++] = x; /* '"', '\\', '/' */
        }
    }
    return n;
}

/* A new str of a string value, or NULL with an exception set. */
static PyObject *to_str(const uc *d, const Val *v) {
    if (!v->escaped) return PyUnicode_DecodeUTF8((const char *)d + v->start, v->end - v->start, NULL);
    ssize raw = v->end - v->start;
    uc stack[512];
    uc *buf = raw <= (ssize)sizeof(stack) ? stack : PyMem_Malloc((size_t)raw);
    if (!buf) return PyErr_NoMemory();
    ssize n = decode(d, v, buf);
    PyObject *s = PyUnicode_DecodeUTF8((const char *)buf, n, NULL);
    if (buf != stack) PyMem_Free(buf);
    return s;
}

/* Whether a string value decodes to exactly `word`. */
static int str_is(const uc *d, const Val *v, const char *word) {
    size_t n = strlen(word);
    if (v->type != T_STR) return 0;
    if (!v->escaped) return (size_t)(v->end - v->start) == n && memcmp(d + v->start, word, n) == 0;
    /* An escape is at most 6 bytes for 1: a longer text cannot decode to `word` (at most 32 bytes). */
    if (n > 32 || (size_t)(v->end - v->start) > 6 * n) return 0;
    uc buf[6 * 32];
    ssize got = decode(d, v, buf);
    return (size_t)got == n && memcmp(buf, word, n) == 0;
}

/* A usage count as parse._count accepts it without rejecting: absent -> dflt, a plain integer in
   0..MAX_COUNT -> it; anything else (null, a string, a float, negative, too large) defers. */
static inline int count(const Val *v, int64_t dflt, int64_t *out) {
    if (v->type == T_NONE) {
        *out = dflt;
        return OK;
    }
    if (v->type == T_INT && v->small) {
        *out = v->ival;
        return OK;
    }
    return DEFER;
}

static inline int digits(const uc *s, int n, int *out) {
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        x = x * 10 + (s[i] - '0');
    }
    *out = x;
    return 1;
}

static int64_t days_from_civil(int y, int m, int d) { /* days since 1970-01-01, proleptic Gregorian */
    y -= m <= 2;
    int era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - era * 400;
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (int64_t)era * 146097 + doe - 719468;
}

/* An ISO-8601 time in the plain form Claude Code writes (YYYY-MM-DDTHH:MM:SS, 1-6 fraction digits,
   then Z, +HH:MM, -HH:MM or nothing for UTC) -> ms since the epoch, floored like parse.parse_ts.
   0 when the text has another form (datetime.fromisoformat may still accept it: the caller defers). */
static int iso_ms(const uc *s, ssize n, int64_t *out) {
    int y, mo, da, h, mi, se, frac_us = 0, off_min = 0;
    if (n < 19 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':') return 0;
    if (!digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &da) || !digits(s + 11, 2, &h) ||
        !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &se))
        return 0;
    ssize p = 19;
    if (p < n && s[p] == '.') {
        p++;
        int nd = 0;
        while (p < n && s[p] >= '0' && s[p] <= '9' && nd < 7) {
            frac_us = frac_us * 10 + (s[p] - '0');
            p++;
            nd++;
        }
        if (nd < 1 || nd > 6) return 0;
        for (; nd < 6; nd++) frac_us *= 10;
    }
    if (p < n) {
        if (s[p] == 'Z' && p + 1 == n) {
            p++;
        } else if ((s[p] == '+' || s[p] == '-') && p + 6 == n && s[p + 3] == ':') {
            int oh, om;
            if (!digits(s + p + 1, 2, &oh) || !digits(s + p + 4, 2, &om) || oh > 23 || om > 59) return 0;
            off_min = (oh * 60 + om) * (s[p] == '-' ? -1 : 1);
            p += 6;
        } else return 0;
    }
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1 || mo < 1 || mo > 12 || h > 23 || mi > 59 || se > 59 || da < 1) return 0;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (da > mdays[mo - 1] + (mo == 2 && leap)) return 0;
    int64_t secs = days_from_civil(y, mo, da) * 86400 + h * 3600 + mi * 60 + se - (int64_t)off_min * 60;
    *out = secs * 1000 + frac_us / 1000;
    return 1;
}

/* ---- call identities: 8-byte BLAKE2b (RFC 7693), as parse.hash64 ------------------------- */

static const uint64_t B2_IV[8] = {0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
                                  0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
                                  0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};
static const uint8_t B2_SIGMA[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4}, {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13}, {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11}, {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5}, {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

typedef struct {
    uint64_t h[8];
    uint64_t t;   /* bytes compressed so far (inputs here are far below 2^64) */
    uc buf[128]; /* the block not yet compressed: the last one is compressed with the final flag */
    size_t fill;
} B2;

static inline uint64_t rotr64(uint64_t x, int n) { return (x >> n) | (x << (64 - n)); }

static void b2_compress(B2 *b, int last) {
    uint64_t m[16], v[16];
    for (int i = 0; i < 16; i++) {
        uint64_t w = 0;
        for (int j = 7; j >= 0; j--) w = (w << 8) | b->buf[8 * i + j]; /* little-endian words */
        m[i] = w;
    }
    for (int i = 0; i < 8; i++) {
        v[i] = b->h[i];
        v[i + 8] = B2_IV[i];
    }
    v[12] ^= b->t;
    if (last) v[14] = ~v[14];
#define G(a, b_, c, d, x, y)                                                                                             \
    do {                                                                                                               \
        v[a] = v[a] + v[b_] + (x);                                                                                     \
        v[d] = rotr64(v[d] ^ v[a], 32);                                                                                \
        v[c] = v[c] + v[d];                                                                                            \
        v[b_] = rotr64(v[b_] ^ v[c], 24);                                                                              \
        v[a] = v[a] + v[b_] + (y);                                                                                     \
        v[d] = rotr64(v[d] ^ v[a], 16);                                                                                \
        v[c] = v[c] + v[d];                                                                                            \
        v[b_] = rotr64(v[b_] ^ v[c], 63);                                                                              \
    } while (0)
    for (int r = 0; r < 12; r++) {
        const uint8_t *s = B2_SIGMA[r];
        G(0, 4, 8, 12, m[s[0]], m[s[1]]);
        G(1, 5, 9, 13, m[s[2]], m[s[3]]);
        G(2, 6, 10, 14, m[s[4]], m[s[5]]);
        G(3, 7, 11, 15, m[s[6]], m[s[7]]);
        G(0, 5, 10, 15, m[s[8]], m[s[9]]);
        G(1, 6, 11, 12, m[s[10]], m[s[11]]);
        G(2, 7, 8, 13, m[s[12]], m[s[13]]);
        G(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
#undef G
    for (int i = 0; i < 8; i++) b->h[i] ^= v[i] ^ v[i + 8];
}

static void b2_init(B2 *b) {
    memcpy(b->h, B2_IV, sizeof(b->h));
    b->h[0] ^= 0x01010000ULL ^ 8; /* depth 1, fanout 1, no key, an 8-byte digest */
    b->t = 0;
    b->fill = 0;
}

static void b2_update(B2 *b, const uc *p, size_t n) {
    while (n) {
        if (b->fill == 128) { /* a full block with more to come: not the last */
            b->t += 128;
            b2_compress(b, 0);
            b->fill = 0;
        }
        size_t take = 128 - b->fill < n ? 128 - b->fill : n;
        memcpy(b->buf + b->fill, p, take);
        b->fill += take;
        p += take;
        n -= take;
    }
}

/* The digest's 8 bytes read as a little-endian signed integer: h[0]. */
static int64_t b2_final(B2 *b) {
    b->t += b->fill;
    memset(b->buf + b->fill, 0, 128 - b->fill);
    b2_compress(b, 1);
    return (int64_t)b->h[0];
}

/* ---- lines -------------------------------------------------------------------------------- */

#define ID_CACHE 256

typedef struct Sink Sink; /* see "columns" below */

typedef struct {
    const uc *d;
    Sink *sink; /* calls go into its columns; NULL: as rows (tuples) into a list */
    int has_user;  /* whether last_user holds a value */
    int64_t last_user;
    PyTypeObject *row_type; /* CallRow */
    PyObject *session, *fallback, *file_agent; /* from the file's place: FileContext */
    /* The identity of the last call read (a streamed message's lines follow each other): its
       message.id and requestId as written (unescaped only), and their hashes. */
    uc last_id[ID_CACHE];
    ssize last_id_len; /* -1: none */
    int64_t last_key, last_msg_hash;
} Scan;

/* Hash of the decoded text of string value v (as parse.py hashes str.encode()) into b. */
static int b2_string(B2 *b, const uc *d, const Val *v) {
    if (!v->escaped) {
        b2_update(b, d + v->start, (size_t)(v->end - v->start));
        return 0;
    }
    ssize raw = v->end - v->start;
    uc *buf = PyMem_Malloc((size_t)raw);
    if (!buf) {
        PyErr_NoMemory();
        return -1;
    }
    b2_update(b, buf, (size_t)decode(d, v, buf));
    PyMem_Free(buf);
    return 0;
}

/* parse._id_keys and _call's identity: (key, msg_hash) from message.id and requestId; a line
   without message.id hashes its uuid, or else its own bytes, and has msg_hash 0. */
static int id_keys(Scan *s, const Val *f, ssize start, ssize end, int64_t *key, int64_t *msg_hash) {
    const uc *d = s->d;
    const Val *id = &f[F_ID], *req = &f[F_REQUEST], *uid = &f[F_UUID];
    B2 b;
    b2_init(&b);
    if (id->type != T_STR || id->end == id->start) {
        b2_update(&b, (const uc *)"line\x1f", 5);
        if (uid->type == T_STR && uid->end > uid->start) {
            if (b2_string(&b, d, uid) < 0) return -1;
        } else {
            b2_update(&b, d + start, (size_t)(end - start));
        }
        *key = b2_final(&b);
        *msg_hash = 0;
        return 0;
    }
    /* The cache compares the raw texts: message.id, a separator, then requestId or nothing. */
    ssize id_len = id->end - id->start, req_len = req->type == T_STR ? req->end - req->start : -1;
    ssize both = id_len + 1 + (req_len < 0 ? 0 : req_len + 1);
    int cacheable = !id->escaped && !(req_len >= 0 && req->escaped) && both <= ID_CACHE;
    uc text[ID_CACHE];
    if (cacheable) {
        memcpy(text, d + id->start, (size_t)id_len);
        text[id_len] = req_len < 0 ? 0 : 1;
        if (req_len >= 0) {
            memcpy(text + id_len + 1, d + req->start, (size_t)req_len);
            text[both - 1] = 0;
        }
        if (both == s->last_id_len && memcmp(text, s->last_id, (size_t)both) == 0) {
            *key = s->last_key;
            *msg_hash = s->last_msg_hash;
            return 0;
        }
    }
    if (b2_string(&b, d, id) < 0) return -1;
    B2 alone = b; /* message.id's own hash: the same state, finished now */
    *msg_hash = b2_final(&alone);
    b2_update(&b, (const uc *)"\x1f", 1);
    if (req_len >= 0 && b2_string(&b, d, req) < 0) return -1;
    *key = b2_final(&b);
    if (cacheable) {
        memcpy(s->last_id, text, (size_t)both);
        s->last_id_len = both;
        s->last_key = *key;
        s->last_msg_hash = *msg_hash;
    }
    return 0;
}

static inline const uc *find(const uc *hay, ssize from, ssize to, const char *needle, size_t n) {
    if (to - from < (ssize)n) return NULL;
    return memmem(hay + from, (size_t)(to - from), needle, n);
}

static inline const uc *last_nl(const uc *p, ssize n) {
#ifdef __GLIBC__
    return memrchr(p, '\n', (size_t)n);
#else
    while (n > 0)
        if (p[--n] == '\n') return p + n;
    return NULL;
#endif
}

#define USER_TS_AT 44 /* len('"uuid":"') + 36: where parse._USER_TS's timestamp key begins */

/* parse._last_user_ms over d[start:end]: 1 (updated or kept), or 0 to give the chunk back. */
static int last_user_ms(Scan *s, ssize start, ssize end) {
    const uc *d = s->d;
    ssize le = end - 1;
    while (le >= start) {
        const uc *nlp = le > start ? last_nl(d + start, le - start) : NULL;
        ssize ls = nlp ? (nlp - d) + 1 : start;
        const uc *k = find(d, ls, le, "\"type\":\"", 8);
        if (k) {
            ssize kind = k - d, value = kind + 8;
            int user = (value + 5 <= le && memcmp(d + value, "user\"", 5) == 0) ||
                       (!(value + 9 <= le && memcmp(d + value, "progress\"", 9) == 0) &&
                        find(d, kind, le, "\"type\":\"user\"", 13) && !find(d, kind, le, "\"type\":\"progress\"", 17));
            if (user) {
                const uc *at = find(d, ls + USER_TS_AT, le, "\",\"timestamp\":\"", 15);
                while (at) {
                    ssize a = at - d, m = a - USER_TS_AT;
                    int ok = memcmp(d + m, "\"uuid\":\"", 8) == 0;
                    for (ssize i = m + 8; ok && i < a; i++) {
                        uc c = d[i];
                        ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '-';
                    }
                    if (ok) {
                        ssize g = a + 15, q = g;
                        while (q < le && q - g <= 40) {
                            uc c = d[q];
                            if (!((c >= '0' && c <= '9') || c == 'T' || c == ':' || c == '.' || c == '+' ||
                                  c == 'Z' || c == '-'))
                                break;
                            q++;
                        }
                        ok = q - g >= 19 && q - g <= 40 && q < le && d[q] == '"';
                        if (ok) {
                            int64_t ms;
                            if (!iso_ms(d + g, q - g, &ms)) return 0;
                            if (ms < FIRST_MS || ms >= LAST_MS) break; /* parse_ts rejects: try earlier lines */
                            s->has_user = 1;
                            s->last_user = ms;
                            return 1;
                        }
                    }
                    at = find(d, a + 1, le, "\",\"timestamp\":\"", 15);
                }
            }
        }
        le = ls - 1;
    }
    return 1;
}

static inline int nonempty(const Val *v) { return v->type == T_STR && v->end > v->start; }

/* A field's text: string value v when it is a non-empty string, else `other` (a new reference;
   NULL with an exception set). */
static PyObject *str_or(const uc *d, const Val *v, PyObject *other) {
    return nonempty(v) ? to_str(d, v) : Py_NewRef(other);
}

/* ---- columns ------------------------------------------------------------------------------ */

/* A Sink: call rows written straight into column buffers, the form in which a parser process
   hands its calls over (columns.py's CallColumns), instead of one tuple of Python objects per
   row that is transposed afterwards. The scanner writes the calls it reads field by field (a
   text read from a line is decoded only when it differs from the column's previous one);
   append() takes the rows parse.py makes, in their turn, so the rows keep the file's order. Text
   fields get codes in the order the texts first appear; the caller sorts that vocabulary and
   renumbers (columns.py). A field of an unexpected type, or an integer out of range, raises, and
   the caller uses the Python transpose, the reference. */

#define N_COLS 21
#define LAST_TEXT 128
/* CallRow's fields as the scanner writes them: key, msg_hash, ts_ms, model, session, project,
   branch, version, agent_id, sidechain, failed, the six counts, fast, cost_usd, latency_ms, error. */
static const char CALL_KINDS[] = "qqqtttttt??qqqqqq?dlt";
enum { C_KEY, C_MSG, C_TS, C_MODEL, C_SESSION, C_PROJECT, C_BRANCH, C_VERSION, C_AGENT, C_SIDECHAIN, C_FAILED,
       C_INPUT, C_OUTPUT, C_5M, C_1H, C_READ, C_WEB, C_FAST, C_COST, C_LATENCY, C_ERROR };

struct Sink {
    PyObject_HEAD
    Py_ssize_t nk, n, cap;
    char kinds[N_COLS + 1];
    char *col[N_COLS];
    PyObject *codes, *vocab; /* text -> code; the texts by code */
    /* Per text column: the last text read from a line's bytes, and the last object given, with
       their codes. */
    uc last_text[N_COLS][LAST_TEXT];
    ssize last_len[N_COLS]; /* -1: none */
    int32_t last_text_code[N_COLS];
    PyObject *last_obj[N_COLS];
    int32_t last_obj_code[N_COLS];
};

static PyTypeObject SinkType;

/* The size of one value of a column of `kind`; 0 for an unknown kind. */
static Py_ssize_t width(char kind) {
    switch (kind) {
    case 'q': /* int64 */
    case 'l': /* int64, None: -1 */
    case 'd': /* float64, None: NaN */
        return 8;
    case 't': /* int32 code of a str, None: -1 */
        return 4;
    case '?': /* bool */
        return 1;
    default:
        return 0;
    }
}

/* The text's code (its position in `vocab`, appended when new); -1 with an exception set. */
static int32_t code_of(Sink *k, PyObject *text) {
    PyObject *found = PyDict_GetItemWithError(k->codes, text);
    if (found) return (int32_t)PyLong_AsLong(found);
    if (PyErr_Occurred()) return -1;
    Py_ssize_t n = PyList_GET_SIZE(k->vocab);
    if (n >= INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "too many distinct texts");
        return -1;
    }
    PyObject *code = PyLong_FromSsize_t(n);
    if (!code) return -1;
    int failed = PyDict_SetItem(k->codes, text, code) < 0 || PyList_Append(k->vocab, text) < 0;
    Py_DECREF(code);
    return failed ? -1 : (int32_t)n;
}

/* Room for one more row; 0, or -1 with an exception set. */
static int sink_room(Sink *k) {
    if (k->n < k->cap) return 0;
    Py_ssize_t cap = k->cap ? 2 * k->cap : 1024;
    for (Py_ssize_t c = 0; c < k->nk; c++) {
        char *grown = PyMem_Realloc(k->col[c], (size_t)(cap * width(k->kinds[c])));
        if (!grown) {
            PyErr_NoMemory();
            return -1;
        }
        k->col[c] = grown;
    }
    k->cap = cap;
    return 0;
}

static inline void put_q(Sink *k, int c, int64_t v) { memcpy(k->col[c] + k->n * 8, &v, 8); }
static inline void put_d(Sink *k, int c, double v) { memcpy(k->col[c] + k->n * 8, &v, 8); }
static inline void put_b(Sink *k, int c, int v) { k->col[c][k->n] = (char)(v != 0); }
static inline void put_code(Sink *k, int c, int32_t v) { memcpy(k->col[c] + k->n * 4, &v, 4); }

/* A text column's value from an object (a str, or None: -1); 0, or -1 with an exception set. */
static int put_obj(Sink *k, int c, PyObject *v) {
    int32_t code = -1;
    if (v == k->last_obj[c]) {
        code = k->last_obj_code[c];
    } else if (v != Py_None) {
        if (!PyUnicode_Check(v)) {
            PyErr_Format(PyExc_TypeError, "a field of kind 't' holds a %s", Py_TYPE(v)->tp_name);
            return -1;
        }
        code = code_of(k, v);
        if (code < 0) return -1;
        Py_XSETREF(k->last_obj[c], Py_NewRef(v));
        k->last_obj_code[c] = code;
    }
    put_code(k, c, code);
    return 0;
}

/* A text column's value from string value v of a line (decoded as to_str does); 0, or -1. */
static int put_span(Sink *k, int c, const uc *d, const Val *v) {
    ssize n = v->end - v->start;
    int cached = !v->escaped && n <= LAST_TEXT;
    if (cached && n == k->last_len[c] && memcmp(k->last_text[c], d + v->start, (size_t)n) == 0) {
        put_code(k, c, k->last_text_code[c]);
        return 0;
    }
    PyObject *text = to_str(d, v);
    if (!text) return -1;
    int32_t code = code_of(k, text);
    Py_DECREF(text);
    if (code < 0) return -1;
    if (cached) {
        memcpy(k->last_text[c], d + v->start, (size_t)n);
        k->last_len[c] = n;
        k->last_text_code[c] = code;
    }
    put_code(k, c, code);
    return 0;
}

/* A text column's value as str_or gives it: string value v when non-empty, else `other`. */
static int put_str_or(Sink *k, int c, const uc *d, const Val *v, PyObject *other) {
    return nonempty(v) ? put_span(k, c, d, v) : put_obj(k, c, other);
}

/* Field `v` of a row given as objects, into column c; 0, or -1 with an exception set. */
static int put_field(Sink *k, int c, PyObject *v) {
    long long q;
    double x;
    switch (k->kinds[c]) {
    case 'l':
        if (v == Py_None) {
            put_q(k, c, -1);
            return 0;
        }
        /* fall through */
    case 'q':
        if (!PyLong_Check(v)) break;
        q = PyLong_AsLongLong(v);
        if (q == -1 && PyErr_Occurred()) return -1;
        put_q(k, c, q);
        return 0;
    case 'd':
        if (v == Py_None) x = NAN;
        else if (PyFloat_Check(v) || PyLong_Check(v)) {
            x = PyFloat_AsDouble(v);
            if (x == -1.0 && PyErr_Occurred()) return -1;
        } else break;
        put_d(k, c, x);
        return 0;
    case '?':
        if (!PyBool_Check(v)) break;
        put_b(k, c, v == Py_True);
        return 0;
    case 't':
        return put_obj(k, c, v);
    }
    PyErr_Format(PyExc_TypeError, "a field of kind '%c' holds a %s", k->kinds[c], Py_TYPE(v)->tp_name);
    return -1;
}

/* One row given as a tuple; 0, or -1 with an exception set (the row is then not added). */
static int sink_append_row(Sink *k, PyObject *row) {
    if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != k->nk) {
        PyErr_Format(PyExc_TypeError, "a row must be a tuple of %zd fields", k->nk);
        return -1;
    }
    if (sink_room(k) < 0) return -1;
    for (Py_ssize_t c = 0; c < k->nk; c++)
        if (put_field(k, (int)c, PyTuple_GET_ITEM(row, c)) < 0) return -1;
    k->n++;
    return 0;
}

static PyObject *Sink_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    const char *kinds;
    Py_ssize_t nk;
    static char *names[] = {"kinds", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "s#", names, &kinds, &nk)) return NULL;
    if (nk < 1 || nk > N_COLS) {
        PyErr_Format(PyExc_ValueError, "a sink has 1 to %d columns", N_COLS);
        return NULL;
    }
    for (Py_ssize_t c = 0; c < nk; c++)
        if (!width(kinds[c])) {
            PyErr_Format(PyExc_ValueError, "unknown column kind '%c'", kinds[c]);
            return NULL;
        }
    Sink *k = (Sink *)type->tp_alloc(type, 0);
    if (!k) return NULL;
    k->nk = nk;
    memcpy(k->kinds, kinds, (size_t)nk);
    for (int c = 0; c < N_COLS; c++) k->last_len[c] = -1;
    k->codes = PyDict_New();
    k->vocab = PyList_New(0);
    if (!k->codes || !k->vocab) {
        Py_DECREF(k);
        return NULL;
    }
    return (PyObject *)k;
}

static void Sink_dealloc(Sink *k) {
    for (int c = 0; c < N_COLS; c++) {
        PyMem_Free(k->col[c]);
        Py_XDECREF(k->last_obj[c]);
    }
    Py_XDECREF(k->codes);
    Py_XDECREF(k->vocab);
    Py_TYPE(k)->tp_free((PyObject *)k);
}

static Py_ssize_t Sink_len(Sink *k) { return k->n; }

static PyObject *Sink_append(Sink *k, PyObject *row) {
    if (sink_append_row(k, row) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *Sink_extend(Sink *k, PyObject *rows) {
    if (!PyList_Check(rows)) {
        PyErr_SetString(PyExc_TypeError, "extend takes a list of rows");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(rows); i++)
        if (sink_append_row(k, PyList_GET_ITEM(rows, i)) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *Sink_truncate(Sink *k, PyObject *arg) {
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 0 || n > k->n) {
        PyErr_SetString(PyExc_ValueError, "truncate to a length the sink has");
        return NULL;
    }
    k->n = n;
    Py_RETURN_NONE;
}

static PyObject *Sink_finish(Sink *k, PyObject *Py_UNUSED(ignored)) {
    PyObject *columns = PyList_New(k->nk);
    if (!columns) return NULL;
    for (Py_ssize_t c = 0; c < k->nk; c++) {
        PyObject *b = PyByteArray_FromStringAndSize(k->col[c], k->n * width(k->kinds[c]));
        if (!b) {
            Py_DECREF(columns);
            return NULL;
        }
        PyList_SET_ITEM(columns, c, b);
    }
    return Py_BuildValue("(NO)", columns, k->vocab);
}

static PyMethodDef Sink_methods[] = {
    {"append", (PyCFunction)Sink_append, METH_O, "append(row): one row, a tuple with a field per column."},
    {"extend", (PyCFunction)Sink_extend, METH_O, "extend(rows): each row of a list."},
    {"truncate", (PyCFunction)Sink_truncate, METH_O, "truncate(n): forget the rows after the first n."},
    {"finish", (PyCFunction)Sink_finish, METH_NOARGS,
     "finish() -> (columns, vocab): a bytearray per column holding its values ('q' int64, 'l' int64 with\n"
     "None as -1, 'd' float64 with None as NaN, '?' bool, 't' an int32 code into vocab, None as -1), and\n"
     "the texts in the order they first came."},
    {NULL, NULL, 0, NULL}};

static PySequenceMethods Sink_as_sequence = {.sq_length = (lenfunc)Sink_len};

static PyTypeObject SinkType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "indexer._scan.Sink",
    .tp_basicsize = sizeof(Sink),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Sink(kinds): rows written into one buffer per column, of the given kinds.",
    .tp_new = Sink_new,
    .tp_dealloc = (destructor)Sink_dealloc,
    .tp_as_sequence = &Sink_as_sequence,
    .tp_methods = Sink_methods,
};

static PyObject *UNKNOWN_MODEL; /* "unknown": the model of a call whose line names none */

/* parse._parse_full for the line d[start:end]: CALL (a tuple in *call, or written into the
   scan's sink: *call stays NULL), USER, NOTHING or DEFER; -1 with an exception set. */
static int parse_line(Scan *s, ssize start, ssize end, PyObject **call) {
    Reader r;
    memset(r.f, 0, sizeof(r.f));
    r.d = s->d;
    r.p = start;
    r.e = end;
    const uc *d = s->d;
    skip_ws(&r);
    if (r.p >= r.e || d[r.p] != '{') return DEFER;
    if (read_object(&r, 1, L_TOP) != OK) return DEFER;
    skip_ws(&r);
    if (r.p != r.e) return DEFER;
    Val *f = r.f;

    if (!(f[F_MESSAGE].type == T_OBJ && f[F_USAGE].type == T_OBJ)) {
        if (str_is(d, &f[F_TYPE], "user")) {
            Val *t = &f[F_TIMESTAMP];
            if (t->type != T_STR) return NOTHING; /* parse_ts rejects; the rejection is suppressed */
            if (t->escaped) return DEFER;
            int64_t ms;
            if (!iso_ms(d + t->start, t->end - t->start, &ms)) return DEFER;
            if (ms < FIRST_MS || ms >= LAST_MS) return NOTHING;
            s->has_user = 1;
            s->last_user = ms;
            return USER;
        }
        if (str_is(d, &f[F_TYPE], "system") && str_is(d, &f[F_SUBTYPE], "compact_boundary")) return DEFER;
        return NOTHING;
    }

    if (f[F_ERROR].type == T_TRUE) return DEFER; /* a failed call: parse.py takes its error text */
    if (str_is(d, &f[F_MODEL], "<synthetic>")) return NOTHING;
    int64_t inp, outp, cache_read, cache_total = -1, c1h = 0, c5m = 0, web = 0;
    if (count(&f[F_INPUT], 0, &inp) || count(&f[F_OUTPUT], 0, &outp) || count(&f[F_CACHE_READ], 0, &cache_read))
        return DEFER;
    if (f[F_CACHE_TOTAL].type != T_NONE && count(&f[F_CACHE_TOTAL], 0, &cache_total)) return DEFER;
    int ct = f[F_CREATION].type;
    if (ct == T_OBJ) {
        if (count(&f[F_1H], 0, &c1h) || count(&f[F_5M], 0, &c5m)) return DEFER;
    } else if (ct != T_NONE && ct != T_NULL) {
        return DEFER;
    }
    if (cache_total < 0) cache_total = c1h + c5m;
    if (c1h > cache_total) c1h = cache_total;
    int st = f[F_SERVER].type;
    if (st == T_OBJ) {
        if (count(&f[F_WEB], 0, &web)) return DEFER;
    } else if (st != T_NONE && st != T_NULL) {
        return DEFER;
    }
    Val *t = &f[F_TIMESTAMP];
    int64_t ts;
    if (t->type != T_STR || t->escaped || !iso_ms(d + t->start, t->end - t->start, &ts) || ts < FIRST_MS ||
        ts >= LAST_MS)
        return DEFER;

    double cost_x = NAN; /* NaN: none (the sink's form of None) */
    Val *c = &f[F_COST];
    if (c->type == T_INT || c->type == T_NUM) {
        char num[48];
        ssize n = c->end - c->start; /* at most 40 (read_number) */
        memcpy(num, d + c->start, (size_t)n);
        num[n] = 0;
        /* Python's own conversion: strtod would follow the C locale's decimal point. */
        double x = c->type == T_INT && c->small ? (double)c->ival : PyOS_string_to_double(num, NULL, NULL);
        if (x == -1.0 && PyErr_Occurred()) return -1;
        if (c->type == T_INT && !c->small && x == 0) x = 0.0; /* "-0" is int 0 to orjson */
        if (x >= 0 && x <= MAX_COST_USD) cost_x = x;
    }
    /* Unsigned: a last_user_ms from a damaged index may be any 64-bit value (no signed overflow). */
    uint64_t gap = (uint64_t)ts - (uint64_t)s->last_user;
    int64_t latency = s->has_user && ts >= s->last_user && gap <= (uint64_t)MAX_LATENCY_MS ? (int64_t)gap : -1;
    int64_t key, msg_hash;
    if (id_keys(s, f, start, end, &key, &msg_hash) < 0) return -1;
    int sidechain = f[F_SIDECHAIN].type == T_TRUE, fast = str_is(d, &f[F_SPEED], "fast");

    Sink *k = s->sink;
    if (k) { /* the same values as the tuple below, into the sink's columns */
        if (sink_room(k) < 0) return -1;
        put_q(k, C_KEY, key);
        put_q(k, C_MSG, msg_hash);
        put_q(k, C_TS, ts);
        if (put_str_or(k, C_MODEL, d, &f[F_MODEL], UNKNOWN_MODEL) < 0 || put_obj(k, C_SESSION, s->session) < 0 ||
            put_str_or(k, C_PROJECT, d, &f[F_CWD], s->fallback) < 0 ||
            put_str_or(k, C_BRANCH, d, &f[F_BRANCH], Py_None) < 0 ||
            put_str_or(k, C_VERSION, d, &f[F_VERSION], Py_None) < 0 ||
            put_str_or(k, C_AGENT, d, &f[F_AGENT], s->file_agent) < 0 || put_obj(k, C_ERROR, Py_None) < 0)
            return -1;
        put_b(k, C_SIDECHAIN, sidechain);
        put_b(k, C_FAILED, 0);
        put_q(k, C_INPUT, inp);
        put_q(k, C_OUTPUT, outp);
        put_q(k, C_5M, cache_total - c1h);
        put_q(k, C_1H, c1h);
        put_q(k, C_READ, cache_read);
        put_q(k, C_WEB, web);
        put_b(k, C_FAST, fast);
        put_d(k, C_COST, cost_x);
        put_q(k, C_LATENCY, latency);
        k->n++;
        return CALL;
    }

    /* A CallRow (a tuple subclass without fields of its own: items set as tuple's own __new__ does). */
    PyObject *row = s->row_type->tp_alloc(s->row_type, 21);
    if (!row) return -1;
    int err = 0;
    PyObject *items[21] = {
        PyLong_FromLongLong(key),
        PyLong_FromLongLong(msg_hash),
        PyLong_FromLongLong(ts),
        str_or(d, &f[F_MODEL], UNKNOWN_MODEL),
        Py_NewRef(s->session),
        str_or(d, &f[F_CWD], s->fallback),
        str_or(d, &f[F_BRANCH], Py_None),
        str_or(d, &f[F_VERSION], Py_None),
        str_or(d, &f[F_AGENT], s->file_agent),
        Py_NewRef(sidechain ? Py_True : Py_False),
        Py_NewRef(Py_False), /* failed calls are parse.py's */
        PyLong_FromLongLong(inp),
        PyLong_FromLongLong(outp),
        PyLong_FromLongLong(cache_total - c1h),
        PyLong_FromLongLong(c1h),
        PyLong_FromLongLong(cache_read),
        PyLong_FromLongLong(web),
        Py_NewRef(fast ? Py_True : Py_False),
        isnan(cost_x) ? Py_NewRef(Py_None) : PyFloat_FromDouble(cost_x),
        latency < 0 ? Py_NewRef(Py_None) : PyLong_FromLongLong(latency),
        Py_NewRef(Py_None), /* the error text: failed calls only */
    };
    for (int i = 0; i < 21; i++) {
        if (!items[i]) err = 1;
        PyTuple_SET_ITEM(row, i, items[i]); /* NULL until filled: tuple's traverse and dealloc allow it */
    }
    if (err) {
        Py_DECREF(row);
        return -1;
    }
    *call = row;
    return CALL;
}

static inline int needle_at(const uc *d, ssize p, ssize to) {
    return (p + 7 <= to && memcmp(d + p, "\"usage\"", 7) == 0) ||
           (p + 16 <= to && memcmp(d + p, "compact_boundary", 16) == 0);
}

/* The first occurrence of either needle in d[from:to], or -1. One pass for both: with SSE2, 16
   positions at a time are tested for two bytes of each needle ('u' and 'g' of "usage" at +1 and +4,
   'c' and 'y' of compact_boundary at 0 and +15), and only the rare candidates are compared whole.
   (glibc's memmem, once per needle, took 12% of a parser's time.) */
static ssize next_needle(const uc *d, ssize from, ssize to) {
    ssize p = from;
#ifdef __SSE2__
    const __m128i u = _mm_set1_epi8('u'), g = _mm_set1_epi8('g'), c = _mm_set1_epi8('c'), y = _mm_set1_epi8('y');
    for (; p + 31 <= to; p += 16) {
        const uc *b = d + p;
        __m128i usage = _mm_and_si128(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(b + 1)), u),
                                      _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(b + 4)), g));
        __m128i compact = _mm_and_si128(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)b), c),
                                        _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(b + 15)), y));
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(usage, compact));
        while (m) {
            ssize at = p + __builtin_ctz(m);
            if (needle_at(d, at, to)) return at;
            m &= m - 1;
        }
    }
#endif
    for (; p < to; p++)
        if ((d[p] == '"' || d[p] == 'c') && needle_at(d, p, to)) return p;
    return -1;
}

static PyObject *scan(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer buf;
    ssize pos, end;
    PyObject *last, *calls, *odd, *row_type, *session, *fallback, *file_agent;
    if (!PyArg_ParseTuple(args, "y*nnOOO!O!UUO", &buf, &pos, &end, &last, &calls, &PyList_Type, &odd, &PyType_Type,
                          &row_type, &session, &fallback, &file_agent))
        return NULL;
    PyObject *result = NULL;
    Sink *sink = Py_IS_TYPE(calls, &SinkType) ? (Sink *)calls : NULL;
    if (!sink && !PyList_Check(calls)) {
        PyErr_SetString(PyExc_TypeError, "scan's calls must be a list or a Sink");
        goto done;
    }
    if (sink && (sink->nk != N_COLS || memcmp(sink->kinds, CALL_KINDS, N_COLS) != 0)) {
        PyErr_Format(PyExc_TypeError, "scan writes into a Sink of CallRow's kinds (%s)", CALL_KINDS);
        goto done;
    }
    if (pos < 0 || end > buf.len || pos > end || (end > 0 && ((const uc *)buf.buf)[end - 1] != '\n')) {
        PyErr_SetString(PyExc_ValueError, "scan needs complete lines: data[pos:end] must end with a newline");
        goto done;
    }
    if (!PyType_IsSubtype((PyTypeObject *)row_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "scan needs a tuple type for its rows (CallRow)");
        goto done;
    }
    Scan s = {.d = buf.buf,
              .sink = sink,
              .has_user = last != Py_None,
              .row_type = (PyTypeObject *)row_type,
              .session = session,
              .fallback = fallback,
              .file_agent = file_agent,
              .last_id_len = -1};
    if (s.has_user) { /* anything but a plain 64-bit int (never given by cco): parse.py's chunk */
        int overflow = 0;
        s.last_user = PyLong_CheckExact(last) ? PyLong_AsLongLongAndOverflow(last, &overflow) : 0;
        if (!PyLong_CheckExact(last) || overflow) {
            result = Py_BuildValue("(nOn)", (ssize)0, last, (ssize)-2);
            goto done;
        }
    }
    const uc *d = s.d;
    ssize lines = 0, stop = -1, region = pos;
    ssize hit = next_needle(d, pos, end);
    while (pos < end) {
        const uc *nlp = memchr(d + pos, '\n', (size_t)(end - pos));
        ssize nl = nlp - d;
        uc first = d[pos];
        if (first == ' ' || first == '\t' || first == '\r' || first == '\n') {
            ssize i = pos;
            while (i < nl && (d[i] == ' ' || d[i] == '\t' || d[i] == '\r')) i++;
            if (i == nl) { /* blank: not a line */
                pos = nl + 1;
                continue;
            }
        }
        if (hit >= 0 && hit < nl) {
            if (region < pos && !last_user_ms(&s, region, pos)) {
                stop = -2;
                break;
            }
            PyObject *call = NULL;
            int got = parse_line(&s, pos, nl, &call);
            if (got < 0) goto done;
            if (got == DEFER) {
                stop = pos;
                break;
            }
            lines++;
            if (got == CALL && call) {
                int bad = PyList_Append(calls, call);
                Py_DECREF(call);
                if (bad) goto done;
            }
            region = nl + 1;
            hit = next_needle(d, nl + 1, end);
        } else {
            lines++;
            if (first != '{' || d[nl - 1] != '}') {
                PyObject *item = Py_BuildValue("(nn)", pos, nl);
                if (!item) goto done;
                int bad = PyList_Append(odd, item);
                Py_DECREF(item);
                if (bad) goto done;
            }
        }
        pos = nl + 1;
    }
    if (stop == -1 && region < end && !last_user_ms(&s, region, end)) stop = -2;
    if (s.has_user) result = Py_BuildValue("(nLn)", lines, (long long)s.last_user, stop);
    else result = Py_BuildValue("(nOn)", lines, Py_None, stop);
done:
    PyBuffer_Release(&buf);
    return result;
}

static PyObject *hash64(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer buf;
    if (!PyArg_ParseTuple(args, "y*", &buf)) return NULL;
    B2 b;
    b2_init(&b);
    b2_update(&b, buf.buf, (size_t)buf.len);
    PyBuffer_Release(&buf);
    return PyLong_FromLongLong(b2_final(&b));
}

static PyMethodDef methods[] = {
    {"hash64", hash64, METH_VARARGS, "hash64(data) -> int: parse.hash64, in C (a call's identity key)."},
    {"scan", scan, METH_VARARGS,
     "scan(data, pos, end, last_user_ms, calls, odd, row_type, session, project_fallback, agent_id)\n"
     "    -> (lines, last_user_ms, stop)\n\n"
     "Scan the complete lines of data[pos:end]: append rows (row_type: CallRow) to `calls` (a list, or a Sink of\n"
     "CallRow's kinds, which takes them as columns) and the (start, end) of\n"
     "lines that are not JSON objects to `odd`. stop is -1 when done, -2 when parse.py must redo the\n"
     "chunk, else the start of a line parse.py must parse (lines and last_user_ms count up to it)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_scan", .m_doc = "The compiled fast path of parse_lines.", .m_size = -1,
    .m_methods = methods};

PyMODINIT_FUNC PyInit__scan(void) {
    for (int c = 0x20; c < 0x80; c++) plain[c] = c != '"' && c != '\\';
    if (PyType_Ready(&SinkType) < 0) return NULL;
    if (!UNKNOWN_MODEL && !(UNKNOWN_MODEL = PyUnicode_InternFromString("unknown"))) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddObjectRef(m, "Sink", (PyObject *)&SinkType) < 0) Py_CLEAR(m);
    return m;
}
