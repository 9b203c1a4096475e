#include "loco/metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------- json */

static void put(loco_json *j, const char *s, size_t n) {
    if (j->len + n + 1 > j->cap) {
        size_t cap = j->cap ? j->cap : 256;
        while (j->len + n + 1 > cap) cap *= 2;
        char *b = realloc(j->buf, cap);
        if (!b) abort(); /* a few KiB of text: out of memory here is not recoverable */
        j->buf = b;
        j->cap = cap;
    }
    memcpy(j->buf + j->len, s, n);
    j->len += n;
    j->buf[j->len] = '\0';
}

static void puts_json(loco_json *j, const char *s) {
    put(j, s, strlen(s));
}

/* a JSON string with the escapes it needs */
static void put_string(loco_json *j, const char *s) {
    put(j, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            put(j, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            put(j, esc, 6);
        } else {
            put(j, (const char *)&c, 1);
        }
    }
    put(j, "\"", 1);
}

static void put_key(loco_json *j, const char *key) {
    if (j->fields++ > 0) put(j, ",", 1);
    if (key) {
        put_string(j, key);
        put(j, ":", 1);
    }
}

void loco_json_begin(loco_json *j) {
    memset(j, 0, sizeof *j);
    put(j, "{", 1);
    j->depth = 1;
}

void loco_json_str(loco_json *j, const char *key, const char *v) {
    put_key(j, key);
    put_string(j, v);
}

void loco_json_num(loco_json *j, const char *key, double v) {
    char b[40];
    put_key(j, key);
    if (!isfinite(v)) {
        puts_json(j, "null");
        return;
    }
    snprintf(b, sizeof b, "%.7g", v);
    puts_json(j, b);
}

void loco_json_int(loco_json *j, const char *key, long v) {
    char b[24];
    put_key(j, key);
    snprintf(b, sizeof b, "%ld", v);
    puts_json(j, b);
}

void loco_json_open(loco_json *j, const char *key, char bracket) {
    put_key(j, key);
    put(j, &bracket, 1);
    j->fields = 0;
    j->depth++;
}

void loco_json_close(loco_json *j, char bracket) {
    put(j, &bracket, 1);
    j->fields = 1; /* the closed container was a field of its parent */
    j->depth--;
}

const char *loco_json_end(loco_json *j) {
    put(j, "}", 1);
    j->depth = 0;
    return j->buf;
}

void loco_json_val(loco_json *j, const char *prefix, double loss, int byte_level) {
    char k[64];
    snprintf(k, sizeof k, "%sval_loss", prefix);
    loco_json_num(j, k, loss);
    snprintf(k, sizeof k, "%sval_ppl", prefix);
    loco_json_num(j, k, exp(loss));
    snprintf(k, sizeof k, "%sval_bpb", prefix);
    loco_json_num(j, k, byte_level ? loss / log(2.0) : NAN);
}

void loco_json_free(loco_json *j) {
    free(j->buf);
    memset(j, 0, sizeof *j);
}

/* ----------------------------------------------------------------- events */

int loco_metrics_open(loco_metrics *mt, const char *dir, int quiet, loco_err *e) {
    memset(mt, 0, sizeof *mt);
    mt->tty = isatty(STDERR_FILENO);
    mt->quiet = quiet;
    pthread_mutex_init(&mt->mu, NULL);
    if (!dir) return 0;
    if (loco_mkdirs(dir, e) != 0) return -1;
    char path[LOCO_PATH_LEN + 32];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    mt->events = fopen(path, "w");
    if (!mt->events) return loco_errf(e, "%s: cannot create", path);
    return 0;
}

void loco_metrics_close(loco_metrics *mt) {
    if (mt->events) fclose(mt->events);
    if (mt->progress_open) fputc('\n', stderr);
    pthread_mutex_destroy(&mt->mu);
    memset(mt, 0, sizeof *mt);
}

void loco_metrics_event(loco_metrics *mt, loco_json *j) {
    if (!mt->events) return;
    pthread_mutex_lock(&mt->mu);
    fputs(j->buf, mt->events);
    fputc('\n', mt->events);
    fflush(mt->events);
    pthread_mutex_unlock(&mt->mu);
}

void loco_metrics_progress(loco_metrics *mt, int force, const char *fmt, ...) {
    if (mt->quiet || (!mt->tty && !force)) return;
    va_list ap;
    va_start(ap, fmt);
    if (mt->tty) fputs("\r\033[K", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (mt->tty) {
        mt->progress_open = 1;
    } else {
        fputc('\n', stderr);
    }
    fflush(stderr);
}

void loco_metrics_say(loco_metrics *mt, const char *fmt, ...) {
    if (mt->quiet) return;
    if (mt->progress_open) fputs("\r\033[K", stderr);
    mt->progress_open = 0;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int loco_write_text(const char *dir, const char *name, const char *text, loco_err *e) {
    char path[LOCO_PATH_LEN];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return loco_errf(e, "%s/%s: path too long", dir, name);
    loco_outfile o;
    if (loco_outfile_open(&o, path, e) != 0) return -1;
    size_t n = strlen(text);
    loco_outfile_write(&o, text, n);
    if (n == 0 || text[n - 1] != '\n') loco_outfile_write(&o, "\n", 1);
    return loco_outfile_commit(&o, e);
}

void loco_format_duration(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60)
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, n, "%lds", t);
}
