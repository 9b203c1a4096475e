#include "loco/data.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>


/* llm.c shards are little-endian and we read their uint16 tokens in place */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "data.c assumes a little-endian host");

#define HEADER_BYTES ((size_t)LOCO_LLMC_HEADER_INTS * sizeof(int32_t))

/* ---- mapping the file ---- */

static int map_file(loco_data *d, const char *path, loco_err *e) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return loco_errf(e, "%s: cannot open: %s", d->path, strerror(errno));
    int rc = -1;
    struct stat st;
    void *m;
    if (fstat(fd, &st) != 0) {
        loco_errf(e, "%s: cannot stat: %s", d->path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        loco_errf(e, "%s: not a regular file", d->path);
        goto done;
    }
    if (st.st_size == 0) {
        loco_errf(e, "%s: empty file", d->path);
        goto done;
    }
    m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
        loco_errf(e, "%s: cannot mmap %lld bytes: %s", d->path, (long long)st.st_size,
                  strerror(errno));
        goto done;
    }
    /* open scans every token and training then reads all of it at random: ask for
     * the whole file in the page cache now rather than fault it in page by page */
    madvise(m, (size_t)st.st_size, MADV_WILLNEED);
    d->map = m;
    d->map_len = (size_t)st.st_size;
    rc = 0;
done:
    close(fd); /* the mapping stays valid without the descriptor */
    return rc;
}

static int32_t header_int(const loco_data *d, int i) {
    int32_t v;
    memcpy(&v, (const uint8_t *)d->map + (size_t)i * sizeof v, sizeof v);
    return v;
}

/* Checks the llm.c header against the file and points u16 at the tokens. */
static int parse_llmc(loco_data *d, loco_err *e) {
    if (d->map_len < HEADER_BYTES)
        return loco_errf(e, "%s: file has %zu bytes, shorter than the %zu-byte llm.c shard header",
                         d->path, d->map_len, HEADER_BYTES);
    int32_t magic = header_int(d, 0), version = header_int(d, 1), count = header_int(d, 2);
    if (magic != LOCO_LLMC_SHARD_MAGIC)
        return loco_errf(e, "%s: bad magic %d, expected %d for an llm.c token shard "
                         "(a plain text file needs data.format = text)",
                         d->path, magic, LOCO_LLMC_SHARD_MAGIC);
    if (version != LOCO_LLMC_SHARD_VERSION)
        return loco_errf(e, "%s: unsupported llm.c shard version %d, expected %d", d->path,
                         version, LOCO_LLMC_SHARD_VERSION);
    if (count < 0)
        return loco_errf(e, "%s: header says %d tokens, a negative count", d->path, count);
    size_t want = (size_t)count * sizeof(uint16_t), have = d->map_len - HEADER_BYTES;
    if (have < want)
        return loco_errf(e, "%s: truncated: header says %d tokens = %zu bytes, file has only "
                         "%zu bytes after the header", d->path, count, want, have);
    if (have > want)
        return loco_errf(e, "%s: too long: header says %d tokens = %zu bytes, file has %zu bytes "
                         "after the header (trailing data)", d->path, count, want, have);
    /* the header is 1024 bytes into a page-aligned mapping, so the tokens are aligned */
    d->u16 = (const uint16_t *)((const uint8_t *)d->map + HEADER_BYTES);
    d->n = (size_t)count;
    return 0;
}

/* One pass over all tokens here, so sampling never needs to check a token again. */
static int check_tokens(const loco_data *d, loco_err *e) {
    for (size_t i = 0; i < d->n; i++)
        if (d->u16[i] >= d->vocab)
            return loco_errf(e, "%s: token %zu has value %d, not below model.vocab = %d",
                             d->path, i, d->u16[i], d->vocab);
    return 0;
}

static int parse_tokens(loco_data *d, loco_err *e) {
    if (d->format == LOCO_FORMAT_TEXT) {
        if (d->vocab < 256)
            return loco_errf(e, "%s: text format has one token per byte and needs "
                             "model.vocab >= 256, got %d", d->path, d->vocab);
        d->u8 = d->map;
        d->n = d->map_len;
        return 0;
    }
    if (parse_llmc(d, e) != 0) return -1;
    if (d->n == 0) return loco_errf(e, "%s: the llm.c shard holds no tokens", d->path);
    return check_tokens(d, e);
}

/* ---- the split ---- */

static int block_is_val(const loco_data *d, size_t b) {
    if (d->val_every == 0) return 0;
    return b % (size_t)d->val_every == (size_t)(d->val_every - 1);
}

