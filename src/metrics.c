#include "loco/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

double loco_bits_per_byte(double loss) {
    return loss / log(2.0);
}

void loco_json_val(loco_json *j, const char *prefix, double loss, int byte_level) {
    char k[64];
    snprintf(k, sizeof k, "%sval_loss", prefix);
    loco_json_num(j, k, loss);
    snprintf(k, sizeof k, "%sval_ppl", prefix);
    loco_json_num(j, k, exp(loss));
    snprintf(k, sizeof k, "%sval_bpb", prefix);
    loco_json_num(j, k, byte_level ? loco_bits_per_byte(loss) : NAN);
}

/* ----------------------------------------------------------------- events */

int loco_metrics_open(loco_metrics *mt, const char *dir, int quiet, int byte_level, loco_err *e) {
    memset(mt, 0, sizeof *mt);
    loco_term_init(&mt->term, quiet);
    mt->byte_level = byte_level;
    pthread_mutex_init(&mt->mu, NULL);
    if (!dir) return 0;
    snprintf(mt->path, sizeof mt->path, "%s/metrics.jsonl", dir);
    mt->events = fopen(mt->path, "w");
    if (!mt->events) return loco_errf(e, "%s: cannot create: %s", mt->path, strerror(errno));
    return 0;
}

int loco_metrics_reopen(loco_metrics *mt, const char *dir, long length, int quiet, int byte_level,
                        loco_err *e) {
    if (loco_metrics_open(mt, NULL, quiet, byte_level, e) != 0) return -1;
    snprintf(mt->path, sizeof mt->path, "%s/metrics.jsonl", dir);
    struct stat st;
    if (stat(mt->path, &st) != 0 || st.st_size < length)
        return loco_errf(e, "%s: shorter than its checkpoint says (%ld bytes): the run's events "
                         "are incomplete", mt->path, length);
    if (truncate(mt->path, length) != 0)
        return loco_errf(e, "%s: cannot cut back to %ld bytes: %s", mt->path, length, strerror(errno));
    mt->events = fopen(mt->path, "a");
    if (!mt->events) return loco_errf(e, "%s: cannot open: %s", mt->path, strerror(errno));
    return 0;
}

long loco_metrics_length(loco_metrics *mt) {
    loco_metrics_flush(mt);
    pthread_mutex_lock(&mt->mu);
    long n = mt->events ? ftell(mt->events) : 0;
    pthread_mutex_unlock(&mt->mu);
    return n;
}

struct loco_line {
    char *text;             /* one or more lines, each ending in '\n' */
    size_t len;
    int filled;
};

int loco_metrics_flush(loco_metrics *mt) {
    pthread_mutex_lock(&mt->mu);
    long k = 0;
    for (; k < mt->nlines && mt->lines[k].filled; k++) {
        struct loco_line *l = &mt->lines[k];
        if (mt->events && !mt->write_errno && fwrite(l->text, 1, l->len, mt->events) != l->len)
            mt->write_errno = errno ? errno : EIO;
        free(l->text);
    }
    if (k > 0 && mt->events && !mt->write_errno && fflush(mt->events) != 0)
        mt->write_errno = errno ? errno : EIO;
    if (k > 0) /* (no lines at all: lines may be NULL, and NULL + 0 is undefined) */
        memmove(mt->lines, mt->lines + k, sizeof *mt->lines * (size_t)(mt->nlines - k));
    mt->nlines -= k;
    mt->first += k;
    int rc = mt->write_errno ? -1 : 0;
    pthread_mutex_unlock(&mt->mu);
    return rc;
}

int loco_metrics_close(loco_metrics *mt, loco_err *e) {
    loco_metrics_flush(mt);
    if (mt->events && fclose(mt->events) != 0 && !mt->write_errno) mt->write_errno = errno;
    loco_term_end(&mt->term);
    int err = mt->write_errno;
    char path[sizeof mt->path];
    memcpy(path, mt->path, sizeof path);
    for (long k = 0; k < mt->nlines; k++) free(mt->lines[k].text);
    free(mt->lines);
    pthread_mutex_destroy(&mt->mu);
    memset(mt, 0, sizeof *mt);
    if (err) return loco_errf(e, "%s: cannot write: %s (events since are lost)", path, strerror(err));
    return 0;
}

/* a new line at the end (under mu); its place is mt->first + its index */
static struct loco_line *new_line(loco_metrics *mt) {
    if (mt->nlines == mt->cap) {
        long cap = mt->cap ? 2 * mt->cap : 64;
        struct loco_line *l = realloc(mt->lines, sizeof *l * (size_t)cap);
        LOCO_CHECK(l != NULL, "out of memory for %ld buffered events", cap);
        mt->lines = l;
        mt->cap = cap;
    }
    struct loco_line *l = &mt->lines[mt->nlines++];
    *l = (struct loco_line){0};
    return l;
}

