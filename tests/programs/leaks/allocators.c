/* One definitely lost block from each allocation function, each in its own function:
 *   via_malloc          malloc(101)
 *   via_calloc          calloc(3, 34)              102 B
 *   via_realloc_grow    malloc(10), then realloc to 103 (the 10-byte block is freed);
 *                       the loss record's stack is realloc's
 *   via_realloc_null    realloc(NULL, 104)
 *   via_memalign        memalign(64, 105)
 *   via_posix_memalign  posix_memalign(&p, 128, 106)
 *   via_aligned_alloc   aligned_alloc(256, 512)
 *   via_valloc          valloc(108)
 *   via_strdup          strdup of a 108-character string: 109 B, allocated by malloc
 *                       called from glibc's strdup (so the first frame after malloc is
 *                       strdup, not via_strdup)
 *   via_malloc_zero     malloc(0): a 0-byte block; memcheck counts it (0 bytes in 1 block)
 * The pointers are dropped by each function's caller; nothing points to any block. */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char text108[] = "0123456789012345678901234567890123456789012345678901234567"
                              "89012345678901234567890123456789012345678901234567";

__attribute__((noinline)) void *via_malloc(void) { return malloc(101); }
__attribute__((noinline)) void *via_calloc(void) { return calloc(3, 34); }
__attribute__((noinline)) void *via_realloc_grow(void) {
    void *p = malloc(10);
    return realloc(p, 103);
}
__attribute__((noinline)) void *via_realloc_null(void) { return realloc(NULL, 104); }
__attribute__((noinline)) void *via_memalign(void) { return memalign(64, 105); }
__attribute__((noinline)) void *via_posix_memalign(void) {
    void *p = NULL;
    return posix_memalign(&p, 128, 106) ? NULL : p;
}
__attribute__((noinline)) void *via_aligned_alloc(void) { return aligned_alloc(256, 512); }
__attribute__((noinline)) void *via_valloc(void) { return valloc(108); }
__attribute__((noinline)) void *via_strdup(void) { return strdup(text108); }
__attribute__((noinline)) void *via_malloc_zero(void) { return malloc(0); }

__attribute__((noinline)) void make_blocks(void) {
    void *(*const fns[])(void) = {via_malloc,     via_calloc,         via_realloc_grow,
                                  via_realloc_null, via_memalign,     via_posix_memalign,
                                  via_aligned_alloc, via_valloc,      via_strdup,
                                  via_malloc_zero};
    for (unsigned i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        void *volatile p = fns[i]();
        p = NULL;
        (void)p;
    }
}

int main(void) {
    make_blocks();
    static const char msg[] = "allocators: 10 blocks lost\n";
    write(1, msg, sizeof msg - 1);
    return 0;
}
