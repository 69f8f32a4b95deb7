/* acme_tasks: an example native task package (spider-tdl C ABI, spider_tdl.h).
 *
 * Tasks:
 *   triangle(n: u64) -> u64     1 + 2 + ... + n
 *   refuse() -> !               fails with Custom("acme_tasks refuses")
 *
 * The package name is this directory's name; spider build-package and the build hook compile
 * every .c file here into libacme_tasks.so.
 */

#include <spider_tdl.h>

#define PACKAGE_NAME "acme_tasks"

static spider_tdl_task_execution_result task_triangle(spider_tdl_byte_array raw_ctx,
                                                      spider_tdl_byte_array raw_inputs) {
    spider_tdl_task_context ctx;
    spider_tdl_wire_reader in;
    spider_tdl_task_execution_result err;
    if (!spider_tdl_task_begin("triangle", 1, raw_ctx, raw_inputs, &ctx, &in, &err)) return err;
    spider_tdl_task_context_free(&ctx);

    const uint8_t *payload;
    size_t length;
    uint64_t n;
    spider_tdl_reader r;
    if (!spider_tdl_wire_next(&in, &payload, &length))
        return spider_tdl_result_error(SPIDER_TDL_ERR_DESERIALIZATION, "triangle: missing n");
    spider_tdl_reader_init(&r, payload, length);
    if (!spider_tdl_read_uint(&r, &n) || n > 4294967295u)
        return spider_tdl_result_error(SPIDER_TDL_ERR_DESERIALIZATION,
                                       "triangle: n must be an unsigned integer below 2**32");

    spider_tdl_buf out;
    size_t mark;
    spider_tdl_buf_init(&out);
    spider_tdl_wire_begin(&out, 1);
    spider_tdl_wire_payload_begin(&out, &mark);
    spider_tdl_write_uint(&out, n * (n + 1) / 2);
    spider_tdl_wire_payload_end(&out, mark);
    return spider_tdl_result_ok(&out);
}

static spider_tdl_task_execution_result task_refuse(spider_tdl_byte_array raw_ctx,
                                                    spider_tdl_byte_array raw_inputs) {
    (void)raw_ctx;
    (void)raw_inputs;
    return spider_tdl_result_error(SPIDER_TDL_ERR_CUSTOM, "acme_tasks refuses");
}

spider_tdl_version __spider_tdl_package_get_version(void) { return spider_tdl_host_version(); }

spider_tdl_char_array __spider_tdl_package_get_name(void) {
    static const char name[] = PACKAGE_NAME;
    spider_tdl_char_array a = {name, sizeof name - 1};
    return a;
}

spider_tdl_task_execution_result __spider_tdl_package_execute(spider_tdl_char_array name,
                                                              spider_tdl_byte_array raw_ctx,
                                                              spider_tdl_byte_array raw_inputs) {
    if (spider_tdl_char_array_eq(name, "triangle")) return task_triangle(raw_ctx, raw_inputs);
    if (spider_tdl_char_array_eq(name, "refuse")) return task_refuse(raw_ctx, raw_inputs);
    return spider_tdl_result_error_n(SPIDER_TDL_ERR_TASK_NOT_FOUND, name.pointer, name.length);
}
