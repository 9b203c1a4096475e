#include "loco/modelfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { HEADER_INTS = 256, HEADER_BYTES = HEADER_INTS * 4 };

/* ---------------------------------------------------------------- writing */

/* An atomic output file with a running CRC-32 of what went in. */
typedef struct {
    loco_outfile o;
    uint32_t crc;
} out_file;

static int out_open(out_file *o, const char *path, loco_err *e) {
    o->crc = 0;
    return loco_outfile_open(&o->o, path, e);
}

static void out_write(out_file *o, const void *p, size_t n) {
    loco_outfile_write(&o->o, p, n);
    o->crc = loco_crc32(o->crc, p, n);
}

static int out_commit(out_file *o, loco_err *e) {
    return loco_outfile_commit(&o->o, e);
}

/* Tensors in llm.c's order, packed (loco's alignment padding left out). */
static void write_tensors(out_file *o, const loco_model *m, const float *params) {
    for (int i = 0; i < LOCO_NTENSORS; i++)
        out_write(o, params + m->t[i].offset, m->t[i].count * sizeof(float));
}

int loco_model_write(const char *path, const loco_model *m, const float *params,
                     const char *config, loco_err *e) {
    out_file o;
    if (out_open(&o, path, e) != 0) return -1;
    int32_t h[HEADER_INTS] = {0};
    size_t clen = config ? strlen(config) : 0;
    h[0] = LOCO_MODEL_MAGIC;
    h[1] = LOCO_MODEL_VERSION;
    h[2] = m->s.V, h[3] = m->s.Vp, h[4] = m->s.maxT;
    h[5] = m->s.L, h[6] = m->s.NH, h[7] = m->s.C;
    h[8] = (int32_t)clen;
    out_write(&o, h, sizeof h);
    out_write(&o, config, clen);
    write_tensors(&o, m, params);
    uint32_t crc = o.crc;
    out_write(&o, &crc, sizeof crc);
    return out_commit(&o, e);
}

int loco_model_write_llmc(const char *path, const loco_model *m, const float *params,
                          loco_err *e) {
    out_file o;
    if (out_open(&o, path, e) != 0) return -1;
    int32_t h[HEADER_INTS] = {0};
    h[0] = LOCO_LLMC_MODEL_MAGIC;
    h[1] = LOCO_LLMC_MODEL_VERSION;
    h[2] = m->s.maxT, h[3] = m->s.V, h[4] = m->s.L;
    h[5] = m->s.NH, h[6] = m->s.C, h[7] = m->s.Vp;
    out_write(&o, h, sizeof h);
    write_tensors(&o, m, params);
    return out_commit(&o, e);
}

/* ---------------------------------------------------------------- reading */

static unsigned char *read_all(const char *path, size_t *len, loco_err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return loco_errf(e, "%s: cannot open: %s", path, strerror(errno)), NULL;
    struct stat st;
    unsigned char *buf = NULL;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        loco_errf(e, "%s: not a regular file", path);
        goto done;
    }
    *len = (size_t)st.st_size;
    buf = malloc(*len ? *len : 1);
    if (!buf) {
        loco_errf(e, "%s: out of memory for %zu bytes", path, *len);
        goto done;
    }
    if (fread(buf, 1, *len, f) != *len) {
        loco_errf(e, "%s: read error", path);
        free(buf);
        buf = NULL;
    }
done:
    fclose(f);
    return buf;
}

/* The shape in a header, checked by building the layout. */
static int shape_from(loco_model *m, const loco_shape *s, const char *path, loco_err *e) {
    loco_err why;
    if (s->V > s->Vp || loco_model_init(m, s, &why) != 0)
        return loco_errf(e, "%s: bad model shape in header (V=%d Vp=%d maxT=%d L=%d NH=%d C=%d)",
                         path, s->V, s->Vp, s->maxT, s->L, s->NH, s->C);
    return 0;
}

/* The file must hold exactly header + extra + the tensors + tail bytes. */
static int check_size(const char *path, size_t have, size_t want, loco_err *e) {
    if (have < want)
        return loco_errf(e, "%s: truncated: %zu bytes, the header implies %zu", path, have, want);
    if (have > want)
        return loco_errf(e, "%s: %zu trailing bytes after the %zu the header implies", path,
                         have - want, want);
    return 0;
}

