/* The C part of the memlens recorder.
 *
 * 1. Per-thread state in initial-exec TLS. Rust's thread_local! in a cdylib uses the
 *    general-dynamic model (__tls_get_addr), which may call malloc: a hook using it can
 *    recurse. Initial-exec TLS is a fixed offset from %fs, safe inside malloc. It works
 *    because the library is loaded at start-up through LD_PRELOAD, never dlopen'ed.
 */
#define _GNU_SOURCE
#include <stddef.h>

struct memlens_tls {
    int busy;       /* > 0 while this thread is inside the recorder */
    void *state;    /* the thread's ThreadState, or NULL */
    int live_shard; /* 1 + the live-table shard this thread has locked, or 0 */
    int pending_n;  /* live-table operations queued by a re-entered hook */
    unsigned long long pending[8][2];
    long long sample_left;         /* bytes to the next sample point (sample.rs) */
    unsigned long long sample_rng; /* the sampler's PRNG state, 0 until seeded */
    unsigned long long leaving_sp; /* the hook's caller's stack pointer, while leaving */
    unsigned long long in_flight;  /* the block the hook is returning, while leaving */
};

/* Hidden, not static: the hooks' assembly fast paths (`unsampled.rs`) read the sampler's
 * countdown through its initial-exec offset. */
__attribute__((visibility("hidden"))) __thread struct memlens_tls memlens_tls_block
    __attribute__((tls_model("initial-exec")));

__attribute__((visibility("hidden"))) struct memlens_tls *memlens_tls(void) {
    return &memlens_tls_block;
}
