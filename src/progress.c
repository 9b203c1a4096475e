#include "loco/progress.h"

#include <math.h>
#include <stdio.h>
#include <unistd.h>

void loco_term_init(loco_term *t, int quiet) {
    *t = (loco_term){.tty = isatty(STDERR_FILENO), .quiet = quiet};
}

void loco_term_end(loco_term *t) {
    if (t->progress_open) fputc('\n', stderr);
    t->progress_open = 0;
}

void loco_term_progress(loco_term *t, int force, const loco_progress *p) {
    if (t->quiet || (!t->tty && !force)) return;
    char line[512], eta[32];
    size_t n = 0;
    n += (size_t)snprintf(line + n, sizeof line - n, "%s %ld/%ld", p->updates < 0 ? "step" : "steps",
                          p->step, p->steps);
    if (p->updates >= 0) n += (size_t)snprintf(line + n, sizeof line - n, " | updates %ld", p->updates);
    if (isfinite(p->loss)) n += (size_t)snprintf(line + n, sizeof line - n, " | loss %.4f", p->loss);
    if (isfinite(p->val)) n += (size_t)snprintf(line + n, sizeof line - n, " | val %.4f", p->val);
    n += (size_t)snprintf(line + n, sizeof line - n, " | %.0f tok/s", p->tokens_per_s);
    if (p->workers && n < sizeof line)
        n += (size_t)snprintf(line + n, sizeof line - n, " | [%s]", p->workers);
    loco_format_duration(p->eta_s, eta, sizeof eta);
    if (n < sizeof line) snprintf(line + n, sizeof line - n, " | ETA %s", eta);
    if (t->tty) fputs("\r\033[K", stderr);
    fputs(line, stderr);
    if (t->tty)
        t->progress_open = 1;
    else
        fputc('\n', stderr);
    fflush(stderr);
}

void loco_term_vsay(loco_term *t, const char *fmt, va_list ap) {
    if (t->quiet) return;
    if (t->progress_open) fputs("\r\033[K", stderr);
    t->progress_open = 0;
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
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