/* Counts the maximal runs of blocks of one kind and, when out is not NULL, fills them. */
static size_t collect_runs(const loco_data *d, int want_val, loco_span *out) {
    size_t nblocks = (d->n + d->block - 1) / d->block, count = 0;
    int prev = 0;
    for (size_t b = 0; b < nblocks; b++) {
        int mine = block_is_val(d, b) == want_val;
        size_t start = b * d->block, end = start + d->block < d->n ? start + d->block : d->n;
        if (mine && !prev) {
            if (out) out[count] = (loco_span){start, 0};
            count++;
        }
        if (mine && out) out[count - 1].len += end - start;
        prev = mine;
    }
    return count;
}

/* Allocates and fills one kind's spans; returns the token total in *tokens. */
static int build_runs(const loco_data *d, int want_val, loco_span **spans, int *nspans,
                      size_t *tokens, loco_err *e) {
    size_t count = collect_runs(d, want_val, NULL);
    if (count > INT_MAX)
        return loco_errf(e, "%s: data.block = %zu splits the data into %zu runs, too many; "
                         "raise data.block", d->path, d->block, count);
    /* never malloc(0): its NULL would read as out of memory */
    *spans = malloc((count ? count : 1) * sizeof **spans);
    if (!*spans) return loco_errf(e, "%s: out of memory for %zu spans", d->path, count);
    collect_runs(d, want_val, *spans);
    *nspans = (int)count;
    *tokens = 0;
    for (size_t k = 0; k < count; k++) *tokens += (*spans)[k].len;
    return 0;
}

static int split(loco_data *d, loco_err *e) {
    if (build_runs(d, 0, &d->train, &d->ntrain, &d->train_tokens, e) != 0) return -1;
    if (build_runs(d, 1, &d->val, &d->nval, &d->val_tokens, e) != 0) return -1;
    if (d->ntrain == 0)
        return loco_errf(e, "%s: %zu tokens with data.block = %zu and data.val_every = %ld give "
                         "no training part; data.val_every must be at least 2",
                         d->path, d->n, d->block, d->val_every);
    if (d->nval == 0 && d->val_every > 0)
        return loco_errf(e, "%s: %zu tokens with data.block = %zu and data.val_every = %ld give "
                         "no validation part (it needs %ld blocks); lower data.block",
                         d->path, d->n, d->block, d->val_every, d->val_every);
    return 0;
}

const loco_enum loco_data_formats[] = {
    {"text", LOCO_FORMAT_TEXT, NULL},
    {"llmc", LOCO_FORMAT_LLMC, NULL},
    {NULL, 0, NULL},
};

int loco_data_open(loco_data *d, const char *path, int format, int vocab, size_t block,
                   long val_every, loco_err *e) {
    /* ranges are the config's job; these are contract violations */
    LOCO_CHECK(format == LOCO_FORMAT_TEXT || format == LOCO_FORMAT_LLMC, "format %d", format);
    LOCO_CHECK(vocab > 0 && block > 0 && val_every >= 0, "vocab %d, block %zu, val_every %ld", vocab,
               block, val_every);
    memset(d, 0, sizeof *d);
    snprintf(d->path, sizeof d->path, "%s", path);
    d->format = format;
    d->vocab = vocab;
    d->block = block;
    d->val_every = val_every;
    if (map_file(d, path, e) != 0 || parse_tokens(d, e) != 0 || split(d, e) != 0) {
        loco_data_close(d);
        return -1;
    }
    return 0;
}

void loco_data_close(loco_data *d) {
    if (d->map) munmap(d->map, d->map_len);
    free(d->train);
    free(d->val);
    memset(d, 0, sizeof *d);
}

/* ---- training windows ---- */

static size_t span_train_windows(const loco_span *s, int T) {
    return s->len > (size_t)T ? s->len - (size_t)T : 0;
}

size_t loco_data_train_windows(const loco_data *d, int T) {
    LOCO_CHECK(T > 0, "T %d", T);
    size_t total = 0;
    for (int k = 0; k < d->ntrain; k++) total += span_train_windows(&d->train[k], T);
    return total;
}

/* Window r (in [0, train_windows)) as a token position; spans are few, so a walk will do. */
static size_t train_window_start(const loco_data *d, int T, size_t r) {
    for (int k = 0; k < d->ntrain; k++) {
        size_t w = span_train_windows(&d->train[k], T);
        if (r < w) return d->train[k].start + r;
        r -= w;
    }
    loco_check_failed(__FILE__, __LINE__, "r < train windows", "window index past the train part");
}

