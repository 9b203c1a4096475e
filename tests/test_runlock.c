/* One writer per run directory: the lock itself (refused while held by another process,
 * taken once its holder is gone, not passed on to programs a holder runs), and what a
 * user sees of it: a second `train --resume` of a run being resumed, or a second `train`
 * into a directory being written, is refused at once and changes nothing. */
#include <errno.h>

#include "cli.h"
#include "loco/runlock.h"

static void scratch_dir(char *buf, size_t n, const char *tag) {
    snprintf(buf, n, "/tmp/loco-lock-%s-%d", tag, (int)getpid());
    mkdir(buf, 0755);
}

static void remove_dir(const char *dir) {
    char path[256];
    snprintf(path, sizeof path, "%s/" LOCO_RUNLOCK_FILE, dir);
    unlink(path);
    rmdir(dir);
}

/* Forks a child that tries to take dir's lock: its exit code is 0 when it took it, 1 when
 * refused (the message is written to msg_path), 2 when the message was not as expected. */
static int try_in_child(const char *dir, const char *want) {
    pid_t pid = fork();
    if (pid == 0) {
        loco_runlock l = {0};
        loco_err e;
        if (loco_runlock_take(&l, dir, "child", &e) == 0) _exit(0);
        _exit(want && !strstr(e.msg, want) ? 2 : 1);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(runlock, a_second_process_is_refused_with_the_holders_pid_and_errand) {
    char dir[128], want[160], path[192];
    scratch_dir(dir, sizeof dir, "held");
    loco_runlock l = {0};
    loco_err e;
    cr_assert_eq(loco_runlock_take(&l, dir, "train --resume", &e), 0, "%s", e.msg);
    snprintf(want, sizeof want, "pid %d: train --resume, since ", (int)getpid());
    cr_assert_eq(try_in_child(dir, want), 1, "the second taker was not refused with '%s'", want);
    snprintf(path, sizeof path, "%s/" LOCO_RUNLOCK_FILE, dir);
    char *text = slurp(path);
    cr_assert(text && strstr(text, want), "the refused taker changed the lock file: %s", text);
    free(text);
    loco_runlock_release(&l);
    cr_assert_eq(try_in_child(dir, NULL), 0, "a released lock is not taken");
    remove_dir(dir);
}

Test(runlock, a_lock_left_by_a_process_that_died_is_no_obstacle) {
    char dir[128];
    scratch_dir(dir, sizeof dir, "stale");
    pid_t pid = fork();
    if (pid == 0) {
        loco_runlock l = {0};
        loco_err e;
        if (loco_runlock_take(&l, dir, "train", &e) != 0) _exit(1);
        raise(SIGKILL); /* never released: the kernel drops it */
    }
    int st;
    waitpid(pid, &st, 0);
    cr_assert(WIFSIGNALED(st), "the holder did not die as planned");
    loco_runlock l = {0};
    loco_err e;
    cr_assert_eq(loco_runlock_take(&l, dir, "train", &e), 0, "%s", e.msg);
    loco_runlock_release(&l);
    loco_runlock_release(&l); /* twice is fine */
    remove_dir(dir);
}

/* A holder that runs another program (gnuplot, say) does not lend it the lock: once the
 * holder lets go, the run is free even while that program still runs. */
Test(runlock, a_program_the_holder_runs_does_not_keep_the_lock) {
    char dir[128];
    scratch_dir(dir, sizeof dir, "exec");
    loco_runlock l = {0};
    loco_err e;
    cr_assert_eq(loco_runlock_take(&l, dir, "sweep", &e), 0, "%s", e.msg);
    pid_t sleeper = fork();
    if (sleeper == 0) {
        execl("/bin/sleep", "sleep", "30", (char *)NULL);
        _exit(127);
    }
    sleep_ms(100);
    loco_runlock_release(&l);
    int took = try_in_child(dir, NULL);
    kill(sleeper, SIGKILL);
    waitpid(sleeper, NULL, 0);
    cr_assert_eq(took, 0, "the program started by the holder still holds the lock");
    remove_dir(dir);
}

Test(runlock, a_directory_that_does_not_exist_is_an_error_naming_it) {
    loco_runlock l = {0};
    loco_err e;
    cr_assert_neq(loco_runlock_take(&l, "/tmp/loco-no-such-dir/run", "train", &e), 0);
    cr_assert(strstr(e.msg, "/tmp/loco-no-such-dir/run/lock") && strstr(e.msg, "No such file"),
              "%s", e.msg);
}

/* ------------------------------------------------------- through ./loco */

/* A 4-worker run on the virtual clock that would go on for a long time, into dir. */
static pid_t start_long_run(cli *c, const char *dir) {
    const char *args[] = {"train", "-c", "configs/tiny.ini", "--set", "train.steps=1000000",
                          "--set", "run.workers=4", "--set", "outer.method=async-dn",
                          "--set", "run.clock=virtual", "--set", "outer.local_steps=5",
                          "--out", dir, NULL};
    return cli_start(c, args);
}

/* Every applied ticket of dir's metrics.jsonl once, in order from 1: none written twice. */
static long expect_each_ticket_once(const char *metrics) {
    char *m = slurp(metrics);
    cr_assert_not_null(m, "%s is missing", metrics);
    long last = 0;
    for (const char *p = strstr(m, "\"status\":\"applied\""); p;
         p = strstr(p + 1, "\"status\":\"applied\"")) {
        const char *line = p;
        while (line > m && line[-1] != '\n') line--;
        long t = (long)json_number(line, "ticket");
        cr_assert_eq(t, last + 1, "applied ticket %ld after %ld: written twice or lost", t, last);
        last = t;
    }
    free(m);
    return last;
}

/* The case: a run stopped by Ctrl-C, then `train --resume D` twice at once. The
 * second is refused at once, naming the first's pid, and the first goes on alone: each
 * arrival is in metrics.jsonl once. After the first is killed outright, its lock is no
 * obstacle to the next resume. */
Test(runlock, a_second_resume_of_a_run_being_resumed_is_refused, .timeout = 240) {
    cli c, second;
    cli_open(&c);
    cli_open(&second);
    const char *dir = in_dir(&c, "run"), *metrics = in_dir(&c, "run/metrics.jsonl");
    const char *lock = in_dir(&c, "run/lock");
    pid_t pid = start_long_run(&c, dir);
    await_text(&c, pid, metrics, "\"ticket\":5,");
    kill(pid, SIGINT);
    cli_wait(&c, pid);
    cr_assert_eq(c.status, 128 + SIGINT, "%s", c.err);
    const char *resume[] = {"train", "--resume", dir, NULL};
    pid_t first = cli_start(&c, resume);
    char holder[64];
    snprintf(holder, sizeof holder, "pid %d: train --resume", (int)first);
    await_text(&c, first, lock, holder);
    cr_assert_eq(run(&second, "train", "--resume", dir, NULL), 1, "the second resume ran:\n%s",
                 second.err);
    expect_err(&second, "is in use by another loco process");
    expect_err(&second, holder);
    expect_file_has(lock, holder);
    /* the first is still going, and alone */
    cr_assert(!cli_poll(&c, first), "the first resume ended early: %s", c.err);
    kill(first, SIGINT);
    cli_wait(&c, first);
    cr_assert_eq(c.status, 128 + SIGINT, "%s", c.err);
    expect_each_ticket_once(metrics);
    /* killed outright, the holder leaves its lock file; the next resume takes it */
    pid_t killed = cli_start(&c, resume);
    snprintf(holder, sizeof holder, "pid %d:", (int)killed);
    await_text(&c, killed, lock, holder);
    kill(killed, SIGKILL);
    cli_wait(&c, killed);
    pid_t last = cli_start(&c, resume);
    snprintf(holder, sizeof holder, "pid %d:", (int)last);
    await_text(&c, last, lock, holder);
    kill(last, SIGINT);
    cli_wait(&c, last);
    cr_assert_eq(c.status, 128 + SIGINT, "%s", c.err);
    /* (the arrivals after a stop's checkpoint, of the rounds under way, are cut from
     * metrics.jsonl by the next resume and made again: fewer may be there now) */
    cr_assert_gt(expect_each_ticket_once(metrics), 0, "no arrivals left");
    cli_close(&second);
    cli_close(&c);
}

/* A new run into a directory another process is writing is refused before it writes. */
Test(runlock, a_new_run_into_a_directory_being_written_is_refused, .timeout = 240) {
    cli c, second;
    cli_open(&c);
    cli_open(&second);
    const char *dir = in_dir(&c, "run"), *metrics = in_dir(&c, "run/metrics.jsonl");
    pid_t pid = start_long_run(&c, dir);
    await_text(&c, pid, metrics, "\"ticket\":3,");
    cr_assert_eq(run(&second, "train", "-c", "configs/tiny.ini", "--out", dir, NULL), 1,
                 "the second run ran:\n%s", second.err);
    expect_err(&second, "is in use by another loco process");
    char *config = slurp(in_dir(&c, "run/config.ini"));
    cr_assert(config && strstr(config, "workers = 4"), "the refused run wrote config.ini");
    free(config);
    kill(pid, SIGINT);
    cli_wait(&c, pid);
    expect_each_ticket_once(metrics);
    cli_close(&second);
    cli_close(&c);
}
