/* sysmem: what this process may allocate (memplan.h's loco_mem_available). */
#include "loco/sysmem.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loco/base.h"

/* the first n - 1 bytes of root/path, NUL-terminated; -1 when it cannot be read */
static int read_text(const char *root, const char *path, char *buf, size_t n) {
    char full[LOCO_PATH_LEN * 4];
    snprintf(full, sizeof full, "%s%s", root, path);
    FILE *f = fopen(full, "r");
    if (!f) return -1;
    size_t got = fread(buf, 1, n - 1, f);
    fclose(f);
    buf[got] = '\0';
    return 0;
}

/* a cgroup file holding one number; "max" (v2) or the v1 "unlimited" (2^63 less a page)
 * is no limit */
static int read_limit(const char *dir, const char *file, uint64_t *v) {
    char path[LOCO_PATH_LEN * 4], buf[64];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (read_text("", path, buf, sizeof buf) != 0) return -1;
    char *end;
    unsigned long long x = strtoull(buf, &end, 10);
    if (end == buf) return -1;
    *v = x >= (1ULL << 60) ? UINT64_MAX : (uint64_t)x;
    return 0;
}

static uint64_t mem_available_kb(const char *root) {
    char buf[8192];
    if (read_text(root, "/proc/meminfo", buf, sizeof buf) != 0) return UINT64_MAX;
    const char *p = strstr(buf, "MemAvailable:");
    return p ? strtoull(p + strlen("MemAvailable:"), NULL, 10) : UINT64_MAX;
}

/* The cgroup path of this process in hierarchy v2 (v1 = 0) or v1's memory controller. */
static int own_cgroup(const char *root, int v1, char *path, size_t n) {
    char buf[4096];
    if (read_text(root, "/proc/self/cgroup", buf, sizeof buf) != 0) return -1;
    char *save;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = '\0';
        const char *ctrls = c1 + 1;
        int mine = v1 ? strstr(ctrls, "memory") != NULL
                      : *ctrls == '\0' && !strncmp(line, "0:", 2);
        if (mine) return snprintf(path, n, "%s", c2 + 1), 0;
    }
    return -1;
}

/* Where the hierarchy is mounted: its mount point and the cgroup that is its root
 * (a container sees its own cgroup as /). Fields of a mountinfo line: id, parent, dev,
 * root, mount point, options, optional fields, "-", type, source, super options. */
static int cgroup_mount(const char *root, int v1, char *point, char *mroot, size_t n) {
    char *buf = malloc(1 << 16);
    int rc = -1;
    char *save;
    if (!buf || read_text(root, "/proc/self/mountinfo", buf, 1 << 16) != 0) goto out;
    for (char *line = strtok_r(buf, "\n", &save); line && rc != 0;
         line = strtok_r(NULL, "\n", &save)) {
        char r[LOCO_PATH_LEN], mp[LOCO_PATH_LEN], type[32], opts[512];
        const char *dash = strstr(line, " - ");
        if (!dash || sscanf(line, "%*s %*s %*s %1023s %1023s", r, mp) != 2 ||
            sscanf(dash + 3, "%31s %*s %511s", type, opts) != 2)
            continue;
        int match = v1 ? !strcmp(type, "cgroup") && strstr(opts, "memory")
                       : !strcmp(type, "cgroup2");
        if (match) {
            snprintf(point, n, "%s", mp);
            snprintf(mroot, n, "%s", r);
            rc = 0;
        }
    }
out:
    free(buf);
    return rc;
}

/* From the process's cgroup up to the hierarchy's root: the limit that leaves the least.
 * Returns -1 when the process's own cgroup has no limit file (no memory controller). */
static int walk_cgroups(const char *root, int v1, loco_mem_avail *a) {
    static const char *files[2][2] = {{"memory.max", "memory.current"},
                                      {"memory.limit_in_bytes", "memory.usage_in_bytes"}};
    char cg[LOCO_PATH_LEN], point[LOCO_PATH_LEN], mroot[LOCO_PATH_LEN], dir[LOCO_PATH_LEN * 3];
    if (own_cgroup(root, v1, cg, sizeof cg) != 0 ||
        cgroup_mount(root, v1, point, mroot, sizeof point) != 0)
        return -1;
    size_t rl = strlen(mroot);
    const char *rel = strcmp(mroot, "/") && !strncmp(cg, mroot, rl) ? cg + rl : cg;
    snprintf(dir, sizeof dir, "%s%s%s", root, point, rel);
    size_t base = strlen(root) + strlen(point);
    for (int leaf = 1;; leaf = 0) {
        uint64_t limit, usage = 0;
        if (read_limit(dir, files[v1][0], &limit) != 0) {
            if (leaf) return -1;
        } else if (limit != UINT64_MAX && read_limit(dir, files[v1][1], &usage) == 0) {
            uint64_t left = limit > usage ? limit - usage : 0;
            if (!a->cgroup || left < a->cg_limit - a->cg_usage) {
                a->cgroup = v1 ? 2 : 1;
                a->cg_limit = limit;
                a->cg_usage = usage > limit ? limit : usage;
                snprintf(a->cg_path, sizeof a->cg_path, "%s", dir + strlen(root));
            }
        }
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < base) return 0;
        *slash = '\0';
    }
}

void loco_mem_available(loco_mem_avail *a, const char *root) {
    memset(a, 0, sizeof *a);
    uint64_t kb = mem_available_kb(root);
    a->meminfo = kb == UINT64_MAX ? UINT64_MAX : loco_mul_sat(kb, 1024);
    if (walk_cgroups(root, 0, a) != 0) walk_cgroups(root, 1, a);
    a->bytes = a->meminfo;
    if (a->cgroup && a->cg_limit - a->cg_usage < a->bytes) a->bytes = a->cg_limit - a->cg_usage;
}

const char *loco_mem_avail_str(const loco_mem_avail *a, char *buf, size_t n) {
    char x[32], y[32], z[32];
    const char *mi = a->meminfo == UINT64_MAX ? "MemAvailable unknown" : "MemAvailable";
    if (!a->cgroup) {
        snprintf(buf, n, "%s; no cgroup limit", mi);
    } else if (a->bytes == a->meminfo) {
        snprintf(buf, n, "%s; the cgroup limit leaves more", mi);
    } else {
        snprintf(buf, n, "cgroup %s %s: limit %s, %s in use; %s %s", a->cgroup == 1 ? "v2" : "v1",
                 a->cg_path, loco_size_str(a->cg_limit, x, sizeof x),
                 loco_size_str(a->cg_usage, y, sizeof y), mi,
                 a->meminfo == UINT64_MAX ? "" : loco_size_str(a->meminfo, z, sizeof z));
    }
    return buf;
}