/* inputs and targets are (T): tokens p..p+T-1 and p+1..p+T */
static void copy_window(const loco_data *d, size_t p, int T, int *inputs, int *targets) {
    for (int t = 0; t < T; t++) {
        inputs[t] = loco_data_token(d, p + (size_t)t);
        targets[t] = loco_data_token(d, p + (size_t)t + 1);
    }
}

void loco_data_window(const loco_data *d, size_t p, int T, int *inputs, int *targets) {
    LOCO_CHECK(p + (size_t)T < d->n, "window at %zu of %d past %zu tokens", p, T, d->n);
    copy_window(d, p, T, inputs, targets);
}

void loco_stream_init(loco_stream *s, const loco_data *d, uint64_t seed, uint64_t worker) {
    s->d = d;
    loco_rng_seed(&s->rng, seed, loco_stream_id(LOCO_STREAM_DATA, worker));
}

void loco_stream_next(loco_stream *s, int B, int T, int *inputs, int *targets) {
    LOCO_CHECK(B > 0 && T > 0, "B %d, T %d", B, T);
    size_t nwin = loco_data_train_windows(s->d, T);
    LOCO_CHECK(nwin > 0, "model.seq_len %d does not fit in any train span", T);
    for (int b = 0; b < B; b++) {
        size_t p = train_window_start(s->d, T, (size_t)loco_rng_below(&s->rng, nwin));
        copy_window(s->d, p, T, inputs + (size_t)b * T, targets + (size_t)b * T);
    }
}

/* ---- validation windows ---- */

const loco_enum loco_val_sets[] = {
    {"all", LOCO_VAL_ALL, NULL}, {"report", LOCO_VAL_REPORT, NULL}, {"tune", LOCO_VAL_TUNE, NULL},
    {NULL, 0, NULL}};

size_t loco_data_val_windows(const loco_data *d, int T) {
    LOCO_CHECK(T > 0, "T %d", T);
    size_t total = 0;
    for (int k = 0; k < d->nval; k++) total += (d->val[k].len - 1) / (size_t)T;
    /* report: windows 0, 2, 4, ...; tune: 1, 3, 5, ... */
    return d->val_set == LOCO_VAL_ALL ? total : d->val_set == LOCO_VAL_REPORT ? (total + 1) / 2
                                                                             : total / 2;
}

/* Validation window j (in [0, val_windows)) of the run's set as a token position. */
static size_t val_window_start(const loco_data *d, int T, size_t j) {
    if (d->val_set != LOCO_VAL_ALL) j = 2 * j + (d->val_set == LOCO_VAL_TUNE);
    for (int k = 0; k < d->nval; k++) {
        size_t w = (d->val[k].len - 1) / (size_t)T;
        if (j < w) return d->val[k].start + j * (size_t)T;
        j -= w;
    }
    loco_check_failed(__FILE__, __LINE__, "j < val windows", "window index past the val part");
}

int loco_data_check_val(const loco_data *d, int nbatches, int B, int T, const char *key,
                        loco_err *e) {
    size_t nwin = loco_data_val_windows(d, T);
    uint64_t need = (uint64_t)nbatches * (uint64_t)B;
    if (nwin >= need) return 0;
    return loco_errf(e, "%s: the validation part (%zu tokens) holds %zu windows of "
                     "model.seq_len + 1 = %d tokens%s, fewer than %s * train.batch "
                     "= %d * %d = %llu; lower %s, train.batch or model.seq_len",
                     d->path, d->val_tokens, nwin, T + 1,
                     d->val_set == LOCO_VAL_ALL ? "" : " in eval.set's half", key, nbatches, B,
                     (unsigned long long)need, key);
}

int loco_data_val_batch(const loco_data *d, int i, int nbatches, int B, int T, int *inputs,
                        int *targets, loco_err *e) {
    LOCO_CHECK(nbatches > 0 && B > 0 && T > 0 && i >= 0 && i < nbatches,
               "batch %d of %d, B %d, T %d", i, nbatches, B, T);
    if (loco_data_check_val(d, nbatches, B, T, "eval.batches", e) != 0) return -1;
    size_t nwin = loco_data_val_windows(d, T);
    uint64_t need = (uint64_t)nbatches * (uint64_t)B;
    for (int b = 0; b < B; b++) {
        /* 128-bit product: (i*B + b) * nwin can pass 2^64 on a huge validation part */
        uint64_t g = (uint64_t)i * (uint64_t)B + (uint64_t)b;
        size_t j = (size_t)((unsigned __int128)g * nwin / need);
        copy_window(d, val_window_start(d, T, j), T, inputs + (size_t)b * T,
                    targets + (size_t)b * T);
    }
    return 0;
}
