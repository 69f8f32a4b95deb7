/*
 * spider_tdl.h -- header-only C SDK for spider-tdl native task packages (C11).
 *
 * A task package is a shared object exporting the four symbols declared below, with the exact
 * ABI of y-scope/spider's Rust `spider-tdl` crate (struct layouts, msgpack encodings, wire format
 * and buffer ownership), so the same host can run packages written in Rust or in C.
 *
 * How to use
 * ----------
 *   #include <spider_tdl.h>      (the directory is spider_core.get_include())
 *
 *   spider_tdl_version __spider_tdl_package_get_version(void) { return spider_tdl_host_version(); }
 *   spider_tdl_char_array __spider_tdl_package_get_name(void) {
 *       static const char name[] = "my_pkg";                 // == directory and lib<name>.so
 *       return (spider_tdl_char_array){name, sizeof name - 1};
 *   }
 *   spider_tdl_task_execution_result __spider_tdl_package_execute(
 *           spider_tdl_char_array name, spider_tdl_byte_array raw_ctx,
 *           spider_tdl_byte_array raw_inputs) {
 *       if (spider_tdl_char_array_eq(name, "add")) return task_add(raw_ctx, raw_inputs);
 *       return spider_tdl_result_error_n(SPIDER_TDL_ERR_TASK_NOT_FOUND, name.pointer, name.length);
 *   }
 *
 * A task (mirroring Rust's #[task] macro) first parses the TaskContext, then unframes the inputs
 * and checks the payload count -- spider_tdl_task_begin() does all three -- then decodes each
 * payload with a spider_tdl_reader, and finally writes its outputs as a wire frame (one payload
 * per returned value; a unit return is the empty frame 00 00 00 00):
 *
 *   spider_tdl_buf out; size_t mark;
 *   spider_tdl_buf_init(&out);
 *   spider_tdl_wire_begin(&out, 1);
 *   spider_tdl_wire_payload_begin(&out, &mark);
 *   spider_tdl_write_uint(&out, 55);
 *   spider_tdl_wire_payload_end(&out, mark);
 *   return spider_tdl_result_ok(&out);      // hands the malloc'd buffer to the host
 *
 * Errors are msgpack TdlError values {"Kind": "message"}: spider_tdl_result_error(kind, fmt, ...).
 * Never abort()/crash for a task-level failure: a crash kills the executor process.
 *
 * Free rule
 * ---------
 * Every spider_tdl_task_execution_result returned by init/execute hands its buffer to the host:
 * a non-empty buffer MUST come from the process's libc malloc/calloc/realloc (the host calls
 * free() on it exactly once); an empty one has length 0 and the non-NULL dangling pointer
 * (uint8_t *)1, which the host never touches. is_error is exactly 0 or 1. The name returned by
 * get_name is static and never freed. Input arrays are borrowed: valid only during the call.
 * The result helpers below follow these rules.
 *
 * The msgpack helpers here cover the scalar, string, binary, array and map forms that
 * rmp-serde's default config produces (canonical, smallest encodings). Larger packages may use
 * msgpack-c (Debian: libmsgpack-dev, -lmsgpackc) instead; its output is byte-identical for
 * ints, floats and strings.
 *
 * Compressed stored task outputs (option byte 1, zstd) are not decoded by this SDK; link
 * libzstd yourself if a commit task needs them.
 *
 * All helpers are `static inline` and prefixed `spider_tdl_`. Packages are assumed to be
 * single-threaded per call (one task at a time per executor process).
 */
#ifndef SPIDER_TDL_H
#define SPIDER_TDL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Version                                                                                    */
/* ------------------------------------------------------------------------------------------ */

#ifndef SPIDER_TDL_VERSION_MAJOR
#define SPIDER_TDL_VERSION_MAJOR 0
#endif
#ifndef SPIDER_TDL_VERSION_MINOR
#define SPIDER_TDL_VERSION_MINOR 1
#endif
#ifndef SPIDER_TDL_VERSION_PATCH
#define SPIDER_TDL_VERSION_PATCH 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define SPIDER_TDL_EXPORT __attribute__((visibility("default")))
#define SPIDER_TDL_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#else
#define SPIDER_TDL_EXPORT
#define SPIDER_TDL_PRINTF(fmt_idx, arg_idx)
#endif

/* ------------------------------------------------------------------------------------------ */
/* ABI (docs/abi.md section 1.2)                                                              */
/* ------------------------------------------------------------------------------------------ */

/* #[repr(C)] struct Version { major: u32, minor: u32, patch: u32 }: size 12, align 4. */
typedef struct spider_tdl_version {
    uint32_t major; /* @0 */
    uint32_t minor; /* @4 */
    uint32_t patch; /* @8 */
} spider_tdl_version;

/* CArray<c_char>: size 16, align 8. BORROWED (valid during the call only). UTF-8, not
 * NUL-terminated, pointer non-NULL even when length == 0. */
typedef struct spider_tdl_char_array {
    const char *pointer; /* @0 */
    size_t length;       /* @8 bytes */
} spider_tdl_char_array;

/* CArray<u8>: size 16, align 8. BORROWED; pointer non-NULL even when length == 0. */
typedef struct spider_tdl_byte_array {
    const uint8_t *pointer; /* @0 */
    size_t length;          /* @8 */
} spider_tdl_byte_array;

/* #[repr(C)] struct TaskExecutionResult: size 24, align 8; is_error @0, pointer @8, length @16.
 * OWNED by the caller after return (see the free rule above). */
typedef struct spider_tdl_task_execution_result {
    bool is_error;    /* false: wire-format outputs (init: empty); true: msgpack TdlError */
    uint8_t *pointer; /* length > 0: from malloc(); length == 0: (uint8_t *)1, never freed */
    size_t length;
} spider_tdl_task_execution_result;

SPIDER_TDL_EXPORT spider_tdl_version __spider_tdl_package_get_version(void);
SPIDER_TDL_EXPORT spider_tdl_char_array __spider_tdl_package_get_name(void); /* static storage */
SPIDER_TDL_EXPORT spider_tdl_task_execution_result __spider_tdl_package_init(void); /* optional */
SPIDER_TDL_EXPORT spider_tdl_task_execution_result __spider_tdl_package_execute(
    spider_tdl_char_array name, spider_tdl_byte_array raw_ctx, spider_tdl_byte_array raw_inputs);

#if !defined(__cplusplus) && defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L \
    && defined(__LP64__)
_Static_assert(sizeof(spider_tdl_version) == 12, "spider_tdl_version must be 12 bytes");
_Static_assert(sizeof(spider_tdl_char_array) == 16 && sizeof(spider_tdl_byte_array) == 16,
               "CArray must be 16 bytes");
