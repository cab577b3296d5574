/* Reference cycles. For a lost cycle memcheck makes the block with the lowest address
 * the clique leader (definitely lost) and the others indirectly lost, so only the sum
 * definite + indirect of a cycle is meaningful; the split depends on address order.
 *
 *   cycle2_node       A <-> B, both lost                         2 x 40 B
 *   cycle3_node       A -> B -> C -> A, all lost, C -> tail      3 x 48 B
 *   cycle3_tail       tail of the 3-cycle, lost                  1 x 200 B
 *   self_cycle_node   A -> A (points to itself), lost: definite  1 x 72 B
 *   mixed_cycle_node  A -?> B (interior), B --> A, both lost     2 x 88 B
 *   kept_cycle_node   cycle_root --> X <-> Y: still reachable    2 x 104 B
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct cnode {
    void *next;
    void *extra;
};

void *volatile cycle_root;

#define NODE_FN(name, size)                                                                \
    __attribute__((noinline)) struct cnode *name(void) {                                   \
        struct cnode *n = malloc(size);                                                    \
        memset(n, 0, size);                                                                \
        return n;                                                                          \
    }

NODE_FN(cycle2_node, 40)
NODE_FN(cycle3_node, 48)
NODE_FN(cycle3_tail, 200)
NODE_FN(self_cycle_node, 72)
NODE_FN(mixed_cycle_node, 88)
NODE_FN(kept_cycle_node, 104)

/* n blocks from fn, allocated in a loop so that they share one allocation stack. */
__attribute__((noinline)) static void alloc_n(struct cnode *(*fn)(void), struct cnode **out,
                                              int n) {
    for (int i = 0; i < n; i++)
        out[i] = fn();
}

__attribute__((noinline)) void make_cycles(void) {
    struct cnode *n[3];

    alloc_n(cycle2_node, n, 2);
    n[0]->next = n[1];
    n[1]->next = n[0];

    alloc_n(cycle3_node, n, 3);
    n[0]->next = n[1];
    n[1]->next = n[2];
    n[2]->next = n[0];
    n[2]->extra = cycle3_tail();

    alloc_n(self_cycle_node, n, 1);
    n[0]->next = n[0];

    alloc_n(mixed_cycle_node, n, 2);
    n[0]->next = (char *)n[1] + 8;
    n[1]->next = n[0];

    alloc_n(kept_cycle_node, n, 2);
    n[0]->next = n[1];
    n[1]->next = n[0];
    cycle_root = n[0];

    memset(n, 0, sizeof n);
    __asm__ volatile("" : : "r"(n) : "memory");
}

int main(void) {
    make_cycles();
    static const char msg[] = "cycles: made\n";
    write(1, msg, sizeof msg - 1);
    return 0;
}
