/* Stacks of many shapes for the unwind caches: allocations at every depth of a
 * recursion, from two mutually recursive functions, in a loop that revisits the same
 * and different depths. Deterministic: the same sites and counts every run. */
#include <stdio.h>
#include <stdlib.h>

void *keep[4096];
int nkeep;

__attribute__((noinline)) void leaf(int n) { keep[nkeep++ % 4096] = malloc(16 + n); }
__attribute__((noinline)) void odd(int depth, int n);
__attribute__((noinline)) void even(int depth, int n) {
    if (n % 3 == 0) leaf(n);
    if (depth > 0) odd(depth - 1, n + 1);
    if (n % 5 == 0) leaf(n + 7);
}
__attribute__((noinline)) void odd(int depth, int n) {
    leaf(n);
    if (depth > 0) even(depth - 1, n + 2);
}

int main(void) {
    for (int round = 0; round < 40; round++)
        for (int d = 0; d < 30; d += 1 + round % 4) even(d, round);
    printf("recursion done %d\n", nkeep);
    return 0;
}