_Static_assert(sizeof(spider_tdl_task_execution_result) == 24,
               "TaskExecutionResult must be 24 bytes");
_Static_assert(offsetof(spider_tdl_task_execution_result, pointer) == 8,
               "TaskExecutionResult.pointer must be at offset 8");
_Static_assert(offsetof(spider_tdl_task_execution_result, length) == 16,
               "TaskExecutionResult.length must be at offset 16");
#endif

/* TdlError variant names (the key of the one-entry error map). */
#define SPIDER_TDL_ERR_TASK_NOT_FOUND "TaskNotFound"
#define SPIDER_TDL_ERR_DESERIALIZATION "DeserializationError"
#define SPIDER_TDL_ERR_SERIALIZATION "SerializationError"
#define SPIDER_TDL_ERR_EXECUTION "ExecutionError"
#define SPIDER_TDL_ERR_INVALID_TASK_CONTEXT "InvalidTaskContext"
#define SPIDER_TDL_ERR_CUSTOM "Custom"

/** The SDK version (SPIDER_TDL_VERSION_*), to return from __spider_tdl_package_get_version. */
static inline spider_tdl_version spider_tdl_host_version(void) {
    spider_tdl_version v;
    v.major = SPIDER_TDL_VERSION_MAJOR;
    v.minor = SPIDER_TDL_VERSION_MINOR;
    v.patch = SPIDER_TDL_VERSION_PATCH;
    return v;
}

/** True when the borrowed name equals the NUL-terminated string s (exact byte match). */
static inline bool spider_tdl_char_array_eq(spider_tdl_char_array a, const char *s) {
    size_t n = strlen(s);
    if (a.length != n) return false;
    if (n == 0) return true;
    return a.pointer != NULL && memcmp(a.pointer, s, n) == 0;
}

/** True when [s, s+len) is valid UTF-8 (no overlongs, surrogates or code points > U+10FFFF). */
static inline bool spider_tdl_utf8_valid(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c == 0xE0) { need = 2; lo = 0xA0; }
        else if (c >= 0xE1 && c <= 0xEC) need = 2;
        else if (c == 0xED) { need = 2; hi = 0x9F; }
        else if (c >= 0xEE && c <= 0xEF) need = 2;
        else if (c == 0xF0) { need = 3; lo = 0x90; }
        else if (c >= 0xF1 && c <= 0xF3) need = 3;
        else if (c == 0xF4) { need = 3; hi = 0x8F; }
        else return false;
        if (len - i - 1 < need) return false;
        if (s[i + 1] < lo || s[i + 1] > hi) return false;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xC0) != 0x80) return false;
        i += need + 1;
    }
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Growable output buffer                                                                     */
/* ------------------------------------------------------------------------------------------ */

/** A malloc'd, growable byte buffer. Any allocation failure (or an encoding limit being
 * exceeded) sets `failed`; later appends become no-ops and return false. Never crashes. */
typedef struct {
    uint8_t *data;
    size_t len, cap;
    bool failed;
} spider_tdl_buf;

/** Initializes an empty buffer (no allocation). */
static inline void spider_tdl_buf_init(spider_tdl_buf *b) {
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->failed = false;
}

/** Ensures room for `extra` more bytes; false (and `failed` set) on overflow/out of memory. */
static inline bool spider_tdl_buf_reserve(spider_tdl_buf *b, size_t extra) {
    if (b->failed) return false;
    if (extra <= b->cap - b->len) return true;
    if (extra > SIZE_MAX - b->len) { b->failed = true; return false; }
    size_t need = b->len + extra;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) { cap = need; break; }
        cap *= 2;
    }
    uint8_t *p = (uint8_t *)realloc(b->data, cap);
    if (p == NULL) { b->failed = true; return false; }
    b->data = p;
    b->cap = cap;
    return true;
}

/** Appends n uninitialized bytes and returns a pointer to them (NULL on failure). */
static inline uint8_t *spider_tdl_buf_grow(spider_tdl_buf *b, size_t n) {
    if (!spider_tdl_buf_reserve(b, n)) return NULL;
    uint8_t *p = b->data + b->len;
    b->len += n;
    return p;
}

/** Appends n bytes from p; false on failure. */
static inline bool spider_tdl_buf_append(spider_tdl_buf *b, const void *p, size_t n) {
    if (n == 0) return !b->failed;
    uint8_t *dst = spider_tdl_buf_grow(b, n);
    if (dst == NULL) return false;
    memcpy(dst, p, n);
    return true;
}

/** Appends a single byte; false on failure. */
static inline bool spider_tdl_buf_append_byte(spider_tdl_buf *b, uint8_t byte) {
    return spider_tdl_buf_append(b, &byte, 1);
}

/** Frees the buffer's memory and resets it to the empty state. */
static inline void spider_tdl_buf_free(spider_tdl_buf *b) {
    free(b->data);
    spider_tdl_buf_init(b);
}

