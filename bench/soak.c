/* bench soak: a long real-clock run under everything that goes wrong at once (16
 * workers, jitter, speed changes, failures and returns, poisoned and diverging rounds,
 * a checkpoint every few seconds), watched from outside: every checkpoint must verify,
 * resident memory must stay flat, and at the end every arrival must be accounted for,
 * theta must be finite and no thread may be left behind. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loco/bench.h"
#include "loco/metrics.h"
#include "loco/modelfile.h"
#include "loco/train.h"

enum { WORKERS = 16, MAX_SAMPLES = 1 << 16 };

extern char **environ;

/* What the watcher sees while the run goes on. */
typedef struct {
    const char *dir;
    double seconds, start;
    volatile sig_atomic_t stop;        /* set when the time is up: the run stops and saves */
    volatile int done;                 /* set by the main thread once the run returned */
    int sampling;                      /* the first run: memory samples, the second resume */
    double rss_mib[MAX_SAMPLES], at[MAX_SAMPLES];
    int nsamples;
    long seen_ino;                     /* the checkpoint last verified */
    double seen_mtime;
    int checked, bad;
    char first_bad[LOCO_ERR_LEN];
    int second_tried, second_refused;  /* a second `train --resume` while the run goes on */
    char second_said[LOCO_ERR_LEN];
} watch;

static double rss_mib(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
    return (double)resident * (double)sysconf(_SC_PAGESIZE) / (1 << 20);
}

static int thread_count(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (b) b[n] = '\0';
    fclose(f);
    return b;
}

/* verifies checkpoint.bin when it is a new one (a new file replaces it by rename) */
static void check_new_checkpoint(watch *w) {
    char path[LOCO_PATH_LEN], what[1024];
    snprintf(path, sizeof path, "%s/checkpoint.bin", w->dir);
    struct stat st;
    if (stat(path, &st) != 0) return;
    double mtime = (double)st.st_mtim.tv_sec + 1e-9 * (double)st.st_mtim.tv_nsec;
    if ((long)st.st_ino == w->seen_ino && mtime == w->seen_mtime) return;
    w->seen_ino = (long)st.st_ino;
    w->seen_mtime = mtime;
    loco_err e;
    w->checked++;
    if (loco_checkpoint_describe(path, what, sizeof what, &e) == 0) return;
    if (!w->bad++) snprintf(w->first_bad, sizeof w->first_bad, "%s", e.msg);
}

/* A second process resumes the run while this one writes it: the run's lock must refuse
 * it at once (exit 1, "in use") before it touches a file. */
static void second_resume(watch *w) {
    char log[LOCO_PATH_LEN + 32];
    snprintf(log, sizeof log, "%s/second-resume.log", w->dir);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    char *argv[] = {"loco", "train", "--resume", (char *)w->dir, NULL};
    pid_t pid;
    int st = -1;
    w->second_tried = 1;
    if (posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ) == 0) waitpid(pid, &st, 0);
    posix_spawn_file_actions_destroy(&fa);
    char *said = slurp(log);
    snprintf(w->second_said, sizeof w->second_said, "%s", said ? said : "");
    w->second_said[strcspn(w->second_said, "\n")] = '\0';
    w->second_refused = WIFEXITED(st) && WEXITSTATUS(st) == 1 && said && strstr(said, "in use");
    free(said);
    unlink(log);
}

