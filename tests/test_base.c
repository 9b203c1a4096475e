/* base: numbers and lists as loco's settings are written, the CRC-32 and FNV-1a of its
 * files against their published check values, times as timespecs, sizes, enums, the
 * seeded streams and the crash-safe file. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loco/base.h"

Test(base, whole_strings_are_numbers_and_nothing_else_is) {
    long l = 7;
    cr_assert_eq(loco_parse_long("-42", &l), 0);
    cr_assert_eq(l, -42);
    const char *bad_longs[] = {"", " ", "4x", "1.5", "0x10", "12 3"};
    for (size_t i = 0; i < sizeof bad_longs / sizeof *bad_longs; i++) {
        l = 7;
        cr_assert_eq(loco_parse_long(bad_longs[i], &l), LOCO_PARSE_BAD, "'%s'", bad_longs[i]);
        cr_assert_eq(l, 7, "'%s' set the output", bad_longs[i]);
    }
    cr_assert_eq(loco_parse_long("99999999999999999999", &l), LOCO_PARSE_RANGE);
    double d = 0;
    cr_assert_eq(loco_parse_double("3e-4", &d), 0);
    cr_assert_eq(d, 3e-4);
    cr_assert_eq(loco_parse_double("2.5x", &d), LOCO_PARSE_BAD);
    cr_assert_eq(loco_parse_double("", &d), LOCO_PARSE_BAD);
    cr_assert_eq(loco_parse_double("inf", &d), LOCO_PARSE_RANGE);
    cr_assert_eq(loco_parse_double("nan", &d), LOCO_PARSE_RANGE);
    cr_assert_eq(loco_parse_double("1e400", &d), LOCO_PARSE_RANGE);
    cr_assert_eq(loco_parse_double("1e-320", &d), LOCO_PARSE_TINY);
    cr_assert_eq(loco_parse_double("0", &d), 0);
    cr_assert_eq(d, 0.0);
}

Test(base, lists_keep_empty_items_and_trim_blanks) {
    cr_assert_eq(loco_list_count(""), 0);
    cr_assert_eq(loco_list_count(" \t"), 0);
    cr_assert_eq(loco_list_count("a"), 1);
    cr_assert_eq(loco_list_count("1,,2"), 3);
    const char *p = " 1 ,\t,two  ";
    char item[8];
    const char *want[] = {"1", "", "two"};
    for (int i = 0; i < 3; i++) {
        cr_assert_not_null(p, "the list ended after %d items", i);
        cr_assert_eq(loco_list_next(&p, item, sizeof item), 0);
        cr_assert_str_eq(item, want[i]);
    }
    cr_assert_null(p, "not at the end");
    p = "short,much-too-long";
    cr_assert_eq(loco_list_next(&p, item, sizeof item), 0);
    cr_assert_eq(loco_list_next(&p, item, sizeof item), -1, "an item that does not fit");
}

/* the published check values of CRC-32 (zlib's) and 64-bit FNV-1a; a CRC continued over
 * pieces is the CRC of the whole */
Test(base, checksums_match_their_check_values) {
    cr_assert_eq(loco_crc32(0, "123456789", 9), 0xcbf43926u);
    cr_assert_eq(loco_crc32(loco_crc32(0, "1234", 4), "56789", 5), 0xcbf43926u);
    cr_assert_eq(loco_crc32(0, NULL, 0), 0u);
    cr_assert_eq(loco_hash64("", 0), 0xcbf29ce484222325ULL);
    cr_assert_eq(loco_hash64("a", 1), 0xaf63dc4c8601ec8cULL);
    cr_assert_eq(loco_hash64_more(loco_hash64("foo", 3), "bar", 3), loco_hash64("foobar", 6));
}

Test(base, seconds_become_timespecs) {
    struct timespec t = loco_timespec(12.25);
    cr_assert_eq(t.tv_sec, 12);
    cr_assert_eq(t.tv_nsec, 250000000L);
    t = loco_timespec(0.000001);
    cr_assert_eq(t.tv_sec, 0);
    cr_assert(t.tv_nsec >= 999 && t.tv_nsec <= 1000, "%ld ns", t.tv_nsec);
}

