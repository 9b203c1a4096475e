/* Helpers of the tests that damage files on purpose. */
#ifndef LOCO_TESTS_FILES_H
#define LOCO_TESTS_FILES_H

#include <criterion/criterion.h>
#include <stdio.h>

/* flips bit 6 of the byte at offset at of path */
static inline void flip_byte(const char *path, long at) {
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f, "%s", path);
    fseek(f, at, SEEK_SET);
    int c = fgetc(f);
    fseek(f, at, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
}

#endif
