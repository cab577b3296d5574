// Heap errors memlens must catch, report once per stack, and survive:
// a double free, a free of a pointer inside a block, a free of memory never
// allocated, and mismatched families (malloc/delete, new[]/delete, new/free).
#include <cstdio>
#include <cstdlib>

static int not_heap[4];

__attribute__((noinline)) void double_free(void) {
    char *p = (char *)malloc(40);
    free(p);
    free(p); // double free
}

__attribute__((noinline)) void interior_free(void) {
    char *p = (char *)malloc(64);
    free(p + 8); // inside the block
    free(p);
}

__attribute__((noinline)) void invalid_free(void) {
    free(not_heap); // never allocated
}

__attribute__((noinline)) void mismatches(void) {
    int *a = (int *)malloc(sizeof(int));
    delete a; // malloc / delete
    int *b = new int[3];
    delete b; // new[] / delete
    int *c = new int;
    free(c); // new / free
}

int main() {
    std::printf("before\n");
    volatile int n = 3; // one call site, three calls: one error with count 3
    for (int i = 0; i < n; i++)
        double_free();
    interior_free();
    invalid_free();
    mismatches();
    std::printf("after\n");
    return 0;
}