long loco_metrics_reserve(loco_metrics *mt) {
    pthread_mutex_lock(&mt->mu);
    new_line(mt);
    long place = mt->first + mt->nlines - 1;
    pthread_mutex_unlock(&mt->mu);
    return place;
}

/* Appends the finished object as one line of the pending events, at its reserved place
 * or at the end (the caller's lock, if any, is held only for this copy). */
static void add_event_at(loco_metrics *mt, long place, loco_json *j) {
    loco_json_end(j);
    pthread_mutex_lock(&mt->mu);
    struct loco_line *l = place < 0 ? new_line(mt) : &mt->lines[place - mt->first];
    LOCO_CHECK(place < 0 || (place >= mt->first && !l->filled), "place %ld filled twice", place);
    char *t = realloc(l->text, l->len + j->len + 1);
    LOCO_CHECK(t != NULL, "out of memory for an event of %zu bytes", l->len + j->len + 1);
    memcpy(t + l->len, j->buf, j->len);
    t[l->len + j->len] = '\n';
    l->text = t;
    l->len += j->len + 1;
    pthread_mutex_unlock(&mt->mu);
    loco_json_free(j);
}

static void add_event(loco_metrics *mt, loco_json *j) {
    add_event_at(mt, -1, j);
    pthread_mutex_lock(&mt->mu);
    mt->lines[mt->nlines - 1].filled = 1;
    pthread_mutex_unlock(&mt->mu);
}

void loco_metrics_save_waiting(loco_metrics *mt, loco_pack *p) {
    loco_metrics_flush(mt);
    pthread_mutex_lock(&mt->mu);
    long n = 0;
    for (long k = 0; k < mt->nlines; k++) n += mt->lines[k].filled;
    loco_pack_i64(p, n);
    for (long k = 0; k < mt->nlines; k++) {
        if (!mt->lines[k].filled) continue;
        loco_pack_i64(p, (int64_t)mt->lines[k].len);
        loco_pack_bytes(p, mt->lines[k].text, mt->lines[k].len);
    }
    pthread_mutex_unlock(&mt->mu);
}

int loco_metrics_load_waiting(loco_metrics *mt, loco_unpack *u) {
    long n = (long)loco_unpack_range(u, 0, 1L << 30);
    for (long k = 0; k < n && !u->bad; k++) {
        size_t len = (size_t)loco_unpack_range(u, 1, 1L << 30);
        if (len > u->len - u->pos) return -1;
        pthread_mutex_lock(&mt->mu);
        struct loco_line *l = new_line(mt);
        l->text = malloc(len);
        LOCO_CHECK(l->text != NULL, "out of memory for a saved event of %zu bytes", len);
        loco_unpack_bytes(u, l->text, len);
        l->len = len;
        l->filled = 1;
        pthread_mutex_unlock(&mt->mu);
    }
    return u->bad ? -1 : 0;
}

void loco_metrics_train(loco_metrics *mt, const loco_train_event *ev) {
    loco_json j;
    loco_json_begin(&j);
    loco_json_str(&j, "event", "train");
    loco_json_int(&j, "step", ev->step);
    loco_json_int(&j, "tokens", ev->tokens);
    loco_json_num(&j, "wall_s", ev->wall_s);
    loco_json_num(&j, "loss", ev->loss);
    loco_json_num(&j, "lr", ev->lr);
    loco_json_num(&j, "grad_norm", ev->grad_norm);
    loco_json_num(&j, "tokens_per_s", ev->tokens_per_s);
    add_event(mt, &j);
}

static void eval_line(loco_metrics *mt, const loco_eval_event *ev, long mark, long place) {
    loco_json j;
    loco_json_begin(&j);
    loco_json_str(&j, "event", "eval");
    loco_json_int(&j, ev->async ? "updates" : "step", ev->async ? ev->updates : ev->step);
    loco_json_int(&j, "local_steps", ev->local_steps);
    loco_json_int(&j, "tokens", ev->tokens);
    loco_json_num(&j, "time_s", ev->time_s);
    loco_json_num(&j, "wall_s", ev->wall_s);
    loco_json_val(&j, "", ev->val_loss, mt->byte_level);
    if (mark > 0) loco_json_int(&j, "at_local_steps", mark);
    add_event_at(mt, place, &j);
}

