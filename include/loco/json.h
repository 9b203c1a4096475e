/* json: a small JSON builder: one object (or array) built field by field into a growing
 * buffer, numbers as C prints them (NaN and Inf as null), strings escaped. Knows nothing
 * of what it writes. */
#ifndef LOCO_JSON_H
#define LOCO_JSON_H

#include <stddef.h>

#include "loco/base.h"

/* One JSON object, built field by field into a growing buffer. */
typedef struct {
    char *buf;
    size_t len, cap;
    int fields;   /* fields in the innermost open object or array */
    int depth;
} loco_json;

void loco_json_begin(loco_json *j);              /* '{' */
void loco_json_str(loco_json *j, const char *key, const char *v);  /* NULL -> null */
void loco_json_num(loco_json *j, const char *key, double v);     /* NaN, Inf -> null */
void loco_json_int(loco_json *j, const char *key, long v);
void loco_json_open(loco_json *j, const char *key, char bracket); /* nested '{' or '['; key NULL in arrays */
void loco_json_close(loco_json *j, char bracket);
const char *loco_json_end(loco_json *j);         /* '}'; the text stays valid until free */
void loco_json_free(loco_json *j);

#endif