static void *watcher(void *arg) {
    watch *w = arg;
    double last_note = 0;
    while (!w->done) {
        double t = loco_now() - w->start;
        if (!w->second_tried && w->sampling && t >= w->seconds / 3) second_resume(w);
        if (w->sampling && w->nsamples < MAX_SAMPLES) {
            w->rss_mib[w->nsamples] = rss_mib();
            w->at[w->nsamples++] = t;
        }
        check_new_checkpoint(w);
        if (t >= w->seconds) w->stop = 1;
        if (t - last_note >= 15) {
            fprintf(stderr, "  %5.0f s: resident %.0f MiB, %d checkpoints verified\n", t,
                    rss_mib(), w->checked);
            last_note = t;
        }
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* ---------------------------------------------------------- the run's settings */

static int set(loco_config *c, const char *kv, loco_err *e) {
    return loco_config_set(c, kv, e);
}

/* Failures spread over the run: eight workers away for a twentieth of it, one after the
 * other, and one gone for good halfway. */
static int soak_settings(loco_config *c, const loco_soak_opts *so, loco_err *e) {
    double seconds = so->seconds;
    const char *small[] = {"model.layers=2", "model.heads=2", "model.dim=64", "model.seq_len=64",
                           "train.batch=8"};
    for (size_t i = 0; so->small_model && i < sizeof small / sizeof small[0]; i++)
        if (set(c, small[i], e) != 0) return -1;
    char faults[LOCO_LIST_LEN + 16] = "faults.fail=", item[48];
    for (int i = 0; i < 8; i++) {
        snprintf(item, sizeof item, "%d@%.3g+%.3g,", 2 * i + 1, (i + 1) * seconds / 10,
                 seconds / 20);
        strcat(faults, item);
    }
    snprintf(item, sizeof item, "14@%.3g", seconds / 2);
    strcat(faults, item);
    char changes[LOCO_LIST_LEN];
    snprintf(changes, sizeof changes, "hetero.speed_change=3@%.3g:4,7@%.3g:1,12@%.3g:2.5",
             seconds / 5, seconds / 3, 2 * seconds / 3);
    const char *sets[] = {"run.workers=16", "run.clock=real", "outer.method=async-dn",
                          "outer.dylu=on", "outer.grace_s=0.02", "outer.local_steps=10",
                          "outer.total_local_steps=0", "outer.max_delta_norm=1e4",
                          "hetero.level=very", "hetero.jitter=0.3", "hetero.mode=sleep",
                          "hetero.slowdown=", "train.steps=100000000", "train.checkpoint_every=3s",
                          "eval.every_updates=25", "eval.every_local_steps=0", "eval.batches=2",
                          "faults.inject_nan=0@3,5@8,9@15,13@30",
                          "faults.inject_diverge=2@4,11@10", faults, changes};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        if (set(c, sets[i], e) != 0) return -1;
    return loco_config_validate(c, e);
}

/* --------------------------------------------------------------- the checks */

typedef struct {
    long sent, applied, rejected, faults, returns, checkpoints;
    double checkpoint_s, write_s, round_s;
    int theta_finite;
    int resumed;                       /* from the checkpoint before a damaged one */
    long tickets;                      /* applied arrivals in metrics.jsonl */
    int tickets_once;                  /* each once, in order */
} outcome;

static double field(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static int read_outcome(const char *dir, outcome *o, loco_err *e) {
    char path[LOCO_PATH_LEN];
    snprintf(path, sizeof path, "%s/summary.json", dir);
    char *text = slurp(path);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!j) return loco_errf(e, "%s: missing or not JSON", path);
    *o = (outcome){0};
    o->applied = (long)field(j, "updates");
    for (const loco_enum *a = loco_arrival_statuses; a->name; a++) {
        char key[64];
        snprintf(key, sizeof key, "rejected_%s", a->name);
        if (a->value != LOCO_ARRIVAL_APPLIED) o->rejected += (long)field(j, key);
    }
    o->faults = (long)field(j, "faults");
    o->returns = (long)field(j, "returns");
    o->checkpoints = (long)field(j, "checkpoints");
    o->checkpoint_s = field(j, "checkpoint_s");
    o->write_s = field(j, "checkpoint_write_s");
    double busy = 0;
    const cJSON *w;
    cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(j, "per_worker")) {
        o->sent += (long)field(w, "rounds");
        busy += field(w, "compute_s") + field(w, "slowdown_s");
    }
    o->round_s = o->sent > 0 ? busy / (double)o->sent : 0;
    cJSON_Delete(j);
    loco_model_file f;
    snprintf(path, sizeof path, "%s/model.bin", dir);
    if (loco_model_read(path, &f, e) != 0) return -1;
    o->theta_finite = 1;
    for (size_t i = 0; i < f.m.nparams; i++) o->theta_finite &= isfinite(f.params[i]) != 0;
    loco_model_file_free(&f);
    return 0;
}

/* peak resident memory over the first and the second half of the run after its first
 * quarter (start-up: the replicas and the first checkpoint's buffers come into being) */
static void rss_halves(const watch *w, double *first, double *second, double *start) {
    *first = *second = 0;
    *start = w->nsamples > 0 ? w->rss_mib[0] : 0;
    double from = w->at[w->nsamples - 1] / 4, mid = from + (w->at[w->nsamples - 1] - from) / 2;
    for (int i = 0; i < w->nsamples; i++) {
        if (w->at[i] < from) continue;
        double *peak = w->at[i] < mid ? first : second;
        *peak = fmax(*peak, w->rss_mib[i]);
    }
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* ------------------------------------------------------------------ the bench */

static int report(const watch *w, const outcome *o, int threads_before, int threads_after,
                  double seconds, loco_err *e) {
    double rss_first, rss_second, rss_start;
    rss_halves(w, &rss_first, &rss_second, &rss_start);
    /* flat: the second half's peak within 5% (and 16 MiB, allocator slack) of the first's */
    int rss_flat = rss_second <= 1.05 * rss_first + 16;
    double n = o->checkpoints > 0 ? (double)o->checkpoints : 1;
    double hold = o->checkpoint_s / n, write = o->write_s / n;
    int accounted = o->sent == o->applied + o->rejected;
    int events = o->tickets_once && o->tickets == o->applied;
    int ok = accounted && events && o->theta_finite && w->bad == 0 && w->checked > 0 &&
             rss_flat && threads_after == threads_before && o->faults > 0 && o->rejected > 0 &&
             w->second_refused && o->resumed;
    fprintf(stderr, "  arrivals sent %ld = applied %ld + rejected %ld: %s\n", o->sent, o->applied,
            o->rejected, accounted ? "yes" : "NO");
    fprintf(stderr, "  metrics.jsonl: %ld applied arrivals, each once: %s\n", o->tickets,
            events ? "yes" : "NO");
    fprintf(stderr, "  a second resume while it ran: %s (%s)\n",
            w->second_refused ? "refused" : "NOT REFUSED", w->second_said);
    fprintf(stderr, "  resumed after its newest checkpoint was cut short: %s\n",
            o->resumed ? "yes, from the one before, the damaged one set aside" : "NO");
    fprintf(stderr, "  failures %ld, returns %ld; theta finite: %s\n", o->faults, o->returns,
            o->theta_finite ? "yes" : "NO");
    fprintf(stderr, "  checkpoints: %ld written, %d verified while running, %d bad%s%s\n",
            o->checkpoints, w->checked, w->bad, w->bad ? ": " : "", w->first_bad);
    fprintf(stderr, "  a checkpoint took %.1f ms to write, %.3f of a mean round (%.1f ms); "
            "with the wait for the rounds under way to end, it held new rounds back %.1f ms\n",
            1e3 * write, o->round_s > 0 ? write / o->round_s : 0, 1e3 * o->round_s, 1e3 * hold);
    fprintf(stderr, "  resident memory: %.0f MiB at the start, peak %.0f MiB then %.0f MiB: %s\n",
            rss_start, rss_first, rss_second, rss_flat ? "flat" : "GROWING");
    fprintf(stderr, "  threads: %d before, %d after\n", threads_before, threads_after);
    loco_json j;
    loco_json_begin(&j);
    loco_json_str(&j, "bench", "soak");
    loco_json_num(&j, "seconds", seconds);
    loco_json_int(&j, "workers", WORKERS);
    loco_json_int(&j, "arrivals", o->sent);
    loco_json_int(&j, "applied", o->applied);
    loco_json_int(&j, "rejected", o->rejected);
    loco_json_int(&j, "faults", o->faults);
    loco_json_int(&j, "returns", o->returns);
    loco_json_int(&j, "checkpoints", o->checkpoints);
    loco_json_int(&j, "checkpoints_verified", w->checked);
    loco_json_int(&j, "checkpoints_bad", w->bad);
    loco_json_num(&j, "checkpoint_write_s", write);
    loco_json_num(&j, "checkpoint_hold_s", hold);
    loco_json_num(&j, "round_s", o->round_s);
    loco_json_num(&j, "write_vs_round", o->round_s > 0 ? write / o->round_s : 0);
    loco_json_num(&j, "rss_start_mib", rss_start);
    loco_json_num(&j, "rss_peak_first_mib", rss_first);
    loco_json_num(&j, "rss_peak_second_mib", rss_second);
    loco_json_int(&j, "threads_before", threads_before);
    loco_json_int(&j, "threads_after", threads_after);
    loco_json_int(&j, "theta_finite", o->theta_finite);
    loco_json_int(&j, "events_once", events);
    loco_json_int(&j, "second_resume_refused", w->second_refused);
    loco_json_int(&j, "resumed_past_damage", o->resumed);
    loco_json_int(&j, "ok", ok);
    puts(loco_json_end(&j));
    loco_json_free(&j);
    return ok ? 0 : loco_errf(e, "soak: a check failed (above)");
}

/* One run with the watcher beside it, until the watcher stops it after `seconds`. */
static int soak_run(watch *w, loco_config *c, int resume, double seconds, loco_err *e) {
    w->seconds = seconds;
    w->start = loco_now();
    w->stop = 0;
    w->done = 0;
    pthread_t th;
    if (pthread_create(&th, NULL, watcher, w) != 0) return loco_errf(e, "soak: no thread");
    loco_train_opts o;
    loco_train_opts_default(&o);
    o.out_dir = w->dir;
    o.quiet = 1;
    o.stop = &w->stop;
    o.resume = resume;
    int rc = loco_train(c, &o, e);
    w->done = 1;
    pthread_join(th, NULL);
    check_new_checkpoint(w); /* the one taken when it stopped */
    return rc;
}

/* The run resumed after its newest checkpoint was cut short (a full disk, say): it must
 * go on from the one before, and set the damaged one aside as checkpoint.bad.bin. */
static int resume_damaged(watch *w, double seconds, int *ok, loco_err *e) {
    char path[LOCO_PATH_LEN + 32];
    snprintf(path, sizeof path, "%s/checkpoint.bin", w->dir);
    struct stat st;
    if (truncate(path, 4096) != 0 || stat(path, &st) != 0)
        return loco_errf(e, "soak: cannot damage %s: %s", path, strerror(errno));
    w->seen_ino = (long)st.st_ino; /* damaged on purpose: not a bad checkpoint of the run's */
    w->seen_mtime = (double)st.st_mtim.tv_sec + 1e-9 * (double)st.st_mtim.tv_nsec;
    loco_config c;
    loco_config_default(&c);
    snprintf(path, sizeof path, "%s/config.ini", w->dir);
    if (loco_config_load_file(&c, path, e) != 0) return -1;
    w->sampling = 0;
    int rc = soak_run(w, &c, 1, seconds, e);
    snprintf(path, sizeof path, "%s/checkpoint.bad.bin", w->dir);
    *ok = rc == 0 && access(path, F_OK) == 0;
    return rc;
}

/* every applied ticket of metrics.jsonl once, 1, 2, ...: none lost or written twice */
static long tickets_once(const char *dir, int *once) {
    char path[LOCO_PATH_LEN + 32];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    char *m = slurp(path);
    long last = 0;
    *once = m != NULL;
    for (char *p = m ? strstr(m, "\"status\":\"applied\"") : NULL; p && *once;
         p = strstr(p + 1, "\"status\":\"applied\"")) {
        char *line = p;
        while (line > m && line[-1] != '\n') line--;
        char *t = strstr(line, "\"ticket\":");
        *once = t && t < p && strtol(t + 9, NULL, 10) == last + 1;
        last++;
    }
    free(m);
    return last;
}

int loco_bench_soak(const loco_config *base, const char *config_name,
                    const loco_soak_opts *so, loco_err *e) {
    loco_config c = *base;
    if (soak_settings(&c, so, e) != 0) return -1;
    char tmp[] = "/tmp/loco-soak-XXXXXX";
    const char *dir = so->out ? so->out : mkdtemp(tmp);
    if (!dir) return loco_errf(e, "soak: cannot make a run directory in /tmp");
    static watch w; /* the samples are large */
    memset(&w, 0, sizeof w);
    w.dir = dir;
    w.sampling = 1;
    double again = fmax(3, so->seconds / 10);
    fprintf(stderr, "bench soak: %s, %d workers, %.0f s then %.0f s resumed from a damaged "
            "checkpoint, writing to %s\n", config_name, WORKERS, so->seconds, again, dir);
    int threads_before = thread_count(), resumed = 0;
    outcome first = {0}, out = {0};
    int rc = soak_run(&w, &c, 0, so->seconds, e);
    if (rc == 0) rc = read_outcome(dir, &first, e);
    if (rc == 0) rc = resume_damaged(&w, again, &resumed, e);
    int threads_after = thread_count();
    if (rc == 0) rc = read_outcome(dir, &out, e);
    /* a summary counts the checkpoints of its own process */
    out.checkpoints += first.checkpoints;
    out.checkpoint_s += first.checkpoint_s;
    out.write_s += first.write_s;
    out.resumed = resumed;
    out.tickets = tickets_once(dir, &out.tickets_once);
    if (rc == 0) rc = report(&w, &out, threads_before, threads_after, so->seconds, e);
    if (!so->out) nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    return rc;
}