void loco_metrics_eval(loco_metrics *mt, const loco_eval_event *ev) {
    long place = ev->place >= 0 ? ev->place : loco_metrics_reserve(mt);
    long mark = ev->at_local_steps;
    do {
        eval_line(mt, ev, mark, place);
        mark += ev->every;
    } while (ev->at_local_steps > 0 && ev->every > 0 && mark <= ev->last_mark);
    pthread_mutex_lock(&mt->mu);
    mt->lines[place - mt->first].filled = 1;
    pthread_mutex_unlock(&mt->mu);
}

const loco_enum loco_arrival_statuses[] = {
    {"applied", LOCO_ARRIVAL_APPLIED, NULL},
    {"nonfinite", LOCO_ARRIVAL_NONFINITE, NULL},
    {"stale", LOCO_ARRIVAL_STALE, NULL},
    {"norm", LOCO_ARRIVAL_NORM, NULL},
    {"diverged", LOCO_ARRIVAL_DIVERGED, NULL},
    {NULL, 0, NULL},
};

const loco_enum loco_fault_kinds[] = {
    {"fail", LOCO_FAULT_FAIL, NULL},
    {"back", LOCO_FAULT_BACK, NULL},
    {"gone", LOCO_FAULT_GONE, NULL},
    {NULL, 0, NULL},
};

void loco_metrics_fault(loco_metrics *mt, const loco_fault_event *f) {
    loco_json j;
    loco_json_begin(&j);
    loco_json_str(&j, "event", "fault");
    loco_json_int(&j, "worker", f->worker);
    loco_json_str(&j, "kind", loco_enum_name(loco_fault_kinds, f->kind));
    loco_json_num(&j, "time_s", f->time_s);
    loco_json_num(&j, "wall_s", f->wall_s);
    loco_json_int(&j, "lost_steps", f->lost_steps);
    add_event(mt, &j);
}

void loco_metrics_arrival(loco_metrics *mt, const loco_arrival *a) {
    loco_json j;
    loco_json_begin(&j);
    loco_json_str(&j, "event", "arrival");
    loco_json_int(&j, "worker", a->worker);
    loco_json_int(&j, "ticket", a->ticket);
    loco_json_int(&j, "staleness", a->staleness);
    loco_json_int(&j, "local_steps", a->local_steps);
    loco_json_int(&j, "updates", a->updates);
    loco_json_num(&j, "time_s", a->time_s);
    loco_json_num(&j, "wall_s", a->wall_s);
    loco_json_str(&j, "status", loco_enum_name(loco_arrival_statuses, a->status));
    loco_json_num(&j, "start_s", a->start_s);
    loco_json_num(&j, "slowdown_s", a->slowdown_s);
    loco_json_num(&j, "lr", a->lr);
    add_event(mt, &j);
}

/* ---------------------------------------------------------------- summary */

static void summary_async(const loco_summary *s, loco_json *j) {
    loco_json_str(j, "method", s->method);
    loco_json_str(j, "clock", s->clock);
    loco_json_int(j, "workers", s->workers);
    loco_json_int(j, "updates", s->updates);
    if (s->virtual_clock)
        loco_json_num(j, "virtual_tokens_per_s", s->time_s > 0 ? s->tokens / s->time_s : 0);
    loco_json_num(j, "server_busy", s->server_busy);
    loco_json_num(j, "evaluator_busy", s->evaluator_busy);
    for (const loco_enum *a = loco_arrival_statuses; a->name; a++) {
        if (a->value == LOCO_ARRIVAL_APPLIED) continue;
        char key[64];
        snprintf(key, sizeof key, "rejected_%s", a->name);
        loco_json_int(j, key, s->rejected[a->value]);
    }
    loco_json_int(j, "faults", s->faults);
    loco_json_int(j, "returns", s->returns);
    loco_json_int(j, "evals_skipped", s->evals_skipped);
    loco_json_open(j, "staleness_hist", '[');
    for (int b = 0; b < LOCO_STALE_BUCKETS; b++) loco_json_int(j, NULL, s->stale_hist[b]);
    loco_json_close(j, ']');
    if (s->dc_all > 0) loco_json_num(j, "dc_held_share", (double)s->dc_held / (double)s->dc_all);
    loco_json_int(j, "stripes", s->stripes);
    loco_json_int(j, "stripe_kib", s->stripe_kib);
    loco_json_int(j, "stripe_waits", s->stripe_waits);
    loco_json_num(j, "stripe_wait_s", s->stripe_wait_s);
    loco_json_open(j, "per_worker", '[');
    for (int w = 0; w < s->workers; w++) {
        const loco_worker_row *r = &s->rows[w];
        loco_json_open(j, NULL, '{');
        loco_json_int(j, "worker", w);
        loco_json_num(j, "slowdown", r->slowdown);
        loco_json_int(j, "rounds", r->rounds);
        loco_json_int(j, "steps", r->steps);
        loco_json_int(j, "tokens", r->tokens);
        loco_json_num(j, "compute_s", r->compute_s);
        loco_json_num(j, "slowdown_s", r->slowdown_s);
        loco_json_num(j, "lockwait_s", r->lockwait_s);
        loco_json_num(j, "idle_s", r->idle_s);
        loco_json_int(j, "rejected", r->rejected);
        loco_json_int(j, "faults", r->faults);
        loco_json_int(j, "ftz_daz", r->ftz_daz);
        loco_json_num(j, "last_lr", r->last_lr);
        loco_json_close(j, '}');
    }
    loco_json_close(j, ']');
}

