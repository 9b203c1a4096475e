#include "loco/runlog.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* the whole file, NUL-terminated; NULL (errno set) when it cannot be read */
static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t n = 0, cap = 0;
    char *b = NULL;
    for (;;) {
        if (cap - n < 65536) {
            char *nb = realloc(b, cap = cap * 2 + 65536);
            if (!nb) break;
            b = nb;
        }
        size_t got = fread(b + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f) || !b;
    fclose(f);
    if (bad) {
        free(b);
        return NULL;
    }
    b[n] = '\0';
    return b;
}

static double num(const cJSON *o, const char *key, double def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static void str(const cJSON *o, const char *key, char *out, size_t n) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    snprintf(out, n, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

/* dir/summary.json parsed into *j (NULL when there is none) */
static int parse_summary(const char *dir, cJSON **j, loco_err *e) {
    char path[LOCO_PATH_LEN + 16];
    snprintf(path, sizeof path, "%s/summary.json", dir);
    *j = NULL;
    char *text = read_all(path);
    if (!text) return errno == ENOENT ? 0 : loco_errf(e, "%s: cannot read: %s", path, strerror(errno));
    *j = cJSON_Parse(text);
    free(text);
    if (cJSON_IsObject(*j)) return 0;
    cJSON_Delete(*j);
    *j = NULL;
    return loco_errf(e, "%s: not a JSON object", path);
}

int loco_runlog_status(const char *dir, char *status, size_t n, loco_err *e) {
    cJSON *j;
    if (parse_summary(dir, &j, e) != 0) return -1;
    str(j, "status", status, n);
    cJSON_Delete(j);
    return 0;
}

static int read_summary(const char *dir, loco_runlog *r, loco_err *e) {
    cJSON *j;
    if (parse_summary(dir, &j, e) != 0) return -1;
    if (!j) return 0;
    str(j, "status", r->status, sizeof r->status);
    str(j, "method", r->method, sizeof r->method);
    str(j, "clock", r->clock, sizeof r->clock);
    str(j, "blas_core", r->blas_core, sizeof r->blas_core);
    str(j, "commit", r->commit, sizeof r->commit);
    str(j, "cpu", r->cpu, sizeof r->cpu);
    r->final_val_se = num(j, "final_val_se", NAN);
    r->final_val_windows = (long)num(j, "final_val_windows", 0);
    r->updates = (long)num(j, "updates", 0);
    r->rejected_stale = (long)num(j, "rejected_stale", 0);
    if (!r->method[0]) snprintf(r->method, sizeof r->method, "single");
    r->workers = (int)num(j, "workers", 1);
    r->final_val_loss = num(j, "final_val_loss", NAN);
    r->final_val_ppl = num(j, "final_val_ppl", 0);
    r->time_s = num(j, "time_s", num(j, "train_s", 0));
    r->local_steps = (long)num(j, "local_steps", num(j, "steps", 0));
    cJSON_Delete(j);
    return 0;
}

static int add_eval(loco_runlog *r, const cJSON *o, int *cap) {
    if (r->nevals == *cap) {
        loco_point *p = realloc(r->evals, sizeof *p * (size_t)(*cap = *cap * 2 + 64));
        if (!p) return -1;
        r->evals = p;
    }
    r->evals[r->nevals++] = (loco_point){
        .local_steps = num(o, "local_steps", num(o, "step", 0)),
        .at_local_steps = num(o, "at_local_steps", 0),
        .time_s = num(o, "time_s", num(o, "wall_s", 0)),
        .updates = num(o, "updates", num(o, "step", 0)),
        .val_loss = num(o, "val_loss", NAN)};
    return 0;
}

static int add_round(loco_runlog *r, const cJSON *o, int *cap) {
    if (r->nrounds == *cap) {
        loco_round_rec *p = realloc(r->rounds, sizeof *p * (size_t)(*cap = *cap * 2 + 256));
        if (!p) return -1;
        r->rounds = p;
    }
    char status[16];
    str(o, "status", status, sizeof status);
    r->rounds[r->nrounds++] = (loco_round_rec){
        .worker = (int)num(o, "worker", 0), .start_s = num(o, "start_s", 0),
        .end_s = num(o, "time_s", 0), .slowdown_s = num(o, "slowdown_s", 0),
        .steps = (long)num(o, "local_steps", 0), .staleness = (long)num(o, "staleness", 0),
        .applied = !strcmp(status, "applied"), .lr = num(o, "lr", NAN)};
    return 0;
}

/* one line of metrics.jsonl */
static int read_event(loco_runlog *r, const char *line, int *ecap, int *rcap) {
    cJSON *o = cJSON_Parse(line);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return 1;
    }
    char kind[16];
    str(o, "event", kind, sizeof kind);
    int rc = 0;
    if (!strcmp(kind, "eval")) rc = add_eval(r, o, ecap);
    else if (!strcmp(kind, "arrival")) rc = add_round(r, o, rcap);
    cJSON_Delete(o);
    return rc;
}

static int read_events(const char *dir, loco_runlog *r, loco_err *e) {
    char path[LOCO_PATH_LEN + 16];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    char *text = read_all(path);
    if (!text) return loco_errf(e, "%s: cannot read: %s", path, strerror(errno));
    int ecap = 0, rcap = 0, line = 0, rc = 0;
    for (char *p = text, *nl; *p && rc == 0; p = nl + 1) {
        nl = strchr(p, '\n');
        line++;
        if (!nl) break; /* a last line without its newline was being written: not whole */
        *nl = '\0';
        rc = read_event(r, p, &ecap, &rcap);
        if (rc > 0) rc = loco_errf(e, "%s:%d: not a JSON object", path, line);
        else if (rc < 0) rc = loco_errf(e, "%s: out of memory", path);
    }
    free(text);
    return rc;
}

int loco_runlog_read(const char *dir, loco_runlog *r, loco_err *e) {
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    if (read_summary(dir, r, e) != 0 || read_events(dir, r, e) != 0) {
        loco_runlog_free(r);
        return -1;
    }
    return 0;
}

void loco_runlog_free(loco_runlog *r) {
    free(r->evals);
    free(r->rounds);
    r->evals = NULL;
    r->rounds = NULL;
    r->nevals = r->nrounds = 0;
}

int loco_runlog_marked(const loco_runlog *r, loco_point *out) {
    int n = 0;
    for (int i = 0; i < r->nevals; i++)
        if (r->evals[i].at_local_steps > 0 || (i == 0 && r->evals[i].local_steps == 0))
            out[n++] = r->evals[i];
    return n;
}
