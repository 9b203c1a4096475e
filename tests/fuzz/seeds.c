/* Writes the generated part of the fuzz seed corpus (make fuzz-seeds, run once; the
 * files are committed): small llm.c token shards and text for fuzz_data, small model
 * files in loco's and llm.c's formats for fuzz_model, valid and each near a check.
 * The config and --set seeds are plain text, written by hand. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loco/modelfile.h"
#include "loco/data.h"
#include "loco/model.h"

static const char *root;

static int put(const char *dir, const char *name, const void *p, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s/%s", root, dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "seeds: cannot write %s\n", path);
        exit(1);
    }
    return 0;
}

/* A shard whose header says count tokens and which holds ntok of them, token i = f(i). */
static void shard(const char *name, int32_t magic, int32_t version, int32_t count, int ntok,
                  int mul, int add) {
    size_t hb = LOCO_LLMC_HEADER_INTS * 4, n = hb + (size_t)ntok * 2;
    uint8_t *buf = calloc(1, n);
    int32_t h[3] = {magic, version, count};
    memcpy(buf, h, sizeof h);
    for (int i = 0; i < ntok; i++) {
        uint16_t t = (uint16_t)(i * mul + add);
        memcpy(buf + hb + 2 * (size_t)i, &t, 2);
    }
    put("data", name, buf, n);
    free(buf);
}

static void data_seeds(void) {
    const int32_t M = LOCO_LLMC_SHARD_MAGIC, V = LOCO_LLMC_SHARD_VERSION;
    shard("shard-40.bin", M, V, 40, 40, 1, 0);
    shard("shard-gpt2-64.bin", M, V, 64, 64, 797, 3); /* tokens up to 50k */
    shard("shard-1.bin", M, V, 1, 1, 1, 5);
    shard("shard-empty.bin", M, V, 0, 0, 1, 0);
    shard("shard-truncated.bin", M, V, 50, 40, 1, 0);
    shard("shard-trailing.bin", M, V, 30, 40, 1, 0);
    shard("shard-negative.bin", M, V, -1, 8, 1, 0);
    shard("shard-bad-magic.bin", M + 1, V, 8, 8, 1, 0);
    shard("shard-version-2.bin", M, V + 1, 8, 8, 1, 0);
    const char *text = "It is a truth universally acknowledged, that a single man in possession "
                       "of a good fortune, must be in want of a wife.\n\nHowever little known the "
                       "feelings or views of such a man may be on his first entering a "
                       "neighbourhood, this truth is so well fixed in the minds of the "
                       "surrounding families.\n";
    put("data", "text-austen.txt", text, strlen(text));
    put("data", "text-short.txt", "ab\n", 3);
    put("data", "text-bytes.txt", "\x00\xff\x80\r\n\t\x7f\x01", 8);
}

/* A model of shape s with small nonzero parameters: loco's file, then llm.c's. */
static void write_models(const char *tag, loco_shape s, const char *config) {
    loco_model m;
    loco_err e;
    if (loco_model_init(&m, &s, &e) != 0) {
        fprintf(stderr, "seeds: %s\n", e.msg);
        exit(1);
    }
    float *p = loco_alloc(m.nparams * sizeof(float));
    loco_model_init_params(&m, p, 5);
    char path[512];
    snprintf(path, sizeof path, "%s/model/loco-%s.bin", root, tag);
    if (loco_model_write(path, &m, p, config, &e) != 0) fprintf(stderr, "seeds: %s\n", e.msg);
    snprintf(path, sizeof path, "%s/model/llmc-%s.bin", root, tag);
    if (loco_model_write_llmc(path, &m, p, &e) != 0) fprintf(stderr, "seeds: %s\n", e.msg);
    free(p);
}

/* A copy of model/NAME with n bytes changed at off (or cut to off when cut), as OUT. */
static void damaged(const char *name, const char *out, size_t off, const void *bytes, size_t n,
                    int cut) {
    char path[512];
    snprintf(path, sizeof path, "%s/model/%s", root, name);
    FILE *f = fopen(path, "rb");
    static uint8_t buf[1 << 16];
    size_t len = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    if (len < off + n) {
        fprintf(stderr, "seeds: %s too short\n", path);
        exit(1);
    }
    if (cut)
        len = off;
    else
        memcpy(buf + off, bytes, n);
    put("model", out, buf, len);
}

static void model_seeds(void) {
    write_models("min", (loco_shape){.V = 2, .Vp = 2, .maxT = 1, .L = 1, .NH = 1, .C = 1}, NULL);
    write_models("tiny", (loco_shape){.V = 100, .Vp = 128, .maxT = 4, .L = 1, .NH = 2, .C = 4},
                 "[model]\nlayers = 1\nheads = 2\ndim = 4\nseq_len = 4\nvocab = 100\n");
    write_models("l2", (loco_shape){.V = 20, .Vp = 32, .maxT = 3, .L = 2, .NH = 1, .C = 3}, "");
    int32_t v = 2, big = 1 << 20, neg = -5;
    uint8_t flip = 0x5a;
    damaged("loco-tiny.bin", "loco-bad-crc.bin", 2000, &flip, 1, 0);
    damaged("loco-tiny.bin", "loco-version-2.bin", 4, &v, 4, 0);
    damaged("loco-tiny.bin", "loco-config-len-neg.bin", 32, &neg, 4, 0);
    damaged("loco-min.bin", "loco-truncated.bin", 1100, NULL, 0, 1);
    damaged("llmc-tiny.bin", "llmc-truncated.bin", 3000, NULL, 0, 1);
    damaged("llmc-tiny.bin", "llmc-heads-3.bin", 20, &(int32_t){3}, 4, 0);
    damaged("llmc-min.bin", "llmc-vocab-big.bin", 12, &big, 4, 0);
    damaged("llmc-min.bin", "llmc-header-only.bin", 1024, NULL, 0, 1);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: seeds DIR (tests/fuzz)\n");
        return 2;
    }
    root = argv[1];
    data_seeds();
    model_seeds();
    return 0;
}
