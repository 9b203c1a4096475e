/* metrics: what a run reports. Owns the JSON-lines event log (metrics.jsonl), the
 * progress line on the terminal (rewritten in place on a tty, plain lines otherwise),
 * and a small JSON builder for events, summaries and benchmark results. */
#ifndef LOCO_METRICS_H
#define LOCO_METRICS_H

#include <pthread.h>
#include <stdio.h>

#include "loco/base.h"

/* One JSON object, built field by field into a growing buffer. */
typedef struct {
    char *buf;
    size_t len, cap;
    int fields;   /* fields in the innermost open object or array */
    int depth;
} loco_json;

void loco_json_begin(loco_json *j);              /* '{' */
void loco_json_str(loco_json *j, const char *key, const char *v);
void loco_json_num(loco_json *j, const char *key, double v);     /* NaN, Inf -> null */
void loco_json_int(loco_json *j, const char *key, long v);
void loco_json_open(loco_json *j, const char *key, char bracket); /* nested '{' or '['; key NULL in arrays */
void loco_json_close(loco_json *j, char bracket);
const char *loco_json_end(loco_json *j);         /* '}'; the text stays valid until free */
/* PREFIXval_loss, PREFIXval_ppl and PREFIXval_bpb (null unless byte_level) of a loss */
void loco_json_val(loco_json *j, const char *prefix, double loss, int byte_level);
void loco_json_free(loco_json *j);

typedef struct {
    FILE *events;      /* metrics.jsonl, NULL when the run writes no files */
    int tty;           /* stderr is a terminal */
    int progress_open; /* a progress line is on screen and not yet ended */
    int quiet;         /* print nothing on stderr */
    pthread_mutex_t mu; /* events come from several threads */
} loco_metrics;

/* Opens dir/metrics.jsonl (dir is created); dir NULL: progress only. */
int loco_metrics_open(loco_metrics *mt, const char *dir, int quiet, loco_err *e);
void loco_metrics_close(loco_metrics *mt);

/* Appends the finished object as one line and flushes it, so a crash loses nothing.
 * Thread-safe. */
void loco_metrics_event(loco_metrics *mt, loco_json *j);

/* A status line on stderr: rewritten in place on a terminal; printed as its own line
 * otherwise only when force is set, so logs stay short. */
void loco_metrics_progress(loco_metrics *mt, int force, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* An ordinary message on stderr that does not clobber the progress line. */
void loco_metrics_say(loco_metrics *mt, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* dir/name holding text (and a final newline), written crash-safely. */
int loco_write_text(const char *dir, const char *name, const char *text, loco_err *e);

/* "1h02m", "3m05s", "12s" */
void loco_format_duration(double s, char *buf, size_t n);

#endif
