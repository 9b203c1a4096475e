#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loco/config.h"
#include "loco/data.h"

enum { HEADER = LOCO_LLMC_HEADER_INTS * 4, TMP_LEN = 64 };

typedef struct {
    int format, vocab;
    size_t block;
    long val_every;
} spec;

static void write_tmp(char *path, const void *buf, size_t n) {
    snprintf(path, TMP_LEN, "/tmp/loco_test_data_XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        cr_assert(w > 0, "write %s: %s", path, strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    close(fd);
}

/* Writes buf to a fresh file, opens it and removes the name at once: the mapping
 * outlives the name, and a failing assert leaves nothing behind in /tmp. */
static int open_buf(loco_data *d, char *path, const void *buf, size_t n, spec s, loco_err *e) {
    write_tmp(path, buf, n);
    int rc = loco_data_open(d, path, s.format, s.vocab, s.block, s.val_every, e);
    unlink(path);
    return rc;
}

/* An llm.c shard: header {magic, version, count}, then ntok tokens (count may lie). */
static int open_shard(loco_data *d, char *path, const int32_t head[3], const uint16_t *tok,
                      size_t ntok, spec s, loco_err *e) {
    size_t len = HEADER + ntok * sizeof *tok;
    uint8_t *buf = calloc(1, len);
    cr_assert_not_null(buf);
    memcpy(buf, head, 3 * sizeof *head);
    if (ntok) memcpy(buf + HEADER, tok, ntok * sizeof *tok);
    int rc = open_buf(d, path, buf, len, s, e);
    free(buf);
    return rc;
}

/* tokens 0, 1, 2, ...: a token is its own position, so windows can be located */
static uint16_t *iota16(size_t n) {
    uint16_t *t = malloc(n * sizeof *t);
    cr_assert_not_null(t);
    for (size_t i = 0; i < n; i++) t[i] = (uint16_t)i;
    return t;
}

static int open_iota(loco_data *d, size_t n, size_t block, long val_every) {
    char path[TMP_LEN];
    loco_err e;
    uint16_t *tok = iota16(n);
    int32_t head[3] = {LOCO_LLMC_SHARD_MAGIC, LOCO_LLMC_SHARD_VERSION, (int32_t)n};
    int rc = open_shard(d, path, head, tok, n, (spec){LOCO_FORMAT_LLMC, 65536, block, val_every},
                        &e);
    cr_assert_eq(rc, 0, "%s", e.msg);
    free(tok);
    return rc;
}

/* Index of the span holding [p, p + len), or -1. */
static int span_holding(const loco_span *s, int ns, size_t p, size_t len) {
    for (int k = 0; k < ns; k++)
        if (s[k].start <= p && p + len <= s[k].start + s[k].len) return k;
    return -1;
}

/* A window of an iota shard: consecutive positions from inputs[0], targets one ahead. */
static size_t check_iota_window(const int *in, const int *tg, int T) {
    for (int t = 0; t < T; t++) {
        cr_assert_eq(in[t], in[0] + t, "input %d of a window starting at %d", t, in[0]);
        cr_assert_eq(tg[t], in[0] + t + 1, "target %d of a window starting at %d", t, in[0]);
    }
    return (size_t)in[0];
}

static void expect_msg(const char *msg, const char *part) {
    cr_assert_not_null(strstr(msg, part), "message \"%s\" lacks \"%s\"", msg, part);
}

/* ---- text format ---- */

static int text_window_in_train(const loco_data *d, const uint8_t *buf, const int *in,
                                const int *tg, int T) {
    for (size_t p = 0; p + (size_t)T < d->n; p++) {
        int same = 1;
        for (int t = 0; t < T && same; t++)
            same = in[t] == buf[p + t] && tg[t] == buf[p + t + 1];
        if (same && span_holding(d->train, d->ntrain, p, (size_t)T + 1) >= 0) return 1;
    }
    return 0;
}

Test(data, text_tokens_are_bytes) {
    size_t n = 5000;
    uint8_t *buf = malloc(n);
    loco_rng r;
    loco_rng_seed(&r, 7, 0);
    for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)loco_rng_u64(&r);
    buf[0] = 255, buf[1] = 128, buf[2] = 0;
    loco_data d;
    loco_err e;
    char path[TMP_LEN];
    cr_assert_eq(open_buf(&d, path, buf, n, (spec){LOCO_FORMAT_TEXT, 256, 100, 5}, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(d.n, n);
    cr_assert(d.u8 && !d.u16);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(loco_data_token(&d, i), buf[i], "token %zu: %d, byte %d", i,
                     loco_data_token(&d, i), buf[i]);
    enum { B = 4, T = 16 };
    int in[B * T], tg[B * T];
    loco_stream s;
    loco_stream_init(&s, &d, 1, 0);
    for (int rep = 0; rep < 50; rep++) {
        loco_stream_next(&s, B, T, in, tg);
        for (int b = 0; b < B; b++)
            cr_assert(text_window_in_train(&d, buf, in + b * T, tg + b * T, T),
                      "batch %d row %d is not T+1 consecutive bytes of a train span", rep, b);
    }
    loco_data_close(&d);
    free(buf);
}

Test(data, text_needs_byte_vocab) {
    loco_data d;
    loco_err e;
    char path[TMP_LEN];
    cr_assert_eq(open_buf(&d, path, "hello", 5, (spec){LOCO_FORMAT_TEXT, 255, 1, 2}, &e), -1);
    expect_msg(e.msg, path);
    expect_msg(e.msg, "model.vocab >= 256");
    cr_assert_null(d.map);
    loco_data_close(&d);
}

Test(data, empty_file_fails) {
    loco_data d;
    loco_err e;
    char path[TMP_LEN];
    for (int format = LOCO_FORMAT_TEXT; format <= LOCO_FORMAT_LLMC; format++) {
        cr_assert_eq(open_buf(&d, path, "", 0, (spec){format, 65536, 100, 4}, &e), -1);
        expect_msg(e.msg, path);
        expect_msg(e.msg, "empty");
        loco_data_close(&d);
    }
}

Test(data, missing_file_fails) {
    char path[TMP_LEN];
    write_tmp(path, "", 0);
    unlink(path);
    loco_data d;
    loco_err e;
    cr_assert_eq(loco_data_open(&d, path, LOCO_FORMAT_TEXT, 256, 100, 4, &e), -1);
    expect_msg(e.msg, path);
    expect_msg(e.msg, "cannot open");
    loco_data_close(&d);
}

/* ---- the split ---- */

static void check_spans(const loco_data *d, const loco_span *s, int ns, char *kind, char mark,
                        size_t total) {
    size_t sum = 0;
    for (int k = 0; k < ns; k++) {
        cr_assert_gt(s[k].len, 0, "span %d is empty", k);
        if (k > 0)
            cr_assert_gt(s[k].start, s[k - 1].start + s[k - 1].len,
                         "spans %d and %d touch or overlap: not maximal or not sorted", k - 1, k);
        for (size_t i = s[k].start; i < s[k].start + s[k].len; i++) {
            cr_assert_lt(i, d->n, "span %d runs past the file", k);
            cr_assert_eq(kind[i], 0, "token %zu in two spans", i);
            kind[i] = mark;
        }
        sum += s[k].len;
    }
    cr_assert_eq(sum, total);
}

static void check_split(const loco_data *d) {
    char *kind = calloc(d->n, 1);
    check_spans(d, d->train, d->ntrain, kind, 't', d->train_tokens);
    check_spans(d, d->val, d->nval, kind, 'v', d->val_tokens);
    for (size_t i = 0; i < d->n; i++) {
        size_t b = i / d->block;
        char want = b % (size_t)d->val_every == (size_t)d->val_every - 1 ? 'v' : 't';
        cr_assert_eq(kind[i], want, "token %zu (block %zu) is '%c', expected '%c'", i, b,
                     kind[i] ? kind[i] : '-', want);
    }
    cr_assert_eq(d->train_tokens + d->val_tokens, d->n);
    free(kind);
}

Test(data, split_covers_file_in_blocks) {
    /* n, block, val_every: partial last block of either kind, exact fits, a 1-token block */
    static const size_t cases[][3] = {{1050, 100, 3}, {1150, 100, 3}, {1000, 100, 2},
                                      {999, 10, 7},   {400, 100, 4},  {301, 100, 4},
                                      {2, 1, 2},      {5000, 7, 13}};
    char *buf = calloc(5000, 1);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        loco_data d;
        loco_err e;
        char path[TMP_LEN];
        spec s = {LOCO_FORMAT_TEXT, 256, cases[c][1], (long)cases[c][2]};
        cr_assert_eq(open_buf(&d, path, buf, cases[c][0], s, &e), 0, "case %zu: %s", c, e.msg);
        check_split(&d);
        loco_data_close(&d);
    }
    free(buf);
}

Test(data, two_opens_same_split) {
    char path[TMP_LEN], *buf = calloc(12345, 1);
    write_tmp(path, buf, 12345);
    loco_data a, b;
    loco_err e;
    int ra = loco_data_open(&a, path, LOCO_FORMAT_TEXT, 256, 97, 5, &e);
    int rb = loco_data_open(&b, path, LOCO_FORMAT_TEXT, 256, 97, 5, &e);
    unlink(path);
    cr_assert(ra == 0 && rb == 0, "%s", e.msg);
    cr_assert(a.ntrain == b.ntrain && a.nval == b.nval);
    cr_assert_eq(memcmp(a.train, b.train, (size_t)a.ntrain * sizeof *a.train), 0);
    cr_assert_eq(memcmp(a.val, b.val, (size_t)a.nval * sizeof *a.val), 0);
    loco_data_close(&a);
    loco_data_close(&b);
    free(buf);
}

Test(data, no_validation_part_fails) {
    loco_data d;
    loco_err e;
    char path[TMP_LEN], buf[500] = {0};
    cr_assert_eq(open_buf(&d, path, buf, 500, (spec){LOCO_FORMAT_TEXT, 256, 100, 20}, &e), -1);
    expect_msg(e.msg, path);
    expect_msg(e.msg, "no validation part");
    expect_msg(e.msg, "500 tokens");
    expect_msg(e.msg, "lower data.block");
    loco_data_close(&d);
    cr_assert_eq(open_buf(&d, path, buf, 500, (spec){LOCO_FORMAT_TEXT, 256, 100, 1}, &e), -1);
    expect_msg(e.msg, "no training part");
    loco_data_close(&d);
}

Test(data, close_is_safe) {
    loco_data d;
    memset(&d, 0, sizeof d);
    loco_data_close(&d);
    loco_err e;
    char path[TMP_LEN];
    cr_assert_eq(open_buf(&d, path, "x", 1, (spec){LOCO_FORMAT_TEXT, 256, 100, 2}, &e), -1);
    loco_data_close(&d);
    loco_data_close(&d);
    open_iota(&d, 1000, 100, 2);
    loco_data_close(&d);
    cr_assert(!d.map && !d.train && !d.val && d.n == 0);
    loco_data_close(&d);
}

/* ---- training windows ---- */

Test(data, train_windows_counts_starts) {
    loco_data d;
    open_iota(&d, 16200, 1000, 4);
    static const int Ts[] = {1, 5, 64, 199, 200, 2999, 3000};
    for (size_t c = 0; c < sizeof Ts / sizeof Ts[0]; c++) {
        size_t brute = 0;
        for (size_t p = 0; p < d.n; p++)
            brute += span_holding(d.train, d.ntrain, p, (size_t)Ts[c] + 1) >= 0;
        cr_assert_eq(loco_data_train_windows(&d, Ts[c]), brute, "T = %d", Ts[c]);
    }
    cr_assert_eq(loco_data_train_windows(&d, 3000), 0);
    loco_data_close(&d);
}

Test(data, train_windows_lie_in_train_spans) {
    loco_data d;
    open_iota(&d, 16200, 1000, 4);
    enum { B = 8, T = 64 };
    int in[B * T], tg[B * T];
    loco_stream s;
    loco_stream_init(&s, &d, 42, 3);
    for (int rep = 0; rep < 2000; rep++) {
        loco_stream_next(&s, B, T, in, tg);
        for (int b = 0; b < B; b++) {
            size_t p = check_iota_window(in + b * T, tg + b * T, T);
            cr_assert_geq(span_holding(d.train, d.ntrain, p, T + 1), 0,
                          "window [%zu, %zu] leaves the train part", p, p + T);
        }
    }
    loco_data_close(&d);
}

Test(data, train_draws_uniform_over_windows) {
    /* train spans [0,3000) [4000,7000) [8000,11000) [12000,15000) [16000,16200): with T = 64
     * the short last span holds 136 of 11880 windows; a draw uniform over spans would put a
     * fifth of the draws there */
    loco_data d;
    open_iota(&d, 16200, 1000, 4);
    cr_assert_eq(d.ntrain, 5);
    enum { B = 16, T = 64, REPS = 1000 };
    int in[B * T], tg[B * T], last = 0;
    loco_stream s;
    loco_stream_init(&s, &d, 5, 0);
    for (int rep = 0; rep < REPS; rep++) {
        loco_stream_next(&s, B, T, in, tg);
        for (int b = 0; b < B; b++) last += in[b * T] >= 16000;
    }
    /* expected 16000 * 136 / 11880 = 183, sd 13.4 */
    cr_assert(last > 130 && last < 240, "%d of %d draws in the last span, expected ~183", last,
              B * REPS);
    loco_data_close(&d);
}

Test(data, train_windows_at_the_edge) {
    /* T = 2999: each full train span holds exactly one window, at its start */
    loco_data d;
    open_iota(&d, 16200, 1000, 4);
    enum { T = 2999 };
    int *in = malloc(T * sizeof *in), *tg = malloc(T * sizeof *tg), seen[4] = {0};
    loco_stream s;
    loco_stream_init(&s, &d, 9, 1);
    for (int rep = 0; rep < 200; rep++) {
        loco_stream_next(&s, 1, T, in, tg);
        size_t p = check_iota_window(in, tg, T);
        cr_assert(p % 4000 == 0 && p < 16000, "window at %zu", p);
        seen[p / 4000] = 1;
    }
    cr_assert(seen[0] && seen[1] && seen[2] && seen[3], "not every span was drawn");
    loco_data_close(&d);
    free(in);
    free(tg);
}

static void draw(const loco_data *d, uint64_t seed, uint64_t stream, int *in, int *tg) {
    loco_stream s;
    loco_stream_init(&s, d, seed, stream);
    for (int rep = 0; rep < 10; rep++) loco_stream_next(&s, 4, 32, in + rep * 128, tg + rep * 128);
}

Test(data, streams_are_reproducible) {
    loco_data d;
    open_iota(&d, 16200, 1000, 4);
    static int in[4][1280], tg[4][1280];
    draw(&d, 1, 0, in[0], tg[0]);
    draw(&d, 1, 0, in[1], tg[1]);
    draw(&d, 1, 1, in[2], tg[2]);
    draw(&d, 2, 0, in[3], tg[3]);
    cr_assert_eq(memcmp(in[0], in[1], sizeof in[0]), 0, "same seed and stream differ");
    cr_assert_eq(memcmp(tg[0], tg[1], sizeof tg[0]), 0, "same seed and stream differ");
    cr_assert_neq(memcmp(in[0], in[2], sizeof in[0]), 0, "stream ids 0 and 1 give the same data");
    cr_assert_neq(memcmp(in[0], in[3], sizeof in[0]), 0, "seeds 1 and 2 give the same data");
    loco_data_close(&d);
}

/* ---- validation windows ---- */

/* The validation windows in order, enumerated independently of data.c. */
static size_t val_starts(const loco_data *d, int T, size_t *out) {
    size_t n = 0;
    for (int k = 0; k < d->nval; k++)
        for (size_t p = d->val[k].start; p + (size_t)T < d->val[k].start + d->val[k].len; p += T)
            out[n++] = p;
    return n;
}

static void check_val_batches(const loco_data *d, int nbatches, int B, int T,
                              const size_t *all, size_t nwin) {
    int *in = malloc((size_t)B * T * sizeof *in), *tg = malloc((size_t)B * T * sizeof *tg);
    int *in2 = malloc((size_t)B * T * sizeof *in), *tg2 = malloc((size_t)B * T * sizeof *tg);
    loco_err e;
    for (int i = 0; i < nbatches; i++) {
        cr_assert_eq(loco_data_val_batch(d, i, nbatches, B, T, in, tg, &e), 0, "%s", e.msg);
        cr_assert_eq(loco_data_val_batch(d, i, nbatches, B, T, in2, tg2, &e), 0, "%s", e.msg);
        cr_assert_eq(memcmp(in, in2, (size_t)B * T * sizeof *in), 0, "batch %d changed", i);
        cr_assert_eq(memcmp(tg, tg2, (size_t)B * T * sizeof *tg), 0, "batch %d changed", i);
        for (int b = 0; b < B; b++) {
            size_t p = check_iota_window(in + b * T, tg + b * T, T);
            size_t j = (size_t)(i * B + b) * nwin / ((size_t)nbatches * B);
            cr_assert_eq(p, all[j], "batch %d row %d starts at %zu, expected window %zu at %zu",
                         i, b, p, j, all[j]);
            cr_assert_geq(span_holding(d->val, d->nval, p, (size_t)T + 1), 0);
        }
    }
    free(in);
    free(tg);
    free(in2);
    free(tg2);
}

Test(data, val_batches_cover_val_part) {
    /* val spans [3000,4000) [7000,8000) [11000,12000) [15000,16000): 15 windows each */
    loco_data d;
    open_iota(&d, 16200, 1000, 4);
    enum { T = 64 };
    size_t all[64], nwin = val_starts(&d, T, all);
    cr_assert_eq(nwin, 60);
    cr_assert_eq(loco_data_val_windows(&d, T), nwin);
    check_val_batches(&d, 15, 4, T, all, nwin); /* every window once: first and last used */
    check_val_batches(&d, 2, 3, T, all, nwin);  /* a spread-out subset */
    int in[4 * T], tg[4 * T];
    loco_err e;
    cr_assert_eq(loco_data_val_batch(&d, 14, 15, 4, T, in, tg, &e), 0);
    cr_assert_eq((size_t)in[3 * T], 15000 + 14 * T, "the last batch ends at the last window");
    loco_data_close(&d);
}

/* eval.set: report takes the even-numbered validation windows, tune the odd-numbered
 * ones, so a sweep's tuning runs are scored on windows its figures never see; every
 * window is in exactly one of the two. */
Test(data, the_report_and_tune_sets_split_the_validation_windows) {
    loco_data d;
    open_iota(&d, 16200, 1000, 4);
    enum { T = 64 };
    size_t all[64], nwin = val_starts(&d, T, all), even[32], odd[32], ne = 0, no = 0;
    for (size_t j = 0; j < nwin; j++) {
        if (j % 2) odd[no++] = all[j];
        else even[ne++] = all[j];
    }
    d.val_set = LOCO_VAL_REPORT;
    cr_assert_eq(loco_data_val_windows(&d, T), ne);
    check_val_batches(&d, 10, 3, T, even, ne); /* every even window once */
    d.val_set = LOCO_VAL_TUNE;
    cr_assert_eq(loco_data_val_windows(&d, T), no);
    check_val_batches(&d, 10, 3, T, odd, no);
    int in[4 * T], tg[4 * T];
    loco_err e;
    cr_assert_eq(loco_data_val_batch(&d, 0, 8, 4, T, in, tg, &e), -1, "32 windows wanted of 30");
    expect_msg(e.msg, "30 windows");
    expect_msg(e.msg, "eval.set's half");
    loco_data_close(&d);
}

Test(data, val_batch_too_few_windows) {
    loco_data d;
    open_iota(&d, 16200, 1000, 4);
    int in[4 * 64], tg[4 * 64];
    loco_err e;
    cr_assert_eq(loco_data_val_batch(&d, 0, 16, 4, 64, in, tg, &e), -1);
    expect_msg(e.msg, "60 windows");
    expect_msg(e.msg, "eval.batches");
    expect_msg(e.msg, "train.batch");
    expect_msg(e.msg, "model.seq_len");
    loco_data_close(&d);
}

/* ---- llm.c shards ---- */

Test(data, llmc_reads_tokens) {
    enum { N = 3000, V = 50257 };
    uint16_t tok[N];
    loco_rng r;
    loco_rng_seed(&r, 3, 0);
    for (int i = 0; i < N; i++) tok[i] = (uint16_t)loco_rng_below(&r, V);
    tok[0] = V - 1;
    int32_t head[3] = {LOCO_LLMC_SHARD_MAGIC, LOCO_LLMC_SHARD_VERSION, N};
    loco_data d;
    loco_err e;
    char path[TMP_LEN];
    cr_assert_eq(open_shard(&d, path, head, tok, N, (spec){LOCO_FORMAT_LLMC, V, 100, 4}, &e), 0,
                 "%s", e.msg);
    cr_assert(d.u16 && !d.u8);
    cr_assert_eq(d.n, N);
    for (int i = 0; i < N; i++) cr_assert_eq(loco_data_token(&d, (size_t)i), tok[i], "token %d", i);
    loco_data_close(&d);
}

Test(data, llmc_header_errors_are_distinct) {
    uint16_t *tok = iota16(1000);
    static const char *causes[] = {"bad magic", "version", "truncated", "too long"};
    struct {
        int32_t head[3];
        size_t ntok;
        const char *parts[3];
    } cases[] = {
        {{12345, 1, 1000}, 1000, {"bad magic 12345", "expected 20240520", NULL}},
        {{LOCO_LLMC_SHARD_MAGIC, 2, 1000}, 1000, {"version 2", "expected 1", NULL}},
        {{LOCO_LLMC_SHARD_MAGIC, 1, 1000}, 900, {"truncated", "1000 tokens = 2000 bytes",
                                                 "1800 bytes after the header"}},
        {{LOCO_LLMC_SHARD_MAGIC, 1, 900}, 1000, {"too long", "900 tokens = 1800 bytes",
                                                 "2000 bytes after the header"}},
    };
    for (int c = 0; c < 4; c++) {
        loco_data d;
        loco_err e;
        char path[TMP_LEN];
        spec s = {LOCO_FORMAT_LLMC, 65536, 100, 4};
        cr_assert_eq(open_shard(&d, path, cases[c].head, tok, cases[c].ntok, s, &e), -1);
        expect_msg(e.msg, path);
        for (int k = 0; k < 3 && cases[c].parts[k]; k++) expect_msg(e.msg, cases[c].parts[k]);
        for (int k = 0; k < 4; k++)
            cr_assert_eq(strstr(e.msg, causes[k]) != NULL, k == c, "case %d: \"%s\" vs \"%s\"",
                         c, e.msg, causes[k]);
        cr_assert_null(d.map);
        loco_data_close(&d);
    }
    free(tok);
}

Test(data, llmc_odd_trailing_byte_is_too_long) {
    uint8_t buf[HEADER + 2001] = {0};
    int32_t head[3] = {LOCO_LLMC_SHARD_MAGIC, LOCO_LLMC_SHARD_VERSION, 1000};
    memcpy(buf, head, sizeof head);
    loco_data d;
    loco_err e;
    char path[TMP_LEN];
    spec s = {LOCO_FORMAT_LLMC, 65536, 100, 4};
    cr_assert_eq(open_buf(&d, path, buf, sizeof buf, s, &e), -1);
    expect_msg(e.msg, "too long");
    expect_msg(e.msg, "2001 bytes");
}

Test(data, llmc_token_out_of_range) {
    enum { N = 2000, V = 1000 };
    uint16_t tok[N];
    for (int i = 0; i < N; i++) tok[i] = (uint16_t)(i % V); /* V - 1 is allowed */
    int32_t head[3] = {LOCO_LLMC_SHARD_MAGIC, LOCO_LLMC_SHARD_VERSION, N};
    loco_data d;
    loco_err e;
    char path[TMP_LEN];
    spec s = {LOCO_FORMAT_LLMC, V, 100, 4};
    cr_assert_eq(open_shard(&d, path, head, tok, N, s, &e), 0, "%s", e.msg);
    loco_data_close(&d);
    tok[1777] = V;
    cr_assert_eq(open_shard(&d, path, head, tok, N, s, &e), -1);
    expect_msg(e.msg, path);
    expect_msg(e.msg, "token 1777");
    expect_msg(e.msg, "value 1000");
    cr_assert_null(d.map);
}

Test(data, llmc_shorter_than_header) {
    uint8_t buf[100] = {0};
    int32_t head[3] = {LOCO_LLMC_SHARD_MAGIC, LOCO_LLMC_SHARD_VERSION, 0};
    memcpy(buf, head, sizeof head);
    loco_data d;
    loco_err e;
    char path[TMP_LEN];
    cr_assert_eq(open_buf(&d, path, buf, sizeof buf, (spec){LOCO_FORMAT_LLMC, 65536, 100, 4}, &e),
                 -1);
    expect_msg(e.msg, path);
    expect_msg(e.msg, "100 bytes");
    expect_msg(e.msg, "shorter than");
}

Test(data, llmc_without_tokens_fails) {
    int32_t head[3] = {LOCO_LLMC_SHARD_MAGIC, LOCO_LLMC_SHARD_VERSION, 0};
    loco_data d;
    loco_err e;
    char path[TMP_LEN];
    cr_assert_eq(open_shard(&d, path, head, NULL, 0, (spec){LOCO_FORMAT_LLMC, 65536, 100, 4}, &e),
                 -1);
    expect_msg(e.msg, path);
    expect_msg(e.msg, "no tokens");
}

/* ---- the real corpus (make test fetches it first; tests run from the root) ---- */

Test(data, real_corpus) {
    loco_data d;
    loco_err e;
    cr_assert_eq(access("data/corpus.txt", R_OK), 0, "data/corpus.txt missing: run make deps");
    cr_assert_eq(loco_data_open(&d, "data/corpus.txt", LOCO_FORMAT_TEXT, 256, 65536, 20, &e), 0,
                 "%s", e.msg);
    double frac = (double)d.val_tokens / (double)d.n;
    cr_assert(frac > 0.04 && frac < 0.06, "validation is %.4f of the corpus", frac);
    cr_assert_eq(d.train_tokens + d.val_tokens, d.n);
    cr_assert_gt(loco_data_train_windows(&d, 256), 0);
    cr_assert_gt(loco_data_val_windows(&d, 256), 0);
    loco_data_close(&d);
}