/* Internal: big-endian stores. */
static inline void spider_tdl_be16_(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void spider_tdl_be32_(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline void spider_tdl_be64_(uint8_t *p, uint64_t v) {
    spider_tdl_be32_(p, (uint32_t)(v >> 32));
    spider_tdl_be32_(p + 4, (uint32_t)v);
}
static inline void spider_tdl_le32_(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* ------------------------------------------------------------------------------------------ */
/* Results (free rule: docs/abi.md section 2)                                                 */
/* ------------------------------------------------------------------------------------------ */

/** Success with no bytes: is_error 0, pointer (uint8_t *)1, length 0 (what init returns). */
static inline spider_tdl_task_execution_result spider_tdl_result_empty(void) {
    spider_tdl_task_execution_result r;
    r.is_error = false;
    r.pointer = (uint8_t *)1;
    r.length = 0;
    return r;
}

/* Internal: a str header size for length n (rmp: fixstr < 32, str8 < 256, str16, str32). */
static inline size_t spider_tdl_str_header_size_(size_t n) {
    return n < 32 ? 1 : n < 256 ? 2 : n <= 0xFFFF ? 3 : 5;
}

/* Internal: writes a str header for n (n <= UINT32_MAX) at p; returns bytes written. */
static inline size_t spider_tdl_put_str_header_(uint8_t *p, size_t n) {
    if (n < 32) { p[0] = (uint8_t)(0xA0 | n); return 1; }
    if (n < 256) { p[0] = 0xD9; p[1] = (uint8_t)n; return 2; }
    if (n <= 0xFFFF) { p[0] = 0xDA; spider_tdl_be16_(p + 1, (uint16_t)n); return 3; }
    p[0] = 0xDB;
    spider_tdl_be32_(p + 1, (uint32_t)n);
    return 5;
}

/* Internal: last-resort error when the real one cannot be allocated. Never returns NULL with
 * length > 0: if even the small fallback fails, returns is_error with an empty (0x1) buffer. */
static inline spider_tdl_task_execution_result spider_tdl_result_oom_(void) {
    static const uint8_t fallback[] = {
        0x81, 0xA6, 'C', 'u', 's', 't', 'o', 'm', 0xAD,
        'o', 'u', 't', ' ', 'o', 'f', ' ', 'm', 'e', 'm', 'o', 'r', 'y'};
    spider_tdl_task_execution_result r;
    r.is_error = true;
    r.pointer = (uint8_t *)malloc(sizeof fallback);
    if (r.pointer == NULL) {
        r.pointer = (uint8_t *)1;
        r.length = 0;
        return r;
    }
    memcpy(r.pointer, fallback, sizeof fallback);
    r.length = sizeof fallback;
    return r;
}

/** Error result {kind: message} where the message is the len bytes at msg (need not be
 * NUL-terminated). kind is one of the SPIDER_TDL_ERR_* names (NULL means "Custom"). */
static inline spider_tdl_task_execution_result spider_tdl_result_error_n(const char *kind,
                                                                         const char *msg,
                                                                         size_t len) {
    if (kind == NULL) kind = SPIDER_TDL_ERR_CUSTOM;
    if (msg == NULL) len = 0;
    if (len > UINT32_MAX - 16) len = UINT32_MAX - 16;
    size_t klen = strlen(kind);
    size_t total = 1 + spider_tdl_str_header_size_(klen) + klen + spider_tdl_str_header_size_(len)
                   + len;
    uint8_t *p = (uint8_t *)malloc(total);
    if (p == NULL) return spider_tdl_result_oom_();
    size_t o = 0;
    p[o++] = 0x81;
    o += spider_tdl_put_str_header_(p + o, klen);
    memcpy(p + o, kind, klen);
    o += klen;
    o += spider_tdl_put_str_header_(p + o, len);
    if (len) memcpy(p + o, msg, len);
    spider_tdl_task_execution_result r;
    r.is_error = true;
    r.pointer = p;
    r.length = total;
    return r;
}

/** Error result {kind: vsprintf(fmt, ap)}; see spider_tdl_result_error. */
static inline spider_tdl_task_execution_result spider_tdl_result_verror(const char *kind,
                                                                        const char *fmt,
                                                                        va_list ap) {
    if (kind == NULL) kind = SPIDER_TDL_ERR_CUSTOM;
    if (fmt == NULL) return spider_tdl_result_error_n(kind, "", 0);
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        static const char bad[] = "<invalid error message format>";
        return spider_tdl_result_error_n(kind, bad, sizeof bad - 1);
    }
    size_t len = (size_t)n;
    if (len > UINT32_MAX - 16) return spider_tdl_result_oom_();
    size_t klen = strlen(kind);
    size_t head = 1 + spider_tdl_str_header_size_(klen) + klen + spider_tdl_str_header_size_(len);
    /* +1: vsnprintf writes a terminating NUL after the message; it is not part of the value. */
    uint8_t *p = (uint8_t *)malloc(head + len + 1);
    if (p == NULL) return spider_tdl_result_oom_();
    size_t o = 0;
    p[o++] = 0x81;
    o += spider_tdl_put_str_header_(p + o, klen);
    memcpy(p + o, kind, klen);
    o += klen;
    o += spider_tdl_put_str_header_(p + o, len);
    int m = vsnprintf((char *)p + o, len + 1, fmt, ap);
    if (m < 0 || (size_t)m != len) memset(p + o, '?', len); /* cannot happen in practice */
    spider_tdl_task_execution_result r;
    r.is_error = true;
    r.pointer = p;
    r.length = head + len;
    return r;
}

/** Error result: the msgpack TdlError {kind: message} (fixmap(1), canonical str headers, as
 * rmp-serde writes it), message formatted printf-style, in a malloc'd buffer.
 * Example: spider_tdl_result_error(SPIDER_TDL_ERR_EXECUTION, "bad value %d", v). */
SPIDER_TDL_PRINTF(2, 3)
static inline spider_tdl_task_execution_result spider_tdl_result_error(const char *kind,
                                                                       const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    spider_tdl_task_execution_result r = spider_tdl_result_verror(kind, fmt, ap);
    va_end(ap);
    return r;
}

/** Success result that takes ownership of the buffer's malloc'd bytes (the buffer is reset).
 * A zero-length buffer yields spider_tdl_result_empty(); a failed buffer yields a
 * SerializationError. */
static inline spider_tdl_task_execution_result spider_tdl_result_ok(spider_tdl_buf *b) {
    if (b->failed) {
        spider_tdl_buf_free(b);
        return spider_tdl_result_error(SPIDER_TDL_ERR_SERIALIZATION,
                                       "failed to build the task outputs (out of memory or a "
                                       "value exceeds the msgpack/wire size limits)");
    }
    if (b->len == 0) {
        spider_tdl_buf_free(b);
        return spider_tdl_result_empty();
    }
    spider_tdl_task_execution_result r;
    r.is_error = false;
    r.pointer = b->data;
    r.length = b->len;
    spider_tdl_buf_init(b);
    return r;
}

/** Success result for a task returning unit: the empty wire frame 00 00 00 00 (malloc'd). */
static inline spider_tdl_task_execution_result spider_tdl_result_unit(void) {
    spider_tdl_buf b;
    spider_tdl_buf_init(&b);
    static const uint8_t zero[4] = {0, 0, 0, 0};
    spider_tdl_buf_append(&b, zero, sizeof zero);
    return spider_tdl_result_ok(&b);
}

/* ------------------------------------------------------------------------------------------ */
/* msgpack writer (canonical rmp-serde forms, docs/abi.md section 3.1)                        */
/* All return false (and set buf->failed) on allocation failure or a length > UINT32_MAX.     */
/* ------------------------------------------------------------------------------------------ */

/** Writes nil (c0): unit, None. */
static inline bool spider_tdl_write_nil(spider_tdl_buf *b) {
    return spider_tdl_buf_append_byte(b, 0xC0);
}

/** Writes a bool (c2 / c3). */
static inline bool spider_tdl_write_bool(spider_tdl_buf *b, bool v) {
    return spider_tdl_buf_append_byte(b, v ? 0xC3 : 0xC2);
}

/** Writes an unsigned int in the smallest form: 00-7f, cc, cd, ce, cf. */
static inline bool spider_tdl_write_uint(spider_tdl_buf *b, uint64_t v) {
    uint8_t t[9];
    size_t n;
    if (v < 128) { t[0] = (uint8_t)v; n = 1; }
    else if (v <= 0xFF) { t[0] = 0xCC; t[1] = (uint8_t)v; n = 2; }
    else if (v <= 0xFFFF) { t[0] = 0xCD; spider_tdl_be16_(t + 1, (uint16_t)v); n = 3; }
    else if (v <= 0xFFFFFFFFu) { t[0] = 0xCE; spider_tdl_be32_(t + 1, (uint32_t)v); n = 5; }
    else { t[0] = 0xCF; spider_tdl_be64_(t + 1, v); n = 9; }
    return spider_tdl_buf_append(b, t, n);
}

/** Writes a signed int like rmp: >= 0 uses the unsigned forms, -32..-1 e0-ff, else the
 * smallest of d0 / d1 / d2 / d3. */
static inline bool spider_tdl_write_int(spider_tdl_buf *b, int64_t v) {
    if (v >= 0) return spider_tdl_write_uint(b, (uint64_t)v);
    uint8_t t[9];
    size_t n;
    uint64_t u = (uint64_t)v; /* two's complement bit pattern */
    if (v >= -32) { t[0] = (uint8_t)u; n = 1; }
    else if (v >= INT8_MIN) { t[0] = 0xD0; t[1] = (uint8_t)u; n = 2; }
    else if (v >= INT16_MIN) { t[0] = 0xD1; spider_tdl_be16_(t + 1, (uint16_t)u); n = 3; }
    else if (v >= INT32_MIN) { t[0] = 0xD2; spider_tdl_be32_(t + 1, (uint32_t)u); n = 5; }
    else { t[0] = 0xD3; spider_tdl_be64_(t + 1, u); n = 9; }
    return spider_tdl_buf_append(b, t, n);
}

/** Writes an f64 (cb + 8 bytes big-endian). */
static inline bool spider_tdl_write_f64(spider_tdl_buf *b, double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    uint8_t t[9];
    t[0] = 0xCB;
    spider_tdl_be64_(t + 1, u);
    return spider_tdl_buf_append(b, t, sizeof t);
}

/** Writes an f32 (ca + 4 bytes big-endian), as a Rust f32 serializes. */
static inline bool spider_tdl_write_f32(spider_tdl_buf *b, float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    uint8_t t[5];
    t[0] = 0xCA;
    spider_tdl_be32_(t + 1, u);
    return spider_tdl_buf_append(b, t, sizeof t);
}

/** Writes only a str header for len bytes (a0-bf, d9, da, db); append the bytes yourself. */
static inline bool spider_tdl_write_str_header(spider_tdl_buf *b, size_t len) {
    if (len > UINT32_MAX) { b->failed = true; return false; }
    uint8_t t[5];
    return spider_tdl_buf_append(b, t, spider_tdl_put_str_header_(t, len));
}

/** Writes a str of len bytes (should be UTF-8, as a Rust String is). */
static inline bool spider_tdl_write_str(spider_tdl_buf *b, const char *s, size_t len) {
    return spider_tdl_write_str_header(b, len) && spider_tdl_buf_append(b, s, len);
}

/** Writes a NUL-terminated string as a str. */
static inline bool spider_tdl_write_cstr(spider_tdl_buf *b, const char *s) {
    return spider_tdl_write_str(b, s, strlen(s));
}

/** Writes only a bin header for len bytes (c4, c5, c6). */
static inline bool spider_tdl_write_bin_header(spider_tdl_buf *b, size_t len) {
    uint8_t t[5];
    size_t n;
    if (len <= 0xFF) { t[0] = 0xC4; t[1] = (uint8_t)len; n = 2; }
    else if (len <= 0xFFFF) { t[0] = 0xC5; spider_tdl_be16_(t + 1, (uint16_t)len); n = 3; }
    else if (len <= UINT32_MAX) { t[0] = 0xC6; spider_tdl_be32_(t + 1, (uint32_t)len); n = 5; }
    else { b->failed = true; return false; }
    return spider_tdl_buf_append(b, t, n);
}

/** Writes a bin (serde_bytes form). Note: a plain Rust Vec<u8> is an ARRAY of uints, not bin. */
static inline bool spider_tdl_write_bin(spider_tdl_buf *b, const void *p, size_t len) {
    return spider_tdl_write_bin_header(b, len) && spider_tdl_buf_append(b, p, len);
}

/** Writes an array header for n elements (90-9f, dc, dd); then write the n elements. */
static inline bool spider_tdl_write_array_header(spider_tdl_buf *b, uint32_t n) {
    uint8_t t[5];
    size_t k;
    if (n < 16) { t[0] = (uint8_t)(0x90 | n); k = 1; }
    else if (n <= 0xFFFF) { t[0] = 0xDC; spider_tdl_be16_(t + 1, (uint16_t)n); k = 3; }
    else { t[0] = 0xDD; spider_tdl_be32_(t + 1, n); k = 5; }
    return spider_tdl_buf_append(b, t, k);
}

/** Writes a map header for n entries (80-8f, de, df); then write n key/value pairs. */
static inline bool spider_tdl_write_map_header(spider_tdl_buf *b, uint32_t n) {
    uint8_t t[5];
    size_t k;
    if (n < 16) { t[0] = (uint8_t)(0x80 | n); k = 1; }
    else if (n <= 0xFFFF) { t[0] = 0xDE; spider_tdl_be16_(t + 1, (uint16_t)n); k = 3; }
    else { t[0] = 0xDF; spider_tdl_be32_(t + 1, n); k = 5; }
    return spider_tdl_buf_append(b, t, k);
}

/* ------------------------------------------------------------------------------------------ */
/* msgpack reader (lenient like rmp-serde, docs/abi.md section 3.1 "Decoder leniency")        */
/* Every read returns false on a type mismatch, range error or truncation, and then leaves    */
/* `pos` unchanged. Trailing bytes after a value are never an error.                          */
/* ------------------------------------------------------------------------------------------ */

/** A cursor over a borrowed msgpack buffer. */
typedef struct {
    const uint8_t *data;
    size_t len, pos;
} spider_tdl_reader;

/** Starts reading [data, data+len). */
static inline void spider_tdl_reader_init(spider_tdl_reader *r, const uint8_t *data, size_t len) {
    r->data = data;
    r->len = len;
    r->pos = 0;
}

/* Internal: big-endian loads. */
static inline uint16_t spider_tdl_ld16_(const uint8_t *p) {
    return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}
static inline uint32_t spider_tdl_ld32_(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}
static inline uint64_t spider_tdl_ld64_(const uint8_t *p) {
    return (uint64_t)spider_tdl_ld32_(p) << 32 | spider_tdl_ld32_(p + 4);
}

/* Internal: reads any int marker. *neg tells whether the value is negative; then *mag holds
 * the two's-complement int64 bit pattern, else the uint64 value. */
static inline bool spider_tdl_read_any_int_(spider_tdl_reader *r, bool *neg, uint64_t *val) {
    *neg = false;
    *val = 0;
    size_t rem = r->len - r->pos;
    if (rem < 1) return false;
    const uint8_t *p = r->data + r->pos;
    uint8_t m = p[0];
    size_t need;
    if (m <= 0x7F) { *neg = false; *val = m; r->pos += 1; return true; }
    if (m >= 0xE0) { *neg = true; *val = (uint64_t)(int64_t)(int8_t)m; r->pos += 1; return true; }
    switch (m) {
    case 0xCC: case 0xD0: need = 1; break;
    case 0xCD: case 0xD1: need = 2; break;
    case 0xCE: case 0xD2: need = 4; break;
    case 0xCF: case 0xD3: need = 8; break;
    default: return false;
    }
    if (rem < 1 + need) return false;
    int64_t s = 0;
    switch (m) {
    case 0xCC: *neg = false; *val = p[1]; break;
    case 0xCD: *neg = false; *val = spider_tdl_ld16_(p + 1); break;
    case 0xCE: *neg = false; *val = spider_tdl_ld32_(p + 1); break;
    case 0xCF: *neg = false; *val = spider_tdl_ld64_(p + 1); break;
    case 0xD0: s = (int8_t)p[1]; break;
    case 0xD1: s = (int16_t)spider_tdl_ld16_(p + 1); break;
    case 0xD2: s = (int32_t)spider_tdl_ld32_(p + 1); break;
    default: {
        uint64_t u = spider_tdl_ld64_(p + 1);
        memcpy(&s, &u, sizeof s);
        break;
    }
    }
    if (m >= 0xD0) {
        *neg = s < 0;
        *val = (uint64_t)s;
    }
    r->pos += 1 + need;
    return true;
}

/** Reads nil (c0). */
static inline bool spider_tdl_read_nil(spider_tdl_reader *r) {
    if (r->pos >= r->len || r->data[r->pos] != 0xC0) return false;
    r->pos++;
    return true;
}

/** True when the next value is nil (does not consume it). */
static inline bool spider_tdl_peek_is_nil(const spider_tdl_reader *r) {
    return r->pos < r->len && r->data[r->pos] == 0xC0;
}

/** Reads a bool (c2 / c3). */
static inline bool spider_tdl_read_bool(spider_tdl_reader *r, bool *out) {
    *out = false;
    if (r->pos >= r->len) return false;
    uint8_t m = r->data[r->pos];
    if (m != 0xC2 && m != 0xC3) return false;
    *out = m == 0xC3;
    r->pos++;
    return true;
}

/** Reads an unsigned integer from any int marker; a negative value fails. */
static inline bool spider_tdl_read_uint(spider_tdl_reader *r, uint64_t *out) {
    size_t save = r->pos;
    bool neg;
    uint64_t v;
    if (!spider_tdl_read_any_int_(r, &neg, &v)) return false;
    *out = 0;
    if (neg) { r->pos = save; return false; }
    *out = v;
    return true;
}

/** Reads a signed integer from any int marker, range-checked into int64_t. */
static inline bool spider_tdl_read_int(spider_tdl_reader *r, int64_t *out) {
    size_t save = r->pos;
    bool neg;
    uint64_t v;
    *out = 0;
    if (!spider_tdl_read_any_int_(r, &neg, &v)) return false;
    if (!neg && v > (uint64_t)INT64_MAX) { r->pos = save; return false; }
    int64_t s;
    memcpy(&s, &v, sizeof s);
    *out = s;
    return true;
}

/** Reads a float: f64 (cb), f32 (ca), or any integer converted to double. */
static inline bool spider_tdl_read_f64(spider_tdl_reader *r, double *out) {
    *out = 0.0;
    size_t rem = r->len - r->pos;
    if (rem < 1) return false;
    const uint8_t *p = r->data + r->pos;
    if (p[0] == 0xCB) {
        if (rem < 9) return false;
        uint64_t u = spider_tdl_ld64_(p + 1);
        memcpy(out, &u, sizeof *out);
        r->pos += 9;
        return true;
    }
    if (p[0] == 0xCA) {
        if (rem < 5) return false;
        uint32_t u = spider_tdl_ld32_(p + 1);
        float f;
        memcpy(&f, &u, sizeof f);
        *out = (double)f;
        r->pos += 5;
        return true;
    }
    bool neg;
    uint64_t v;
    if (!spider_tdl_read_any_int_(r, &neg, &v)) return false;
    if (neg) {
        int64_t s;
        memcpy(&s, &v, sizeof s);
        *out = (double)s;
    } else {
        *out = (double)v;
    }
    return true;
}

/* Internal: reads a str or bin header; *is_str tells which. Leaves pos after the header. */
static inline bool spider_tdl_read_strbin_(spider_tdl_reader *r, const uint8_t **ptr,
                                           size_t *len, bool *is_str) {
    *ptr = NULL;
    *len = 0;
    *is_str = false;
    size_t rem = r->len - r->pos;
    if (rem < 1) return false;
    const uint8_t *p = r->data + r->pos;
    uint8_t m = p[0];
    size_t hdr, n;
    if (m >= 0xA0 && m <= 0xBF) { hdr = 1; n = m & 0x1Fu; *is_str = true; }
    else if (m == 0xD9 || m == 0xC4) {
        if (rem < 2) return false;
        hdr = 2; n = p[1]; *is_str = m == 0xD9;
    } else if (m == 0xDA || m == 0xC5) {
        if (rem < 3) return false;
        hdr = 3; n = spider_tdl_ld16_(p + 1); *is_str = m == 0xDA;
    } else if (m == 0xDB || m == 0xC6) {
        if (rem < 5) return false;
        hdr = 5; n = spider_tdl_ld32_(p + 1); *is_str = m == 0xDB;
    } else {
        return false;
    }
    if (rem - hdr < n) return false;
    *ptr = p + hdr;
    *len = n;
    r->pos += hdr + n;
    return true;
}

/** Reads a string (str, or bin as rmp-serde accepts for String) as a borrowed pointer + length
 * into the input (not NUL-terminated). Fails if the bytes are not valid UTF-8, as a Rust
 * String would. */
static inline bool spider_tdl_read_str(spider_tdl_reader *r, const char **ptr, size_t *len) {
    size_t save = r->pos;
    const uint8_t *p;
    size_t n;
    bool is_str;
    *ptr = NULL;
    *len = 0;
    if (!spider_tdl_read_strbin_(r, &p, &n, &is_str)) return false;
    if (!spider_tdl_utf8_valid(p, n)) { r->pos = save; return false; }
    *ptr = (const char *)p;
    *len = n;
    return true;
}

/** Reads binary data (bin, or str) as a borrowed pointer + length into the input. */
static inline bool spider_tdl_read_bin(spider_tdl_reader *r, const uint8_t **ptr, size_t *len) {
    bool is_str;
    return spider_tdl_read_strbin_(r, ptr, len, &is_str);
}

/* Internal: reads a container header with markers fix (mask 0xF0 == fixbase), c16, c32. */
static inline bool spider_tdl_read_container_(spider_tdl_reader *r, uint8_t fixbase, uint8_t c16,
                                              uint8_t c32, uint32_t *count) {
    *count = 0;
    size_t rem = r->len - r->pos;
    if (rem < 1) return false;
    const uint8_t *p = r->data + r->pos;
    if ((p[0] & 0xF0) == fixbase) { *count = p[0] & 0x0Fu; r->pos += 1; return true; }
    if (p[0] == c16) {
        if (rem < 3) return false;
        *count = spider_tdl_ld16_(p + 1);
        r->pos += 3;
        return true;
    }
    if (p[0] == c32) {
        if (rem < 5) return false;
        *count = spider_tdl_ld32_(p + 1);
        r->pos += 5;
        return true;
    }
    return false;
}

/** Reads an array header (90-9f, dc, dd) into *count; then read the count elements. */
static inline bool spider_tdl_read_array(spider_tdl_reader *r, uint32_t *count) {
    return spider_tdl_read_container_(r, 0x90, 0xDC, 0xDD, count);
}

/** Reads a map header (80-8f, de, df) into *count; then read count key/value pairs. */
static inline bool spider_tdl_read_map(spider_tdl_reader *r, uint32_t *count) {
    return spider_tdl_read_container_(r, 0x80, 0xDE, 0xDF, count);
}

/** Skips one whole value of any type (nested arrays/maps, ext and floats included), without
 * recursion. Fails (pos unchanged) on truncation or the never-used marker c1. */
static inline bool spider_tdl_skip(spider_tdl_reader *r) {
    size_t pos = r->pos;
    uint64_t pending = 1;
    while (pending > 0) {
        pending--;
        size_t rem = r->len - pos;
        if (rem < 1) return false;
        const uint8_t *p = r->data + pos;
        uint8_t m = p[0];
        size_t hdr = 1;    /* marker + length fields */
        uint64_t body = 0; /* payload bytes after hdr */
        uint64_t children = 0;
        if (m <= 0x7F || m >= 0xE0 || m == 0xC0 || m == 0xC2 || m == 0xC3) {
            /* single byte */
        } else if (m >= 0x80 && m <= 0x8F) {
            children = 2u * (uint64_t)(m & 0x0F);
        } else if (m >= 0x90 && m <= 0x9F) {
            children = m & 0x0F;
        } else if (m >= 0xA0 && m <= 0xBF) {
            body = m & 0x1F;
        } else {
            switch (m) {
            case 0xC4: case 0xD9: hdr = 2; if (rem < 2) return false; body = p[1]; break;
            case 0xC5: case 0xDA:
                hdr = 3; if (rem < 3) return false; body = spider_tdl_ld16_(p + 1); break;
            case 0xC6: case 0xDB:
                hdr = 5; if (rem < 5) return false; body = spider_tdl_ld32_(p + 1); break;
            case 0xC7: hdr = 3; if (rem < 2) return false; body = p[1]; break; /* +type */
            case 0xC8: hdr = 4; if (rem < 3) return false; body = spider_tdl_ld16_(p + 1); break;
            case 0xC9: hdr = 6; if (rem < 5) return false; body = spider_tdl_ld32_(p + 1); break;
            case 0xCA: body = 4; break;
            case 0xCB: body = 8; break;
            case 0xCC: case 0xD0: body = 1; break;
            case 0xCD: case 0xD1: body = 2; break;
            case 0xCE: case 0xD2: body = 4; break;
            case 0xCF: case 0xD3: body = 8; break;
            case 0xD4: body = 2; break; /* fixext: type byte + data */
            case 0xD5: body = 3; break;
            case 0xD6: body = 5; break;
            case 0xD7: body = 9; break;
            case 0xD8: body = 17; break;
            case 0xDC: hdr = 3; if (rem < 3) return false; children = spider_tdl_ld16_(p + 1); break;
            case 0xDD: hdr = 5; if (rem < 5) return false; children = spider_tdl_ld32_(p + 1); break;
            case 0xDE:
                hdr = 3; if (rem < 3) return false;
                children = 2u * (uint64_t)spider_tdl_ld16_(p + 1); break;
            case 0xDF:
                hdr = 5; if (rem < 5) return false;
                children = 2u * (uint64_t)spider_tdl_ld32_(p + 1); break;
            default: return false; /* 0xC1 */
            }
        }
        if (rem < hdr || (uint64_t)(rem - hdr) < body) return false;
        pos += hdr + (size_t)body;
        /* Every child needs at least one byte: reject impossible counts early. */
        if (children > (uint64_t)(r->len - pos) || pending + children > (uint64_t)(r->len - pos))
            return false;
        pending += children;
    }
    r->pos = pos;
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Wire format (docs/abi.md section 4): [count u32 LE] then per payload [len u32 LE][bytes]   */
/* ------------------------------------------------------------------------------------------ */

/** Starts a wire frame with `count` payloads (writes the u32 LE count). */
static inline bool spider_tdl_wire_begin(spider_tdl_buf *b, uint32_t count) {
    uint8_t *p = spider_tdl_buf_grow(b, 4);
    if (p == NULL) return false;
    spider_tdl_le32_(p, count);
    return true;
}

/** Starts one payload: reserves its u32 length (back-patched by wire_payload_end). */
static inline bool spider_tdl_wire_payload_begin(spider_tdl_buf *b, size_t *mark) {
    *mark = b->len;
    uint8_t *p = spider_tdl_buf_grow(b, 4);
    if (p == NULL) return false;
    memset(p, 0, 4);
    return true;
}

/** Ends the payload started at `mark`: writes its length. Fails if it exceeds UINT32_MAX. */
static inline bool spider_tdl_wire_payload_end(spider_tdl_buf *b, size_t mark) {
    if (b->failed) return false;
    if (mark > b->len || b->len - mark < 4) { b->failed = true; return false; }
    size_t n = b->len - mark - 4;
    if (n > UINT32_MAX) { b->failed = true; return false; }
    spider_tdl_le32_(b->data + mark, (uint32_t)n);
    return true;
}

/** Appends one whole payload (already-encoded msgpack bytes). */
static inline bool spider_tdl_wire_append_payload(spider_tdl_buf *b, const void *p, size_t n) {
    if (n > UINT32_MAX) { b->failed = true; return false; }
    uint8_t *h = spider_tdl_buf_grow(b, 4);
    if (h == NULL) return false;
    spider_tdl_le32_(h, (uint32_t)n);
    return spider_tdl_buf_append(b, p, n);
}

/** A cursor over a borrowed wire frame. `count` is the declared payload count; `index` is the
 * number of payloads returned so far. Bytes after the last payload are ignored, as in spider. */
typedef struct {
    const uint8_t *data;
    size_t len, pos;
    uint32_t count, index;
} spider_tdl_wire_reader;

/** Opens a wire frame; fails if it is shorter than the 4-byte count header. */
static inline bool spider_tdl_wire_reader_init(spider_tdl_wire_reader *r, const uint8_t *data,
                                               size_t len) {
    r->data = data;
    r->len = len;
    r->pos = 0;
    r->count = 0;
    r->index = 0;
    if (len < 4 || data == NULL) return false;
    r->count = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16
               | (uint32_t)data[3] << 24;
    r->pos = 4;
    return true;
}

/** Returns the next payload as a borrowed pointer + length. Fails when all `count` payloads
 * were returned, or when the length header or the payload runs past the end of the buffer. */
static inline bool spider_tdl_wire_next(spider_tdl_wire_reader *r, const uint8_t **ptr,
                                        size_t *len) {
    *ptr = NULL;
    *len = 0;
    if (r->index >= r->count) return false;
    if (r->len - r->pos < 4) return false;
    const uint8_t *h = r->data + r->pos;
    size_t n = (size_t)((uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16
                        | (uint32_t)h[3] << 24);
    if (r->len - r->pos - 4 < n) return false;
    *ptr = h + 4;
    *len = n;
    r->pos += 4 + n;
    r->index++;
    return true;
}

/** Checks that all `count` payloads lie inside the buffer (does not move the cursor). */
static inline bool spider_tdl_wire_validate(const spider_tdl_wire_reader *r) {
    spider_tdl_wire_reader c = *r;
    const uint8_t *p;
    size_t n;
    while (c.index < c.count)
        if (!spider_tdl_wire_next(&c, &p, &n)) return false;
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* TaskContext (docs/abi.md section 3.5)                                                      */
/* ------------------------------------------------------------------------------------------ */

#define SPIDER_TDL_TASK_INDEX 0   /* TaskId::Index(task_index) */
#define SPIDER_TDL_TASK_COMMIT 1  /* TaskId::Commit */
#define SPIDER_TDL_TASK_CLEANUP 2 /* TaskId::Cleanup */

/** A decoded TaskContext [job_id, task_id, task_instance_id, resource_group_id, outputs].
 * When has_outputs, [outputs, outputs+outputs_len) is the stored SerializedTaskOutputs raw
 * buffer: it points either into the parsed input (bin form) or into outputs_owned (the
 * canonical array-of-u8 form, copied), so it lives as long as both the input and the context. */
typedef struct {
    uint64_t job_id;
    int task_id_kind; /* SPIDER_TDL_TASK_INDEX / _COMMIT / _CLEANUP */
    uint64_t task_index;
    uint64_t task_instance_id;
    uint64_t resource_group_id;
    bool has_outputs;
    const uint8_t *outputs;
    size_t outputs_len;
    uint8_t *outputs_owned;
} spider_tdl_task_context;

/* Internal: snprintf into an optional error buffer; returns false for convenience. */
SPIDER_TDL_PRINTF(3, 4)
static inline bool spider_tdl_fail_(char *err, size_t errlen, const char *fmt, ...) {
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return false;
}

/* Internal: matches a unit-variant name or index of TaskId (Commit/1, Cleanup/2). */
static inline bool spider_tdl_task_id_unit_(const uint8_t *s, size_t n, int *kind) {
    if (n == 6 && memcmp(s, "Commit", 6) == 0) { *kind = SPIDER_TDL_TASK_COMMIT; return true; }
    if (n == 7 && memcmp(s, "Cleanup", 7) == 0) { *kind = SPIDER_TDL_TASK_CLEANUP; return true; }
    return false;
}

/* Internal: parses a TaskId: {"Index": n} / {0: n}, "Commit" / 1, "Cleanup" / 2 (and the
 * map forms {"Commit": nil} / {1: nil} that serde also accepts for unit variants). */
static inline bool spider_tdl_parse_task_id_(spider_tdl_reader *r, spider_tdl_task_context *ctx,
                                             char *err, size_t errlen) {
    uint32_t n;
    const uint8_t *s;
    size_t slen;
    uint64_t idx;
    int kind;
    if (spider_tdl_read_map(r, &n)) {
        if (n != 1)
            return spider_tdl_fail_(err, errlen, "task_id: expected a 1-entry map, got %u entries",
                                    (unsigned)n);
        if (spider_tdl_read_bin(r, &s, &slen)) {
            if (slen == 5 && memcmp(s, "Index", 5) == 0) kind = SPIDER_TDL_TASK_INDEX;
            else if (!spider_tdl_task_id_unit_(s, slen, &kind))
                return spider_tdl_fail_(err, errlen, "task_id: unknown variant `%.*s`",
                                        (int)(slen > 64 ? 64 : slen), (const char *)s);
        } else if (spider_tdl_read_uint(r, &idx)) {
            if (idx > 2)
                return spider_tdl_fail_(err, errlen, "task_id: unknown variant index %llu",
                                        (unsigned long long)idx);
            kind = (int)idx;
        } else {
            return spider_tdl_fail_(err, errlen, "task_id: invalid variant key");
        }
        if (kind == SPIDER_TDL_TASK_INDEX) {
            if (!spider_tdl_read_uint(r, &idx))
                return spider_tdl_fail_(err, errlen, "task_id: Index must hold an unsigned integer");
            ctx->task_index = idx;
        } else if (!spider_tdl_read_nil(r)) {
            return spider_tdl_fail_(err, errlen, "task_id: unit variant with a value");
        }
        ctx->task_id_kind = kind;
        return true;
    }
    if (spider_tdl_read_bin(r, &s, &slen)) {
        if (!spider_tdl_task_id_unit_(s, slen, &kind))
            return spider_tdl_fail_(err, errlen, "task_id: invalid unit variant `%.*s`",
                                    (int)(slen > 64 ? 64 : slen), (const char *)s);
        ctx->task_id_kind = kind;
        return true;
    }
    if (spider_tdl_read_uint(r, &idx)) {
        if (idx != 1 && idx != 2)
            return spider_tdl_fail_(err, errlen, "task_id: invalid unit variant index %llu",
                                    (unsigned long long)idx);
        ctx->task_id_kind = (int)idx;
        return true;
    }
    return spider_tdl_fail_(err, errlen, "task_id: expected a map, string or integer");
}

/** Frees what spider_tdl_task_context_parse allocated (safe to call twice). */
static inline void spider_tdl_task_context_free(spider_tdl_task_context *ctx) {
    free(ctx->outputs_owned);
    ctx->outputs_owned = NULL;
    ctx->outputs = NULL;
    ctx->outputs_len = 0;
    ctx->has_outputs = false;
}

/** Parses the msgpack TaskContext (a 5-element array) from [data, data+len). On failure returns
 * false with a message in err (if non-NULL) and nothing to free; on success call
 * spider_tdl_task_context_free when done. Trailing bytes are ignored, as rmp-serde does. */
static inline bool spider_tdl_task_context_parse(spider_tdl_task_context *ctx,
                                                 const uint8_t *data, size_t len, char *err,
                                                 size_t errlen) {
    memset(ctx, 0, sizeof *ctx);
    if (err != NULL && errlen > 0) err[0] = '\0';
    if (data == NULL && len > 0) return spider_tdl_fail_(err, errlen, "NULL task context");
    spider_tdl_reader r;
    spider_tdl_reader_init(&r, data, len);
    uint32_t n;
    if (!spider_tdl_read_array(&r, &n))
        return spider_tdl_fail_(err, errlen, "TaskContext: expected an array");
    if (n != 5)
        return spider_tdl_fail_(err, errlen,
                                "TaskContext: invalid length %u, expected an array of 5 elements",
                                (unsigned)n);
    if (!spider_tdl_read_uint(&r, &ctx->job_id))
        return spider_tdl_fail_(err, errlen, "job_id: expected an unsigned integer");
    if (!spider_tdl_parse_task_id_(&r, ctx, err, errlen)) return false;
    if (!spider_tdl_read_uint(&r, &ctx->task_instance_id))
        return spider_tdl_fail_(err, errlen, "task_instance_id: expected an unsigned integer");
    if (!spider_tdl_read_uint(&r, &ctx->resource_group_id))
        return spider_tdl_fail_(err, errlen, "resource_group_id: expected an unsigned integer");
    if (spider_tdl_read_nil(&r)) return true;
    const uint8_t *b;
    size_t blen;
    if (spider_tdl_read_bin(&r, &b, &blen)) {
        ctx->has_outputs = true;
        ctx->outputs = b;
        ctx->outputs_len = blen;
        return true;
    }
    if (!spider_tdl_read_array(&r, &n))
        return spider_tdl_fail_(err, errlen,
                                "serialized_task_graph_outputs: expected nil, an array of u8 or bin");
    /* Each element takes at least one byte: reject impossible counts before allocating. */
    if (n > r.len - r.pos)
        return spider_tdl_fail_(err, errlen, "serialized_task_graph_outputs: truncated array");
    uint8_t *owned = (uint8_t *)malloc(n ? n : 1);
    if (owned == NULL)
        return spider_tdl_fail_(err, errlen, "serialized_task_graph_outputs: out of memory");
    for (uint32_t i = 0; i < n; i++) {
        uint64_t v;
        if (!spider_tdl_read_uint(&r, &v) || v > 0xFF) {
            free(owned);
            return spider_tdl_fail_(err, errlen,
                                    "serialized_task_graph_outputs: element %u is not a u8",
                                    (unsigned)i);
        }
        owned[i] = (uint8_t)v;
    }
    ctx->has_outputs = true;
    ctx->outputs_owned = owned;
    ctx->outputs = owned;
    ctx->outputs_len = n;
    return true;
}

/** Unwraps a stored SerializedTaskOutputs raw buffer ([option u8][payload], docs/abi.md 4.1) into
 * its wire frame (borrowed: points into raw). Option 0 is supported; option 1 (zstd) is not. */
static inline bool spider_tdl_task_outputs_wire(const uint8_t *raw, size_t len,
                                                const uint8_t **frame, size_t *frame_len,
                                                char *err, size_t errlen) {
    *frame = NULL;
    *frame_len = 0;
    if (raw == NULL || len == 0)
        return spider_tdl_fail_(err, errlen, "task outputs buffer is empty");
    if (raw[0] == 0) {
        *frame = raw + 1;
        *frame_len = len - 1;
        return true;
    }
    if (raw[0] == 1)
        return spider_tdl_fail_(err, errlen,
                                "zstd-compressed task outputs (option 1) are not supported by "
                                "spider_tdl.h; decompress the payload with libzstd");
    return spider_tdl_fail_(err, errlen, "unknown task outputs option %u", (unsigned)raw[0]);
}

/** Task prologue, as Rust's #[task] macro does it: parses raw_ctx as a TaskContext (failure:
 * DeserializationError), then opens raw_inputs as a wire frame (failure: DeserializationError)
 * and checks its payload count equals num_params (failure: DeserializationError
 * "`__<task>_params`: expected N payloads, got M"). On success *ctx must later be freed with
 * spider_tdl_task_context_free and *inputs yields the num_params payloads; on failure *error
 * holds the result to return and there is nothing to free. */
static inline bool spider_tdl_task_begin(const char *task_name, uint32_t num_params,
                                         spider_tdl_byte_array raw_ctx,
                                         spider_tdl_byte_array raw_inputs,
                                         spider_tdl_task_context *ctx,
                                         spider_tdl_wire_reader *inputs,
                                         spider_tdl_task_execution_result *error) {
    char msg[256];
    if (!spider_tdl_task_context_parse(ctx, raw_ctx.pointer, raw_ctx.length, msg, sizeof msg)) {
        *error = spider_tdl_result_error(SPIDER_TDL_ERR_DESERIALIZATION,
                                         "failed to deserialize the task context: %s", msg);
        return false;
    }
    if (!spider_tdl_wire_reader_init(inputs, raw_inputs.pointer, raw_inputs.length)) {
        spider_tdl_task_context_free(ctx);
        *error = spider_tdl_result_error(SPIDER_TDL_ERR_DESERIALIZATION,
                                         "`__%s_params`: buffer too small for the payload count "
                                         "header",
                                         task_name);
        return false;
    }
    if (inputs->count != num_params) {
        spider_tdl_task_context_free(ctx);
        *error = spider_tdl_result_error(SPIDER_TDL_ERR_DESERIALIZATION,
                                         "`__%s_params`: expected %lu payloads, got %lu",
                                         task_name, (unsigned long)num_params,
                                         (unsigned long)inputs->count);
        return false;
    }
    if (!spider_tdl_wire_validate(inputs)) {
        spider_tdl_task_context_free(ctx);
        *error = spider_tdl_result_error(SPIDER_TDL_ERR_DESERIALIZATION,
                                         "`__%s_params`: a payload runs past the end of the "
                                         "input buffer",
                                         task_name);
        return false;
    }
    return true;
}

#ifdef __cplusplus
}
#endif

#endif /* SPIDER_TDL_H */
