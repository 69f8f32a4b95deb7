/*
 * integration_test_tasks: the C mirror of y-scope/spider's Rust integration test package
 * (tests/huntsman/integration-test-tasks), plus the fault tasks the reliability tests need.
 *
 * Tasks (name(params) -> outputs):
 *   fibonacci(n: u64) -> u64              naive exponential recursion (fib(45) takes seconds)
 *   always_fail() -> !                    ExecutionError "always_fail: intentional failure"
 *   always_panic() -> !                   abort() (SIGABRT), like a Rust panic crossing FFI
 *   sleep_and_echo(strs: list[str]) -> list[str]   sleeps 50 us, echoes the strings
 *   assert_outputs_sum_zero() -> ()       commit task: the i64 task-graph outputs sum to zero
 *   assert_initialized() -> ()            succeeds iff __spider_tdl_package_init ran
 *   noop() -> ()                          does nothing (per-task overhead benchmarks)
 *   sleep_ms(ms: u64) -> ()               sleeps ms milliseconds
 *   print_to_stdout() -> ()               writes to fd 1 (stdio and raw bytes incl. a fake frame)
 *   exit_with(code: u64) -> !             _exit(code)
 *   segfault() -> !                       SIGSEGV via a NULL write
 *   big(n: u64) -> str                    a string of exactly n 'x' bytes
 *   get_env(name: str) -> Option<str>     the executor's environment variable, or nil
 *   hold_mb(mb: u64) -> ()                allocates and touches mb MiB and keeps them (RSS grows)
 *   raw_outputs(data: bytes) -> raw       returns `data` itself as the task's output buffer, unchecked
 *                                         (for fuzzing how the host decodes outputs)
 *   fork_child(ms: u64) -> u64            forks a grandchild that sleeps ms milliseconds; its pid
 *   mark_and_sleep(path: str, ms: u64) -> ()  writes the executor's pid to `path`, then sleeps ms
 *                                         milliseconds (the caller sees the task is running)
 *
 * Init: fails with Custom("init failed because SPIDER_TEST_TDL_INIT_SHOULD_FAIL is set") when
 * that variable is set; hangs forever when SPIDER_TEST_TDL_INIT_SHOULD_HANG is set (to test a
 * hang in package init); otherwise records that it ran.
 *
 * Build: cc -std=c11 -O2 -Wall -Wextra -shared -fPIC -I<spider_core/include> *.c \
 *            -o <dir>/integration_test_tasks/libintegration_test_tasks.so
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <spider_tdl.h>

#define PACKAGE_NAME "integration_test_tasks"

/* The fixed sleep of sleep_and_echo, as spider's INSTRUMENT_SLEEP_US. */
#define INSTRUMENT_SLEEP_US 50

/* Set by __spider_tdl_package_init; read by assert_initialized. */
static volatile int g_initialized = 0;

typedef spider_tdl_task_execution_result (*task_fn)(spider_tdl_byte_array raw_ctx,
                                                    spider_tdl_byte_array raw_inputs);

/* ------------------------------------------------------------------------------------------ */
/* Helpers                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* DeserializationError for parameter `param` (index i) of `task`. */
static spider_tdl_task_execution_result param_error(const char *task, const char *param,
                                                    unsigned i, const char *expected) {
    return spider_tdl_result_error(SPIDER_TDL_ERR_DESERIALIZATION,
                                   "`__%s_params`: failed to deserialize parameter `%s` "
                                   "(payload %u): expected %s",
                                   task, param, i, expected);
}

/* Decodes the next input payload as a u64. */
static bool next_u64(spider_tdl_wire_reader *in, uint64_t *out) {
    const uint8_t *p;
    size_t n;
    if (!spider_tdl_wire_next(in, &p, &n)) return false;
    spider_tdl_reader r;
    spider_tdl_reader_init(&r, p, n);
    return spider_tdl_read_uint(&r, out);
}

/* Sleeps for the given duration, resuming after signal interruptions. */
static void sleep_for(time_t sec, long nsec) {
    struct timespec req = {sec, nsec}, rem;
    while (nanosleep(&req, &rem) != 0 && errno == EINTR) req = rem;
}

