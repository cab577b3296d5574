/* Allocation wrappers, for the --alloc-fn tests (crates/memlens-cli/tests/record.rs).
 *   xmalloc      a well-known wrapper (bash, gnulib): built into memlens's list
 *   my_alloc     the program's own wrapper: known only with --alloc-fn=my_alloc
 * Every block is kept (not freed at exit), each site once:
 *   keep_a  xmalloc(100)     keep_b  xmalloc(200)
 *   keep_c  my_alloc(300)    keep_d  my_alloc(400)
 * Build with -fno-builtin -fno-optimize-sibling-calls (tests/common C_FLAGS): every
 * function keeps its own frame. Output goes through write(2). */
#include <stdlib.h>
#include <unistd.h>

void *volatile kept[4];

__attribute__((noinline)) void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p)
        abort();
    return p;
}

__attribute__((noinline)) void *my_alloc(size_t n) {
    void *p = malloc(n); /* my_alloc's call */
    if (!p)
        abort();
    return p;
}

__attribute__((noinline)) void keep_a(void) { kept[0] = xmalloc(100); }
__attribute__((noinline)) void keep_b(void) { kept[1] = xmalloc(200); }
__attribute__((noinline)) void keep_c(void) { kept[2] = my_alloc(300); }
__attribute__((noinline)) void keep_d(void) { kept[3] = my_alloc(400); }

int main(void) {
    keep_a();
    keep_b();
    keep_c();
    keep_d();
    write(1, "wrappers done\n", 14);
    return 0;
}
