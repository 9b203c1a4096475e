#include "loco/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put(loco_json *j, const char *s, size_t n) {
    if (j->len + n + 1 > j->cap) {
        size_t cap = j->cap ? j->cap : 256;
        while (j->len + n + 1 > cap) cap *= 2;
        char *b = realloc(j->buf, cap);
        /* a few KiB of text: out of memory here is not recoverable */
        LOCO_CHECK(b != NULL, "out of memory for %zu bytes of JSON", cap);
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
    if (v) put_string(j, v);
    else puts_json(j, "null");
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

void loco_json_free(loco_json *j) {
    free(j->buf);
    memset(j, 0, sizeof *j);
}