void loco_summary_json(const loco_summary *s, int byte_level, loco_json *j) {
    loco_json_begin(j);
    loco_json_str(j, "status", s->status);
    loco_json_val(j, "final_", s->final_val, byte_level);
    loco_json_num(j, "final_val_se", s->final_se);
    loco_json_int(j, "final_val_windows", s->final_windows);
    loco_json_int(j, "steps", s->steps);
    loco_json_int(j, "tokens", s->tokens);
    loco_json_num(j, "wall_s", s->wall_s);
    loco_json_num(j, "train_s", s->train_s);
    loco_json_num(j, "tokens_per_s", s->train_s > 0 ? (double)s->tokens / s->train_s : 0);
    loco_json_int(j, "params", s->params);
    loco_json_int(j, "local_steps", s->local_steps);
    loco_json_num(j, "time_s", s->time_s);
    loco_json_int(j, "checkpoints", s->checkpoints);
    loco_json_num(j, "checkpoint_s", s->checkpoint_s);
    loco_json_num(j, "checkpoint_write_s", s->checkpoint_write_s);
    if (s->commit) loco_json_str(j, "commit", s->commit);
    if (s->cpu) loco_json_str(j, "cpu", s->cpu);
    if (s->precision) loco_json_str(j, "precision", s->precision);
    if (s->blas_core) loco_json_str(j, "blas_core", s->blas_core);
    if (s->blas_core) loco_json_str(j, "blas_core_detected", s->blas_core_detected);
    if (s->method) summary_async(s, j);
    loco_json_end(j);
}

static double mean_staleness(const loco_summary *s) {
    double sum = 0;
    long n = 0;
    for (int b = 0; b < LOCO_STALE_BUCKETS; b++) {
        sum += (double)b * s->stale_hist[b];
        n += s->stale_hist[b];
    }
    return n > 0 ? sum / n : 0;
}

static void say_workers(loco_metrics *mt, const loco_summary *s) {
    loco_metrics_say(mt, "worker  slowdown  rounds  steps  compute_s  slowdown_s  wait_s  rejected");
    for (int w = 0; w < s->workers; w++) {
        const loco_worker_row *r = &s->rows[w];
        loco_metrics_say(mt, "%6d  %8.2f  %6ld  %5ld  %9.1f  %10.1f  %6.1f  %8ld", w, r->slowdown,
                         r->rounds, r->steps, r->compute_s, r->slowdown_s,
                         r->lockwait_s + r->idle_s, r->rejected);
    }
    loco_metrics_say(mt, "%ld server updates, mean staleness %.2f, server thread busy %.1f%%%s",
                     s->updates, mean_staleness(s), 100 * s->server_busy,
                     s->evals_skipped ? " (evaluations skipped: the evaluator fell behind)" : "");
}

void loco_metrics_say_summary(loco_metrics *mt, const loco_summary *s) {
    if (s->method) say_workers(mt, s);
    char wall[32];
    loco_format_duration(s->wall_s, wall, sizeof wall);
    loco_metrics_say(mt, "%s: %ld steps, %ld tokens in %s (%.0f tokens/s); val loss %.4f, ppl %.2f",
                     s->status, s->steps, s->tokens, wall,
                     s->train_s > 0 ? (double)s->tokens / s->train_s : 0, s->final_val,
                     exp(s->final_val));
    if (mt->byte_level)
        loco_metrics_say(mt, "  %.3f bits per byte; %ld parameters", loco_bits_per_byte(s->final_val),
                         s->params);
}

/* --------------------------------------------------------------- terminal */

void loco_metrics_progress(loco_metrics *mt, int force, const loco_progress *p) {
    loco_term_progress(&mt->term, force, p);
}

void loco_metrics_say(loco_metrics *mt, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    loco_term_vsay(&mt->term, fmt, ap);
    va_end(ap);
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