static int load_tensors(loco_model_file *f, const unsigned char *src, loco_err *e) {
    f->params = loco_alloc(f->m.nparams * sizeof(float));
    if (!f->params) return loco_errf(e, "out of memory for %zu parameters", f->m.nparams);
    for (int i = 0; i < LOCO_NTENSORS; i++) {
        memcpy(f->params + f->m.t[i].offset, src, f->m.t[i].count * sizeof(float));
        src += f->m.t[i].count * sizeof(float);
    }
    return 0;
}

static int parse_llmc(loco_model_file *f, const char *path, const unsigned char *buf,
                      size_t len, const int32_t *h, loco_err *e) {
    if (h[1] != LOCO_LLMC_MODEL_VERSION)
        return loco_errf(e, "%s: llm.c checkpoint version %d, only version %d is supported", path,
                         h[1], LOCO_LLMC_MODEL_VERSION);
    loco_shape s = {.maxT = h[2], .V = h[3], .L = h[4], .NH = h[5], .C = h[6], .Vp = h[7]};
    if (shape_from(&f->m, &s, path, e) != 0) return -1;
    if (check_size(path, len, HEADER_BYTES + f->m.ntrue * sizeof(float), e) != 0) return -1;
    f->format = LOCO_FILE_LLMC;
    return load_tensors(f, buf + HEADER_BYTES, e);
}

static int parse_loco(loco_model_file *f, const char *path, const unsigned char *buf,
                      size_t len, const int32_t *h, loco_err *e) {
    if (h[1] != LOCO_MODEL_VERSION)
        return loco_errf(e, "%s: loco model version %d, this build reads version %d", path, h[1],
                         LOCO_MODEL_VERSION);
    loco_shape s = {.V = h[2], .Vp = h[3], .maxT = h[4], .L = h[5], .NH = h[6], .C = h[7]};
    if (shape_from(&f->m, &s, path, e) != 0) return -1;
    if (h[8] < 0) return loco_errf(e, "%s: bad config length %d in header", path, h[8]);
    size_t clen = (size_t)h[8], body = HEADER_BYTES + clen + f->m.ntrue * sizeof(float);
    if (check_size(path, len, body + 4, e) != 0) return -1;
    uint32_t stored, crc = loco_crc32(0, buf, body);
    memcpy(&stored, buf + body, 4);
    if (stored != crc)
        return loco_errf(e, "%s: checksum mismatch (stored %08x, computed %08x): the file is "
                         "corrupt", path, stored, crc);
    f->config = malloc(clen + 1);
    if (!f->config) return loco_errf(e, "out of memory");
    memcpy(f->config, buf + HEADER_BYTES, clen);
    f->config[clen] = '\0';
    f->format = LOCO_FILE_LOCO;
    return load_tensors(f, buf + HEADER_BYTES + clen, e);
}

int loco_model_read(const char *path, loco_model_file *f, loco_err *e) {
    memset(f, 0, sizeof *f);
    size_t len = 0;
    unsigned char *buf = read_all(path, &len, e);
    if (!buf) return -1;
    int32_t h[HEADER_INTS];
    int rc;
    if (len < HEADER_BYTES) {
        rc = loco_errf(e, "%s: %zu bytes, shorter than a model header (%d bytes)", path, len,
                       HEADER_BYTES);
    } else {
        memcpy(h, buf, sizeof h);
        if (h[0] == LOCO_LLMC_MODEL_MAGIC)
            rc = parse_llmc(f, path, buf, len, h, e);
        else if (h[0] == LOCO_MODEL_MAGIC)
            rc = parse_loco(f, path, buf, len, h, e);
        else
            rc = loco_errf(e, "%s: not a model file (magic %d; loco's is %d, llm.c's %d)", path,
                           h[0], LOCO_MODEL_MAGIC, LOCO_LLMC_MODEL_MAGIC);
    }
    free(buf);
    if (rc != 0) loco_model_file_free(f);
    return rc;
}

void loco_model_file_free(loco_model_file *f) {
    free(f->params);
    free(f->config);
    memset(f, 0, sizeof *f);
}