/* Writes all n bytes to fd, retrying on EINTR and partial writes. */
static void write_all(int fd, const void *data, size_t n) {
    const char *p = (const char *)data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Tasks                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* Deliberately naive. Calls go through a volatile function pointer so the compiler can
 * neither inline nor turn the recursion into a loop: the cost stays exponential. */
static uint64_t fib(uint64_t n);
static uint64_t (*volatile fib_indirect)(uint64_t) = fib;

static uint64_t fib(uint64_t n) {
    if (n < 2) return n;
    return fib_indirect(n - 1) + fib_indirect(n - 2);
}

static spider_tdl_task_execution_result task_fibonacci(spider_tdl_byte_array raw_ctx,
                                                       spider_tdl_byte_array raw_inputs) {
    spider_tdl_task_context ctx;
    spider_tdl_wire_reader in;
    spider_tdl_task_execution_result err;
    if (!spider_tdl_task_begin("fibonacci", 1, raw_ctx, raw_inputs, &ctx, &in, &err)) return err;
    spider_tdl_task_context_free(&ctx);

    uint64_t n;
    if (!next_u64(&in, &n)) return param_error("fibonacci", "n", 0, "an unsigned 64-bit integer");

    uint64_t value = fib(n);

    spider_tdl_buf out;
    size_t mark;
    spider_tdl_buf_init(&out);
    spider_tdl_wire_begin(&out, 1);
    spider_tdl_wire_payload_begin(&out, &mark);
    spider_tdl_write_uint(&out, value);
    spider_tdl_wire_payload_end(&out, mark);
    return spider_tdl_result_ok(&out);
}

static spider_tdl_task_execution_result task_always_fail(spider_tdl_byte_array raw_ctx,
                                                         spider_tdl_byte_array raw_inputs) {
    spider_tdl_task_context ctx;
    spider_tdl_wire_reader in;
    spider_tdl_task_execution_result err;
    if (!spider_tdl_task_begin("always_fail", 0, raw_ctx, raw_inputs, &ctx, &in, &err))
        return err;
    spider_tdl_task_context_free(&ctx);
    return spider_tdl_result_error(SPIDER_TDL_ERR_EXECUTION, "always_fail: intentional failure");
}

static spider_tdl_task_execution_result task_always_panic(spider_tdl_byte_array raw_ctx,
                                                          spider_tdl_byte_array raw_inputs) {
    spider_tdl_task_context ctx;
    spider_tdl_wire_reader in;
    spider_tdl_task_execution_result err;
    if (!spider_tdl_task_begin("always_panic", 0, raw_ctx, raw_inputs, &ctx, &in, &err))
        return err;
    spider_tdl_task_context_free(&ctx);
    fputs("always_panic: intentional panic\n", stderr);
    fflush(stderr);
    abort();
}

static spider_tdl_task_execution_result task_sleep_and_echo(spider_tdl_byte_array raw_ctx,
                                                            spider_tdl_byte_array raw_inputs) {
    spider_tdl_task_context ctx;
    spider_tdl_wire_reader in;
    spider_tdl_task_execution_result err;
    if (!spider_tdl_task_begin("sleep_and_echo", 1, raw_ctx, raw_inputs, &ctx, &in, &err))
        return err;
    spider_tdl_task_context_free(&ctx);

    const uint8_t *payload;
    size_t payload_len;
    if (!spider_tdl_wire_next(&in, &payload, &payload_len)) /* validated by task_begin */
        return param_error("sleep_and_echo", "strs", 0, "a payload");

    /* Pass 1: decode and validate the whole Vec<String>. */
    spider_tdl_reader r;
    spider_tdl_reader_init(&r, payload, payload_len);
    uint32_t count;
    if (!spider_tdl_read_array(&r, &count))
        return param_error("sleep_and_echo", "strs", 0, "an array of strings");
    size_t body_start = r.pos;
    for (uint32_t i = 0; i < count; i++) {
        const char *s;
        size_t n;
        if (!spider_tdl_read_str(&r, &s, &n))
            return param_error("sleep_and_echo", "strs", 0, "an array of UTF-8 strings");
    }
    size_t body_len = r.pos - body_start;

    sleep_for(0, INSTRUMENT_SLEEP_US * 1000L);

    /* Pass 2: re-encode canonically (the input may have used bin or wider headers). */
    spider_tdl_buf out;
    size_t mark;
    spider_tdl_buf_init(&out);
    spider_tdl_buf_reserve(&out, 4 + 4 + 5 + body_len);
    spider_tdl_wire_begin(&out, 1);
    spider_tdl_wire_payload_begin(&out, &mark);
    spider_tdl_write_array_header(&out, count);
    r.pos = body_start;
    for (uint32_t i = 0; i < count; i++) {
        const char *s;
        size_t n;
        if (!spider_tdl_read_str(&r, &s, &n)) break; /* cannot happen: validated above */
        spider_tdl_write_str(&out, s, n);
    }
    spider_tdl_wire_payload_end(&out, mark);
    return spider_tdl_result_ok(&out);
}

static const char *task_id_name(const spider_tdl_task_context *ctx, char *buf, size_t len) {
    switch (ctx->task_id_kind) {
    case SPIDER_TDL_TASK_COMMIT: return "Commit";
    case SPIDER_TDL_TASK_CLEANUP: return "Cleanup";
    default:
        snprintf(buf, len, "Index(%" PRIu64 ")", ctx->task_index);
        return buf;
    }
}

static spider_tdl_task_execution_result check_outputs_sum_zero(const spider_tdl_task_context *ctx) {
    char idbuf[48];
    if (ctx->task_id_kind != SPIDER_TDL_TASK_COMMIT)
        return spider_tdl_result_error(SPIDER_TDL_ERR_INVALID_TASK_CONTEXT,
                                       "assert_outputs_sum_zero must run as a commit task, but "
                                       "the current task is %s",
                                       task_id_name(ctx, idbuf, sizeof idbuf));
    if (!ctx->has_outputs)
        return spider_tdl_result_error(SPIDER_TDL_ERR_INVALID_TASK_CONTEXT,
                                       "assert_outputs_sum_zero: task-graph outputs are required "
                                       "for a commit task but were not provided");

    char msg[256];
    const uint8_t *frame;
    size_t frame_len;
    if (!spider_tdl_task_outputs_wire(ctx->outputs, ctx->outputs_len, &frame, &frame_len, msg,
                                      sizeof msg))
        return spider_tdl_result_error(SPIDER_TDL_ERR_DESERIALIZATION,
                                       "assert_outputs_sum_zero: %s", msg);

    spider_tdl_wire_reader w;
    if (!spider_tdl_wire_reader_init(&w, frame, frame_len))
        return spider_tdl_result_error(SPIDER_TDL_ERR_DESERIALIZATION,
                                       "assert_outputs_sum_zero: task-graph outputs: buffer too "
                                       "small for the payload count header");
    if (!spider_tdl_wire_validate(&w))
        return spider_tdl_result_error(SPIDER_TDL_ERR_DESERIALIZATION,
                                       "assert_outputs_sum_zero: task-graph outputs: a payload "
                                       "runs past the end of the buffer");
    if (w.count == 0)
        return spider_tdl_result_error(SPIDER_TDL_ERR_EXECUTION,
                                       "assert_outputs_sum_zero: task-graph outputs empty "
                                       "(empty outputs)");

    int64_t sum = 0;
    for (uint32_t i = 0; i < w.count; i++) {
        const uint8_t *p;
        size_t n;
        spider_tdl_reader r;
        if (!spider_tdl_wire_next(&w, &p, &n)) break; /* cannot happen: validated above */
        spider_tdl_reader_init(&r, p, n);
        int64_t v;
        if (!spider_tdl_read_int(&r, &v))
            return spider_tdl_result_error(SPIDER_TDL_ERR_DESERIALIZATION,
                                           "assert_outputs_sum_zero: task-graph output %u is not "
                                           "an i64",
                                           (unsigned)i);
        if ((v > 0 && sum > INT64_MAX - v) || (v < 0 && sum < INT64_MIN - v))
            return spider_tdl_result_error(SPIDER_TDL_ERR_EXECUTION,
                                           "assert_outputs_sum_zero: the sum of the task-graph "
                                           "outputs overflows i64 at output %u",
                                           (unsigned)i);
        sum += v;
    }
    if (sum != 0)
        return spider_tdl_result_error(SPIDER_TDL_ERR_EXECUTION,
                                       "task-graph outputs do not sum to zero: got %" PRId64, sum);
    return spider_tdl_result_unit();
}

static spider_tdl_task_execution_result task_assert_outputs_sum_zero(
    spider_tdl_byte_array raw_ctx, spider_tdl_byte_array raw_inputs) {
    spider_tdl_task_context ctx;
    spider_tdl_wire_reader in;
    spider_tdl_task_execution_result err;
    if (!spider_tdl_task_begin("assert_outputs_sum_zero", 0, raw_ctx, raw_inputs, &ctx, &in,
                               &err))
        return err;
    spider_tdl_task_execution_result res = check_outputs_sum_zero(&ctx);
    spider_tdl_task_context_free(&ctx);
    return res;
}

static spider_tdl_task_execution_result task_assert_initialized(spider_tdl_byte_array raw_ctx,
                                                                spider_tdl_byte_array raw_inputs) {
    spider_tdl_task_context ctx;
    spider_tdl_wire_reader in;
    spider_tdl_task_execution_result err;
    if (!spider_tdl_task_begin("assert_initialized", 0, raw_ctx, raw_inputs, &ctx, &in, &err))
        return err;
    spider_tdl_task_context_free(&ctx);
    if (!g_initialized)
        return spider_tdl_result_error(SPIDER_TDL_ERR_EXECUTION,
                                       "assert_initialized: package init hook did not run");
    return spider_tdl_result_unit();
}

static spider_tdl_task_execution_result task_noop(spider_tdl_byte_array raw_ctx,
                                                  spider_tdl_byte_array raw_inputs) {
    spider_tdl_task_context ctx;
    spider_tdl_wire_reader in;
    spider_tdl_task_execution_result err;
    if (!spider_tdl_task_begin("noop", 0, raw_ctx, raw_inputs, &ctx, &in, &err)) return err;
    spider_tdl_task_context_free(&ctx);
    return spider_tdl_result_unit();
}

static spider_tdl_task_execution_result task_sleep_ms(spider_tdl_byte_array raw_ctx,
                                                      spider_tdl_byte_array raw_inputs) {
    spider_tdl_task_context ctx;
    spider_tdl_wire_reader in;
    spider_tdl_task_execution_result err;
    if (!spider_tdl_task_begin("sleep_ms", 1, raw_ctx, raw_inputs, &ctx, &in, &err)) return err;
    spider_tdl_task_context_free(&ctx);

    uint64_t ms;
    if (!next_u64(&in, &ms)) return param_error("sleep_ms", "ms", 0, "an unsigned 64-bit integer");

    /* Clamp to ~68 years so the seconds always fit a 32-bit time_t. */
    uint64_t sec = ms / 1000;
    if (sec > 0x7FFFFFFF) sec = 0x7FFFFFFF;
    sleep_for((time_t)sec, (long)(ms % 1000) * 1000000L);
    return spider_tdl_result_unit();
}

static void *volatile g_held;

/* hold_mb(mb: u64) -> (): allocates mb MiB, writes every page and never frees them, so the
 * executor's resident memory grows by that much (for the max_executor_rss tests). */
static spider_tdl_task_execution_result task_hold_mb(spider_tdl_byte_array raw_ctx,
                                                     spider_tdl_byte_array raw_inputs) {
    spider_tdl_task_context ctx;
    spider_tdl_wire_reader in;
    spider_tdl_task_execution_result err;
    if (!spider_tdl_task_begin("hold_mb", 1, raw_ctx, raw_inputs, &ctx, &in, &err)) return err;
    spider_tdl_task_context_free(&ctx);

    uint64_t mb;
    if (!next_u64(&in, &mb) || mb > 4096) return param_error("hold_mb", "mb", 0, "an integer from 0 to 4096");
    char *held = malloc((size_t)mb << 20);
    if (held == NULL && mb > 0)
        return spider_tdl_result_error(SPIDER_TDL_ERR_EXECUTION, "hold_mb: cannot allocate %" PRIu64 " MiB", mb);
    if (held != NULL) memset(held, 1, (size_t)mb << 20);
    g_held = held; /* kept where the compiler must assume it is used, so nothing is elided */
    return spider_tdl_result_unit();
}

static spider_tdl_task_execution_result task_print_to_stdout(spider_tdl_byte_array raw_ctx,
                                                             spider_tdl_byte_array raw_inputs) {
    spider_tdl_task_context ctx;
    spider_tdl_wire_reader in;
    spider_tdl_task_execution_result err;
    if (!spider_tdl_task_begin("print_to_stdout", 0, raw_ctx, raw_inputs, &ctx, &in, &err))
        return err;
    spider_tdl_task_context_free(&ctx);

    printf("print_to_stdout: hello from a task\n");
    fflush(stdout);
    /* Raw bytes that look like a length-prefixed frame (both LE and BE u32 = 5 would match
     * "\0\0\0\5" or "\5\0\0\0"): a host that reads protocol frames from fd 1 would choke. */
    static const char raw[] = "\x00\x00\x00\x05junk\n\x05\x00\x00\x00junk\n";
    write_all(STDOUT_FILENO, raw, sizeof raw - 1);
    return spider_tdl_result_unit();
}

static spider_tdl_task_execution_result task_exit_with(spider_tdl_byte_array raw_ctx,
                                                       spider_tdl_byte_array raw_inputs) {
    spider_tdl_task_context ctx;
    spider_tdl_wire_reader in;
    spider_tdl_task_execution_result err;
    if (!spider_tdl_task_begin("exit_with", 1, raw_ctx, raw_inputs, &ctx, &in, &err)) return err;
    spider_tdl_task_context_free(&ctx);

    uint64_t code;
    if (!next_u64(&in, &code))
        return param_error("exit_with", "code", 0, "an unsigned 64-bit integer");
    /* Only the low 8 bits of an exit status are observable. */
    _exit((int)(code & 0xFF));
}

/* Loaded through a volatile so the compiler cannot see that it is NULL (and replace the store
 * with a trap instruction, which would raise SIGILL instead of SIGSEGV). */
static int *volatile g_null_pointer = NULL;

static spider_tdl_task_execution_result task_segfault(spider_tdl_byte_array raw_ctx,
                                                      spider_tdl_byte_array raw_inputs) {
    spider_tdl_task_context ctx;
    spider_tdl_wire_reader in;
    spider_tdl_task_execution_result err;
    if (!spider_tdl_task_begin("segfault", 0, raw_ctx, raw_inputs, &ctx, &in, &err)) return err;
    spider_tdl_task_context_free(&ctx);

    volatile int *p = g_null_pointer;
    *p = 42;
    raise(SIGSEGV); /* only reached if the store somehow did not fault */
    abort();
}

static spider_tdl_task_execution_result task_big(spider_tdl_byte_array raw_ctx,
                                                 spider_tdl_byte_array raw_inputs) {
    spider_tdl_task_context ctx;
    spider_tdl_wire_reader in;
    spider_tdl_task_execution_result err;
    if (!spider_tdl_task_begin("big", 1, raw_ctx, raw_inputs, &ctx, &in, &err)) return err;
    spider_tdl_task_context_free(&ctx);

    uint64_t n;
    if (!next_u64(&in, &n)) return param_error("big", "n", 0, "an unsigned 64-bit integer");
    /* The payload (5-byte str32 header + n) must fit the wire format's u32 length. */
    if (n > (uint64_t)UINT32_MAX - 5 || n > (uint64_t)(SIZE_MAX - 64))
        return spider_tdl_result_error(SPIDER_TDL_ERR_SERIALIZATION,
                                       "big: %" PRIu64 " bytes exceed the wire payload limit", n);

    spider_tdl_buf out;
    size_t mark;
    spider_tdl_buf_init(&out);
    spider_tdl_buf_reserve(&out, 4 + 4 + 5 + (size_t)n);
    spider_tdl_wire_begin(&out, 1);
    spider_tdl_wire_payload_begin(&out, &mark);
    spider_tdl_write_str_header(&out, (size_t)n);
    uint8_t *dst = spider_tdl_buf_grow(&out, (size_t)n);
    if (dst != NULL) memset(dst, 'x', (size_t)n);
    spider_tdl_wire_payload_end(&out, mark);
    return spider_tdl_result_ok(&out); /* SerializationError if allocation failed */
}

/* get_env(name: str) -> Option<str>: the executor's environment variable, or nil if unset. */
static spider_tdl_task_execution_result task_get_env(spider_tdl_byte_array raw_ctx,
                                                     spider_tdl_byte_array raw_inputs) {
    spider_tdl_task_context ctx;
    spider_tdl_wire_reader in;
    spider_tdl_task_execution_result err;
    if (!spider_tdl_task_begin("get_env", 1, raw_ctx, raw_inputs, &ctx, &in, &err)) return err;
    spider_tdl_task_context_free(&ctx);

    const uint8_t *payload;
    size_t payload_len;
    const char *s;
    size_t n;
    spider_tdl_reader r;
    if (!spider_tdl_wire_next(&in, &payload, &payload_len))
        return param_error("get_env", "name", 0, "a string");
    spider_tdl_reader_init(&r, payload, payload_len);
    if (!spider_tdl_read_str(&r, &s, &n) || n > 4096 || memchr(s, 0, n) != NULL)
        return param_error("get_env", "name", 0, "a string");
    char name[4097];
    memcpy(name, s, n);
    name[n] = 0;
    const char *value = getenv(name);

    spider_tdl_buf out;
    size_t mark;
    spider_tdl_buf_init(&out);
    spider_tdl_wire_begin(&out, 1);
    spider_tdl_wire_payload_begin(&out, &mark);
    if (value == NULL)
        spider_tdl_write_nil(&out);
    else
        spider_tdl_write_cstr(&out, value);
    spider_tdl_wire_payload_end(&out, mark);
    return spider_tdl_result_ok(&out);
}

/* raw_outputs(data: bytes) -> raw: the bytes of `data` (a msgpack bin) become the task's
 * whole output buffer, exactly as they are: not a wire frame unless the caller made one. The
 * host must turn whatever comes back into a clear outcome. */
static spider_tdl_task_execution_result task_raw_outputs(spider_tdl_byte_array raw_ctx,
                                                         spider_tdl_byte_array raw_inputs) {
    spider_tdl_task_context ctx;
    spider_tdl_wire_reader in;
    spider_tdl_task_execution_result err;
    if (!spider_tdl_task_begin("raw_outputs", 1, raw_ctx, raw_inputs, &ctx, &in, &err)) return err;
    spider_tdl_task_context_free(&ctx);

    const uint8_t *payload;
    size_t payload_len;
    const uint8_t *data;
    size_t n;
    spider_tdl_reader r;
    if (!spider_tdl_wire_next(&in, &payload, &payload_len))
        return param_error("raw_outputs", "data", 0, "bytes");
    spider_tdl_reader_init(&r, payload, payload_len);
    if (!spider_tdl_read_bin(&r, &data, &n)) return param_error("raw_outputs", "data", 0, "bytes");

    spider_tdl_buf out;
    spider_tdl_buf_init(&out);
    spider_tdl_buf_append(&out, data, n);
    return spider_tdl_result_ok(&out);
}

/* fork_child(ms: u64) -> u64: forks a process that sleeps ms milliseconds and exits, and returns
 * its pid without waiting for it: a task that leaves a grandchild of the pool behind. */
static spider_tdl_task_execution_result task_fork_child(spider_tdl_byte_array raw_ctx,
                                                        spider_tdl_byte_array raw_inputs) {
    spider_tdl_task_context ctx;
    spider_tdl_wire_reader in;
    spider_tdl_task_execution_result err;
    if (!spider_tdl_task_begin("fork_child", 1, raw_ctx, raw_inputs, &ctx, &in, &err)) return err;
    spider_tdl_task_context_free(&ctx);

    uint64_t ms;
    if (!next_u64(&in, &ms)) return param_error("fork_child", "ms", 0, "an unsigned 64-bit integer");
    uint64_t sec = ms / 1000;
    if (sec > 0x7FFFFFFF) sec = 0x7FFFFFFF;
    pid_t child = fork();
    if (child < 0)
        return spider_tdl_result_error(SPIDER_TDL_ERR_EXECUTION, "fork_child: fork failed: %s",
                                       strerror(errno));
    if (child == 0) {
        sleep_for((time_t)sec, (long)(ms % 1000) * 1000000L);
        _exit(0);
    }

    spider_tdl_buf out;
    size_t mark;
    spider_tdl_buf_init(&out);
    spider_tdl_wire_begin(&out, 1);
    spider_tdl_wire_payload_begin(&out, &mark);
    spider_tdl_write_uint(&out, (uint64_t)child);
    spider_tdl_wire_payload_end(&out, mark);
    return spider_tdl_result_ok(&out);
}

/* mark_and_sleep(path: str, ms: u64) -> (): writes the executor's pid to `path` (created or
 * truncated), then sleeps ms milliseconds; a caller waiting for the file knows the task runs. */
static spider_tdl_task_execution_result task_mark_and_sleep(spider_tdl_byte_array raw_ctx,
                                                            spider_tdl_byte_array raw_inputs) {
    spider_tdl_task_context ctx;
    spider_tdl_wire_reader in;
    spider_tdl_task_execution_result err;
    if (!spider_tdl_task_begin("mark_and_sleep", 2, raw_ctx, raw_inputs, &ctx, &in, &err))
        return err;
    spider_tdl_task_context_free(&ctx);

    const uint8_t *payload;
    size_t payload_len;
    const char *s;
    size_t n;
    spider_tdl_reader r;
    if (!spider_tdl_wire_next(&in, &payload, &payload_len))
        return param_error("mark_and_sleep", "path", 0, "a string");
    spider_tdl_reader_init(&r, payload, payload_len);
    if (!spider_tdl_read_str(&r, &s, &n) || n == 0 || n > 4096 || memchr(s, 0, n) != NULL)
        return param_error("mark_and_sleep", "path", 0, "a non-empty path");
    char path[4097];
    memcpy(path, s, n);
    path[n] = 0;
    uint64_t ms;
    if (!next_u64(&in, &ms))
        return param_error("mark_and_sleep", "ms", 1, "an unsigned 64-bit integer");

    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return spider_tdl_result_error(SPIDER_TDL_ERR_EXECUTION, "mark_and_sleep: cannot open %s: %s",
                                       path, strerror(errno));
    char text[32];
    int len = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    write_all(fd, text, (size_t)len);
    close(fd);

    uint64_t sec = ms / 1000;
    if (sec > 0x7FFFFFFF) sec = 0x7FFFFFFF;
    sleep_for((time_t)sec, (long)(ms % 1000) * 1000000L);
    return spider_tdl_result_unit();
}

/* ------------------------------------------------------------------------------------------ */
/* Registry and exported symbols                                                              */
/* ------------------------------------------------------------------------------------------ */

static const struct {
    const char *name;
    task_fn fn;
} TASKS[] = {
    {"fibonacci", task_fibonacci},
    {"always_fail", task_always_fail},
    {"always_panic", task_always_panic},
    {"sleep_and_echo", task_sleep_and_echo},
    {"assert_outputs_sum_zero", task_assert_outputs_sum_zero},
    {"assert_initialized", task_assert_initialized},
    {"noop", task_noop},
    {"sleep_ms", task_sleep_ms},
    {"print_to_stdout", task_print_to_stdout},
    {"exit_with", task_exit_with},
    {"segfault", task_segfault},
    {"big", task_big},
    {"get_env", task_get_env},
    {"hold_mb", task_hold_mb},
    {"raw_outputs", task_raw_outputs},
    {"fork_child", task_fork_child},
    {"mark_and_sleep", task_mark_and_sleep},
};

spider_tdl_version __spider_tdl_package_get_version(void) {
    return spider_tdl_host_version();
}

spider_tdl_char_array __spider_tdl_package_get_name(void) {
    static const char name[] = PACKAGE_NAME;
    spider_tdl_char_array a = {name, sizeof name - 1};
    return a;
}

spider_tdl_task_execution_result __spider_tdl_package_init(void) {
    if (getenv("SPIDER_TEST_TDL_INIT_SHOULD_FAIL") != NULL)
        return spider_tdl_result_error(SPIDER_TDL_ERR_CUSTOM,
                                       "init failed because SPIDER_TEST_TDL_INIT_SHOULD_FAIL is "
                                       "set");
    if (getenv("SPIDER_TEST_TDL_INIT_SHOULD_HANG") != NULL)
        for (;;) sleep_for(3600, 0);
    g_initialized = 1;
    return spider_tdl_result_empty();
}

spider_tdl_task_execution_result __spider_tdl_package_execute(spider_tdl_char_array name,
                                                              spider_tdl_byte_array raw_ctx,
                                                              spider_tdl_byte_array raw_inputs) {
    if (name.pointer == NULL && name.length > 0)
        return spider_tdl_result_error(SPIDER_TDL_ERR_DESERIALIZATION, "task name is NULL");
    if (name.length > 0 && !spider_tdl_utf8_valid((const uint8_t *)name.pointer, name.length))
        return spider_tdl_result_error(SPIDER_TDL_ERR_DESERIALIZATION,
                                       "task name is not valid UTF-8");
    for (size_t i = 0; i < sizeof TASKS / sizeof TASKS[0]; i++)
        if (spider_tdl_char_array_eq(name, TASKS[i].name)) return TASKS[i].fn(raw_ctx, raw_inputs);
    return spider_tdl_result_error_n(SPIDER_TDL_ERR_TASK_NOT_FOUND, name.pointer, name.length);
}
