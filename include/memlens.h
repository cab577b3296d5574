/*
 * memlens.h: talk to the memlens recorder from C or C++, header-only.
 *
 * Under `memlens run` / `memlens check` these calls name regions of the program,
 * mark real-time threads and make assertions that `memlens check` evaluates on the
 * trace. Without the recorder every call is a no-op: the recorder's functions are
 * declared weak, so a program that includes this header links and runs without it
 * (no library to link, no rebuild to switch).
 *
 *   uint64_t t = memlens_region_begin("parse");   ... memlens_region_end(t);
 *   uint64_t m = memlens_now();
 *   ... code that must free what it allocates ...
 *   memlens_assert_no_leaks_since(m, "parse frees everything");
 *   memlens_assert_max_live(24u << 20, "at most 24 MiB live");
 *   memlens_set_realtime(1);  ... no allocation or free here ...  memlens_set_realtime(0);
 *
 * An assertion does not stop the program: it is written to the trace, and `memlens
 * check` fails afterwards (exit status 1, or --error-exitcode) naming its label, the
 * figure, the limit and the sites. See the README, "Inside test suites".
 */
#ifndef MEMLENS_H
#define MEMLENS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The recorder's entry points (libmemlens_preload.so); absent without it. */
int memlens_active(void) __attribute__((weak));
uint64_t memlens_region_enter(const char *name, size_t len) __attribute__((weak));
void memlens_region_exit(uint64_t token) __attribute__((weak));
uint64_t memlens_mark(void) __attribute__((weak));
void memlens_thread_realtime(int on) __attribute__((weak));
void memlens_assert(const char *label, size_t len, int kind, uint64_t mark,
                    uint64_t limit) __attribute__((weak));

#define MEMLENS_ASSERT_NO_LEAKS_SINCE 1
#define MEMLENS_ASSERT_MAX_LIVE 2
#define MEMLENS_ASSERT_PEAK_SINCE 3

/* 1 when the process is recorded by memlens, else 0. */
static inline int memlens_is_active(void) {
    return memlens_active ? memlens_active() : 0;
}

/* The calling thread enters region `name` (regions nest): its allocations until
 * memlens_region_end belong to the region, which a budget file selects with
 * `regions = ["name*"]`. Returns the token for memlens_region_end (0 without memlens). */
static inline uint64_t memlens_region_begin(const char *name) {
    return memlens_region_enter ? memlens_region_enter(name, name ? strlen(name) : 0) : 0;
}

/* The calling thread leaves the region memlens_region_begin returned `token` for. */
static inline void memlens_region_end(uint64_t token) {
    if (memlens_region_exit)
        memlens_region_exit(token);
}

/* A point in time for memlens_assert_no_leaks_since (0 without memlens). */
static inline uint64_t memlens_now(void) {
    return memlens_mark ? memlens_mark() : 0;
}

/* The calling thread is real-time (on != 0) or no longer: while it is, every allocation
 * or free it makes fails `memlens check`. */
static inline void memlens_set_realtime(int on) {
    if (memlens_thread_realtime)
        memlens_thread_realtime(on);
}

/* Every block the calling thread allocated since `mark` must be freed by now. */
static inline void memlens_assert_no_leaks_since(uint64_t mark, const char *label) {
    if (memlens_assert)
        memlens_assert(label, label ? strlen(label) : 0, MEMLENS_ASSERT_NO_LEAKS_SINCE,
                       mark, 0);
}

/* The process's live heap must be at most `bytes` now. */
static inline void memlens_assert_max_live(uint64_t bytes, const char *label) {
    if (memlens_assert)
        memlens_assert(label, label ? strlen(label) : 0, MEMLENS_ASSERT_MAX_LIVE, 0, bytes);
}

/* The bytes the calling thread allocated since `mark` were never more than `bytes` live
 * at once, from the mark to now (a test's peak). */
static inline void memlens_assert_peak_since(uint64_t mark, uint64_t bytes, const char *label) {
    if (memlens_assert)
        memlens_assert(label, label ? strlen(label) : 0, MEMLENS_ASSERT_PEAK_SINCE, mark, bytes);
}

#ifdef __cplusplus
}
#endif

#endif /* MEMLENS_H */
