/* The corpus readers on an arbitrary file: the input is opened as an llm.c token shard
 * (with a vocabulary every uint16 fits, and with one most do not) and as a text corpus,
 * with block, val_every and the window length taken from its last byte. When it opens,
 * the split must cover the file, and training windows and validation batches are drawn. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "loco/data.h"

enum { B = 3, NBATCHES = 2, MAX_T = 8 };

/* One kind's spans: in order, non-empty, inside the file; returns their token total. */
static size_t span_tokens(const loco_data *d, const loco_span *s, int n) {
    size_t end = 0, total = 0;
    for (int k = 0; k < n; k++) {
        FUZZ_ASSERT(s[k].len > 0 && s[k].start >= end, "span %d of %d out of order", k, n);
        end = s[k].start + s[k].len;
        FUZZ_ASSERT(end <= d->n, "span %d ends at %zu, past the %zu tokens", k, end, d->n);
        total += s[k].len;
    }
    return total;
}

/* Train and val cover the file between them. */
static void check_split(const loco_data *d) {
    size_t train = span_tokens(d, d->train, d->ntrain), val = span_tokens(d, d->val, d->nval);
    FUZZ_ASSERT(train == d->train_tokens && val == d->val_tokens && train + val == d->n,
                "split of %zu tokens into %zu + %zu", d->n, train, val);
}

/* B windows of T + 1 tokens: known tokens, targets one ahead of inputs. */
static void check_windows(const loco_data *d, int T, const int *in, const int *tg) {
    for (int i = 0; i < B * T; i++) {
        FUZZ_ASSERT(in[i] >= 0 && in[i] < d->vocab && tg[i] >= 0 && tg[i] < d->vocab,
                    "token outside the vocabulary");
        if (i % T != T - 1) FUZZ_ASSERT(tg[i] == in[i + 1], "targets are not shifted inputs");
    }
}

static void sample(const loco_data *d, int T) {
    int in[B * MAX_T], tg[B * MAX_T];
    loco_err e;
    if (loco_data_train_windows(d, T) > 0) {
        loco_stream s;
        loco_stream_init(&s, d, 7, 1);
        loco_stream_next(&s, B, T, in, tg);
        check_windows(d, T, in, tg);
    }
    if ((size_t)T < d->n) loco_data_window(d, d->n - (size_t)T - 1, T, in, tg);
    /* every validation set: all windows, and the even and odd ones (eval.set) */
    loco_data v = *d;
    for (v.val_set = LOCO_VAL_ALL; v.val_set <= LOCO_VAL_TUNE; v.val_set++) {
        if (loco_data_check_val(&v, NBATCHES, B, T, "eval.batches", &e) != 0) continue;
        for (int i = 0; i < NBATCHES; i++) {
            FUZZ_ASSERT(loco_data_val_batch(&v, i, NBATCHES, B, T, in, tg, &e) == 0, "%s", e.msg);
            check_windows(&v, T, in, tg);
        }
    }
}

static void open_and_sample(const char *path, int format, int vocab, size_t block,
                            long val_every, int T) {
    loco_data d;
    loco_err e;
    if (loco_data_open(&d, path, format, vocab, block, val_every, &e) != 0) {
        FUZZ_ASSERT(strlen(e.msg) > 0, "an error without a message");
        return;
    }
    check_split(&d);
    sample(&d, T);
    loco_data_close(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("data", data, size);
    unsigned knob = size ? data[size - 1] : 0;
    /* small blocks, and from 1 to data.block's maximum 2^40 (most past the file) */
    size_t blocks[2] = {1 + knob % 32, (size_t)1 << (knob % 41)};
    long val_every = (knob >> 5) == 7 ? 0 : 2 + (long)(knob >> 5); /* 0: no split, as eval */
    int T = 1 + (int)(knob % MAX_T);
    for (int i = 0; i < 2; i++) {
        open_and_sample(path, LOCO_FORMAT_LLMC, 65536, blocks[i], val_every, T);
        open_and_sample(path, LOCO_FORMAT_TEXT, 256, blocks[i], val_every, T);
    }
    open_and_sample(path, LOCO_FORMAT_LLMC, 300, blocks[0], val_every, T);
    return 0;
}
