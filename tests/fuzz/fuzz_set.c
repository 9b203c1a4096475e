/* --set and the shorthand flags on arbitrary bytes. The input is split at NULs and
 * newlines into arguments; each one goes to loco_config_set as "section.key=value",
 * and to loco_config_flag as a value of the shorthand its first byte picks, and as a
 * flag name of its own. Whatever the bytes, nothing crashes, errors carry a message,
 * and what was applied still writes and reads back. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "loco/config.h"

/* config.c's shorthands (loco_config_flags_help lists them), and one that is not */
static const char *const flags[] = {
    "--workers", "--clock",  "--pin",          "--method",        "--hetero",
    "--slowdown", "--jitter", "--speed-change", "--slowdown-mode", "--not-a-flag",
};
enum { NFLAGS = sizeof flags / sizeof flags[0] };

static void expect_error_or_ok(int rc, const loco_err *e) {
    FUZZ_ASSERT(rc >= -1 && rc <= 1, "unexpected return %d", rc);
    if (rc == -1) FUZZ_ASSERT(strlen(e->msg) > 0, "an error without a message");
}

static void apply_arg(loco_config *c, const char *arg) {
    loco_err e;
    int rc = loco_config_set(c, arg, &e);
    FUZZ_ASSERT(rc == 0 || rc == -1, "loco_config_set returned %d", rc);
    expect_error_or_ok(rc, &e);
    const char *flag = flags[(unsigned char)arg[0] % NFLAGS];
    expect_error_or_ok(loco_config_flag(c, flag, arg[0] ? arg + 1 : arg, &e), &e);
    expect_error_or_ok(loco_config_flag(c, flag, NULL, &e), &e);
    expect_error_or_ok(loco_config_flag(c, arg, arg, &e), &e);
}

/* c as INI text; the writer must accept it. free() it. */
static char *written(const loco_config *c) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    FUZZ_ASSERT(f, "open_memstream failed");
    int rc = loco_config_write(c, f);
    FUZZ_ASSERT(fclose(f) == 0, "memstream close failed");
    FUZZ_ASSERT(rc == 0, "values applied by --set or a flag are refused by the writer");
    return text;
}

static void expect_round_trip(const loco_config *c) {
    char *text = written(c);
    loco_config back;
    loco_err e;
    loco_config_default(&back);
    FUZZ_ASSERT(loco_config_load_string(&back, text, "written.ini", &e) == 0,
                "the written config does not load: %s\n%s", e.msg, text);
    char *again = written(&back);
    FUZZ_ASSERT(!strcmp(text, again), "the config changed on the way back:\n%s", text);
    free(again);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    loco_config c;
    loco_err e;
    loco_config_default(&c);
    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i < size && data[i] != '\0' && data[i] != '\n') continue;
        char *arg = fuzz_string(data + start, i - start);
        apply_arg(&c, arg);
        free(arg);
        start = i + 1;
    }
    loco_config_validate(&c, &e);
    expect_round_trip(&c);
    return 0;
}
