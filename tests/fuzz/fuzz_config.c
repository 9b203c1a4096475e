/* The config parser on arbitrary INI text: loading never crashes, and a config that
 * loads is written and read back to the very same config, valid or not as it was (the
 * promise of loco_config_write, which `train` relies on for config.ini and model.bin). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "loco/config.h"

/* c written as INI text; NULL when the writer refuses it. free() it. */
static char *written(const loco_config *c) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    FUZZ_ASSERT(f, "open_memstream failed");
    int rc = loco_config_write(c, f);
    FUZZ_ASSERT(fclose(f) == 0, "memstream close failed");
    if (rc == 0) return text;
    free(text);
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_string(data, size);
    loco_config c;
    loco_err e;
    loco_config_default(&c);
    if (loco_config_load_string(&c, text, "fuzz.ini", &e) == 0) {
        int valid = loco_config_validate(&c, &e);
        char *out = written(&c);
        FUZZ_ASSERT(out, "a config that loaded is refused by the writer");
        loco_config back;
        loco_config_default(&back);
        int rc = loco_config_load_string(&back, out, "written.ini", &e);
        FUZZ_ASSERT(rc == 0, "the written config does not load: %s\n%s", e.msg, out);
        FUZZ_ASSERT(loco_config_validate(&back, &e) == valid, "validation changed on the "
                    "way back:\n%s", out);
        char *again = written(&back);
        FUZZ_ASSERT(again && !strcmp(out, again), "the config changed on the way back:\n%s",
                    out);
        free(again);
        free(out);
    } else {
        FUZZ_ASSERT(strlen(e.msg) > 0, "an error without a message");
    }
    free(text);
    return 0;
}
