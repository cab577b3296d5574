/* Blocks whose stacks part at different depths, for --leak-resolution (memcheck counts
 * the allocation function itself among the frames it compares):
 *   two blocks of 10 bytes: mk <- a <- c1 <- d1, and mk <- a <- c1 <- d2 (parting at the
 *   fifth frame, malloc included): one record at low and med, two at high;
 *   two blocks of 30 bytes: mk30 <- b1 <- e, and mk30 <- b2 <- e (parting at the third):
 *   one record at low, two at med and high. */
#include <stdlib.h>

__attribute__((noinline)) void *mk(int n) { return malloc(n); }
__attribute__((noinline)) void *a(void) { return mk(10); }
__attribute__((noinline)) void *c1(void) { return a(); }
__attribute__((noinline)) void *d1(void) { return c1(); }
__attribute__((noinline)) void *d2(void) { return c1(); }

__attribute__((noinline)) void *mk30(void) { return malloc(30); }
__attribute__((noinline)) void *b1(void) { return mk30(); }
__attribute__((noinline)) void *b2(void) { return mk30(); }

void *volatile g_sink;

int main(void) {
    g_sink = d1();
    g_sink = d2();
    g_sink = b1();
    g_sink = b2();
    g_sink = NULL;
    return 0;
}
