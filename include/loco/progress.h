/* progress: the terminal. The progress line on stderr (rewritten in place on a tty,
 * plain lines otherwise) and the messages that must not clobber it; durations as people
 * read them. */
#ifndef LOCO_PROGRESS_H
#define LOCO_PROGRESS_H

#include <stdarg.h>
#include <stddef.h>

typedef struct {
    int tty;           /* stderr is a terminal */
    int progress_open; /* a progress line is on screen and not yet ended */
    int quiet;         /* print nothing on stderr */
} loco_term;

void loco_term_init(loco_term *t, int quiet);
/* Ends an open progress line with a newline, so what follows starts a line of its own. */
void loco_term_end(loco_term *t);

/* What the progress line shows. */
typedef struct {
    long step, steps;                /* steps done and planned (summed over workers) */
    long updates;                    /* server updates; < 0 for a single-worker run */
    double loss, val;                /* NaN: not known (yet) */
    double tokens_per_s, eta_s;
    const char *workers;             /* one letter per worker, or NULL */
} loco_progress;

/* The progress line: rewritten in place on a terminal; printed as its own line
 * otherwise only when force is set, so logs stay short. */
void loco_term_progress(loco_term *t, int force, const loco_progress *p);

/* An ordinary message line that does not clobber the progress line. */
void loco_term_vsay(loco_term *t, const char *fmt, va_list ap);

/* "1h02m", "3m05s", "12s" */
void loco_format_duration(double s, char *buf, size_t n);

#endif
