/* metrics: the events come out in the order their places were taken (a reserved place
 * holds back what follows until it is filled), an evaluation spanning several marks is one
 * line per mark, the summary names every rejection reason of the status table, and the
 * JSON builder writes what a JSON reader reads back. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loco/json.h"
#include "loco/metrics.h"

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* the lines' values of key, in order, into out (at most max); returns how many */
static int values_of(const char *text, const char *key, double *out, int max) {
    int n = 0;
    for (const char *line = text; *line && n < max;) {
        const char *end = strchr(line, '\n');
        cr_assert_not_null(end, "a line without its newline");
        char one[1024];
        size_t len = (size_t)(end - line);
        cr_assert_lt(len, sizeof one);
        memcpy(one, line, len);
        one[len] = '\0';
        cJSON *j = cJSON_Parse(one);
        cr_assert_not_null(j, "not JSON: %s", one);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
        if (cJSON_IsNumber(v)) out[n++] = v->valuedouble;
        cJSON_Delete(j);
        line = end + 1;
    }
    return n;
}

Test(metrics, events_keep_the_order_of_their_places_and_marks_are_one_line_each) {
    char dir[] = "/tmp/loco-metrics-test-XXXXXX", path[64];
    cr_assert_not_null(mkdtemp(dir));
    loco_metrics mt;
    loco_err e = {{0}};
    cr_assert_eq(loco_metrics_open(&mt, dir, 1, 1, &e), 0, "%s", e.msg);
    long held = loco_metrics_reserve(&mt); /* an evaluation still to come */
    loco_train_event t = {.step = 1, .tokens = 10, .loss = 2.0, .lr = 1e-3};
    loco_metrics_train(&mt, &t);
    loco_metrics_flush(&mt);
    cr_assert_eq(loco_metrics_length(&mt), 0, "nothing passes a place not yet filled");
    loco_eval_event ev = {.async = 1, .updates = 4, .local_steps = 350, .at_local_steps = 100,
                          .last_mark = 300, .every = 100, .val_loss = 1.5, .place = held};
    loco_metrics_eval(&mt, &ev);
    loco_metrics_flush(&mt);
    cr_assert_gt(loco_metrics_length(&mt), 0, "written once the place is filled");
    cr_assert_eq(loco_metrics_close(&mt, &e), 0, "%s", e.msg);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    const char *text = slurp(path);
    double marks[8], steps[8];
    cr_assert_eq(values_of(text, "at_local_steps", marks, 8), 3, "one line per mark: %s", text);
    for (int i = 0; i < 3; i++) cr_assert_eq(marks[i], 100.0 * (i + 1), "mark %d", i);
    cr_assert_eq(values_of(text, "step", steps, 8), 1, "the train event");
    cr_assert(strstr(text, "\"event\":\"train\"") > strstr(text, "\"at_local_steps\":300"),
              "the train event comes after the evaluation whose place was taken first: %s", text);
    unlink(path);
    rmdir(dir);
}

Test(metrics, the_summary_counts_every_rejection_reason_of_the_status_table) {
    loco_worker_row rows[2] = {{0}};
    loco_summary s = {.status = "finished", .method = "async", .clock = "virtual", .workers = 2,
                      .final_val = 1.5, .final_se = 0.004, .rows = rows};
    for (int k = 0; k < LOCO_ARRIVALS; k++) s.rejected[k] = 10 + k;
    loco_json j;
    loco_summary_json(&s, 1, &j);
    cJSON *o = cJSON_Parse(j.buf);
    cr_assert_not_null(o, "not JSON: %s", j.buf);
    int reasons = 0;
    for (const loco_enum *a = loco_arrival_statuses; a->name; a++) {
        char key[64];
        snprintf(key, sizeof key, "rejected_%s", a->name);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
        if (a->value == LOCO_ARRIVAL_APPLIED) {
            cr_assert_null(v, "no count of applied arrivals under %s", key);
            continue;
        }
        cr_assert(cJSON_IsNumber(v), "%s missing: %s", key, j.buf);
        cr_assert_eq(v->valuedouble, 10.0 + a->value, "%s", key);
        reasons++;
    }
    cr_assert_eq(reasons, LOCO_ARRIVALS - 1);
    /* the names users' scripts read stay */
    const char *kept[] = {"rejected_nonfinite", "rejected_stale", "rejected_norm", "rejected_diverged"};
    for (int i = 0; i < 4; i++) cr_assert_not_null(cJSON_GetObjectItemCaseSensitive(o, kept[i]), "%s", kept[i]);
    cJSON_Delete(o);
    loco_json_free(&j);
}

Test(metrics, the_json_builder_writes_what_a_reader_reads_back) {
    loco_json j;
    loco_json_begin(&j);
    loco_json_str(&j, "s", "quote \" backslash \\ tab \t newline \n");
    loco_json_num(&j, "x", 0.1);
    loco_json_num(&j, "nan", NAN);
    loco_json_int(&j, "n", -42);
    loco_json_open(&j, "list", '[');
    for (int i = 0; i < 3; i++) loco_json_int(&j, NULL, i);
    loco_json_close(&j, ']');
    loco_json_str(&j, "none", NULL);
    cJSON *o = cJSON_Parse(loco_json_end(&j));
    cr_assert_not_null(o, "not JSON: %s", j.buf);
    cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(o, "s")->valuestring,
                     "quote \" backslash \\ tab \t newline \n");
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(o, "x")->valuedouble, 0.1, "round trip");
    cr_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "nan")), "NaN is null");
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(o, "n")->valueint, -42);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "list")), 3);
    cr_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "none")));
    cJSON_Delete(o);
    loco_json_free(&j);
}