Test(base, sizes_read_as_people_read_them) {
    char b[32];
    cr_assert_str_eq(loco_size_str(512, b, sizeof b), "512 B");
    cr_assert_str_eq(loco_size_str(2u << 20, b, sizeof b), "2 MiB");
    cr_assert_str_eq(loco_size_str(UINT64_MAX, b, sizeof b), "more than 16 EiB");
    cr_assert_eq(loco_mul_sat(UINT64_MAX / 2, 3), UINT64_MAX);
    cr_assert_eq(loco_add_sat(UINT64_MAX, 1), UINT64_MAX);
    cr_assert_eq(loco_mul_sat(3, 4), 12u);
}

static const loco_enum colours[] = {{"red", 3, NULL}, {"blue", 7, NULL}, {NULL, 0, NULL}};

Test(base, enums_name_and_look_up_their_values) {
    int v = -1;
    cr_assert_eq(loco_enum_value(colours, "blue", &v), 0);
    cr_assert_eq(v, 7);
    cr_assert_eq(loco_enum_value(colours, "green", &v), -1);
    cr_assert_str_eq(loco_enum_name(colours, 3), "red");
    char b[32];
    loco_enum_names(colours, "|", b, sizeof b);
    cr_assert_str_eq(b, "red|blue");
}

/* a stream is a function of (seed, stream): the same twice, another for either changed */
Test(base, random_streams_depend_on_seed_and_stream_only) {
    loco_rng a, b, c, d;
    loco_rng_seed(&a, 1, loco_stream_id(LOCO_STREAM_DATA, 0));
    loco_rng_seed(&b, 1, loco_stream_id(LOCO_STREAM_DATA, 0));
    loco_rng_seed(&c, 1, loco_stream_id(LOCO_STREAM_DATA, 1));
    loco_rng_seed(&d, 2, loco_stream_id(LOCO_STREAM_DATA, 0));
    uint64_t x = loco_rng_u64(&a);
    cr_assert_eq(x, loco_rng_u64(&b));
    cr_assert_neq(x, loco_rng_u64(&c));
    cr_assert_neq(x, loco_rng_u64(&d));
    cr_assert_neq(loco_stream_id(LOCO_STREAM_DATA, 1), loco_stream_id(LOCO_STREAM_INIT, 1));
    double sum = 0, sq = 0;
    for (int i = 0; i < 20000; i++) {
        double z = loco_rng_normal(&a);
        sum += z, sq += z * z;
        float u = loco_rng_uniform(&a);
        cr_assert(u >= 0 && u < 1, "uniform %g", u);
        cr_assert_lt(loco_rng_below(&a, 5), 5u);
    }
    cr_assert(fabs(sum / 20000) < 0.03 && fabs(sq / 20000 - 1) < 0.05, "mean %g, var %g",
              sum / 20000, sq / 20000);
}

/* the file appears whole at commit, and not before; a failed one leaves no temp file */
Test(base, an_outfile_appears_only_when_committed) {
    char dir[] = "/tmp/loco-base-test-XXXXXX", path[96], tmp[104];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/sub/dir/f.txt", dir);
    loco_err e = {{0}};
    char parent[96];
    snprintf(parent, sizeof parent, "%s/sub/dir", dir);
    cr_assert_eq(loco_mkdirs(parent, &e), 0, "%s", e.msg);
    loco_outfile o;
    cr_assert_eq(loco_outfile_open(&o, path, &e), 0, "%s", e.msg);
    loco_outfile_write(&o, "hello", 5);
    cr_assert_neq(access(path, F_OK), 0, "visible before the commit");
    cr_assert_eq(loco_outfile_commit(&o, &e), 0, "%s", e.msg);
    FILE *f = fopen(path, "r");
    char got[8] = "";
    cr_assert_not_null(f);
    cr_assert_not_null(fgets(got, sizeof got, f));
    fclose(f);
    cr_assert_str_eq(got, "hello");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cr_assert_neq(access(tmp, F_OK), 0, "the temp file stayed");
    unlink(path);
    snprintf(path, sizeof path, "%s/sub", dir);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
