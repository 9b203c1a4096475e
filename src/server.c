#include "loco/server.h"

#include <stdlib.h>
#include <string.h>

#include "loco/cpu.h"

int loco_server_init(loco_server *sw, loco_globalbuf *gb, int cap, loco_err *e) {
    memset(sw, 0, sizeof *sw);
    sw->gb = gb;
    sw->cap = cap;
    sw->queue = calloc((size_t)cap, sizeof *sw->queue);
    if (!sw->queue) return loco_errf(e, "out of memory for the server's queue");
    pthread_mutex_init(&sw->mu, NULL);
    pthread_cond_init(&sw->cv, NULL);
    return 0;
}

void loco_server_free(loco_server *sw) {
    LOCO_CHECK(!sw->started, "freeing a running sweeper");
    if (sw->queue) {
        pthread_mutex_destroy(&sw->mu);
        pthread_cond_destroy(&sw->cv);
    }
    free(sw->queue);
    memset(sw, 0, sizeof *sw);
}

static void *sweep_main(void *arg) {
    loco_server *sw = arg;
    loco_fp_flush_denormals();
    loco_topo_bind(sw->topo, sw->place, NULL);
    pthread_mutex_lock(&sw->mu);
    for (;;) {
        while (sw->len == 0 && !sw->closing) pthread_cond_wait(&sw->cv, &sw->mu);
        if (sw->len == 0) break;
        loco_job j = sw->queue[sw->head];
        pthread_mutex_unlock(&sw->mu);
        double t0 = loco_now();
        loco_job_walk(sw->gb, &j);
        pthread_mutex_lock(&sw->mu);
        sw->busy_s += loco_now() - t0;
        sw->head = (sw->head + 1) % sw->cap;
        sw->len--;
    }
    pthread_mutex_unlock(&sw->mu);
    return NULL;
}

int loco_server_start(loco_server *sw, const loco_topo *topo, const loco_place *place,
                       loco_err *e) {
    sw->topo = topo;
    sw->place = place;
    if (pthread_create(&sw->thread, NULL, sweep_main, sw) != 0)
        return loco_errf(e, "cannot start the server thread");
    sw->started = 1;
    return 0;
}

void loco_server_push(loco_server *sw, const loco_job *j) {
    pthread_mutex_lock(&sw->mu);
    LOCO_CHECK(sw->len < sw->cap, "queue full (%d jobs): a caller has more outstanding than "
               "it reserved", sw->len);
    LOCO_CHECK(sw->started && !sw->closing, "a job pushed to a sweeper that is not running");
    sw->queue[(sw->head + sw->len) % sw->cap] = *j;
    sw->len++;
    pthread_cond_signal(&sw->cv);
    pthread_mutex_unlock(&sw->mu);
}

void loco_server_stop(loco_server *sw) {
    if (!sw->started) return;
    pthread_mutex_lock(&sw->mu);
    sw->closing = 1;
    pthread_cond_signal(&sw->cv);
    pthread_mutex_unlock(&sw->mu);
    pthread_join(sw->thread, NULL);
    sw->started = 0;
}

int loco_server_idle(loco_server *sw) {
    pthread_mutex_lock(&sw->mu);
    int idle = sw->len == 0; /* a job leaves the queue once it is walked */
    pthread_mutex_unlock(&sw->mu);
    return idle;
}

double loco_server_busy(loco_server *sw) {
    pthread_mutex_lock(&sw->mu);
    double b = sw->busy_s;
    pthread_mutex_unlock(&sw->mu);
    return b;
}
