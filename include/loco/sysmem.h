/* sysmem: what this process may allocate, read from procfs and the cgroup files (v1 and
 * v2) the way the kernel will count it. Knows nothing of loco's runs. */
#ifndef LOCO_SYSMEM_H
#define LOCO_SYSMEM_H

#include <stddef.h>
#include <stdint.h>

/* What this process may allocate: MemAvailable from /proc/meminfo, and, where its cgroup
 * (or a parent) has a memory limit, the limit minus what the cgroup uses (v2 memory.max
 * minus memory.current, else v1 memory.limit_in_bytes minus memory.usage_in_bytes);
 * bytes is the smaller. */
typedef struct {
    uint64_t bytes;
    uint64_t meminfo;         /* MemAvailable; UINT64_MAX when unknown */
    int cgroup;               /* 0: no limit; 1: cgroup v2; 2: cgroup v1 */
    uint64_t cg_limit, cg_usage;   /* of the cgroup that leaves the least */
    char cg_path[256];        /* that cgroup's directory */
} loco_mem_avail;

/* Reads the files under root ("" on a real system; tests give a directory holding
 * proc/meminfo, proc/self/cgroup, proc/self/mountinfo and the cgroup files the
 * mountinfo names). Never fails: what cannot be read counts as no limit. */
void loco_mem_available(loco_mem_avail *a, const char *root);

/* Where the available figure comes from: "MemAvailable; no cgroup limit", ... */
const char *loco_mem_avail_str(const loco_mem_avail *a, char *buf, size_t n);

#endif
