/* The nine combinations of memcheck's leak categories (compare memcheck/tests/leak-cases.c;
 * this is an independent program). A is a heap block, B a block that only A points to.
 * "root" is a global; "-->" a start pointer, "-?>" an interior pointer (start + 8).
 *
 *   case  chain                      A                  B
 *   1     root --> A                 still reachable
 *   2     root --> A --> B           still reachable    still reachable
 *   3              A                 definitely lost
 *   4              A --> B           definitely lost    indirectly lost
 *   5     root -?> A                 possibly lost
 *   6     root --> A -?> B           still reachable    possibly lost
 *   7     root -?> A --> B           possibly lost      possibly lost
 *   8     root -?> A -?> B           possibly lost      possibly lost
 *   9              A -?> B           definitely lost    indirectly lost
 *
 * Block A of case N is allocated by caseN_A (16*N + 16 bytes), block B by caseN_B
 * (16*N + 24 bytes), so a loss record is identified by its function and its size.
 * Everything is allocated in make_cases (noinline), so no pointer is left in main's
 * frame, and main prints with write(2) so no stdio buffer is allocated. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct node {
    void *next; /* start or interior pointer to the next block, or NULL */
};

void *volatile root1, *volatile root2, *volatile root5, *volatile root6;
void *volatile root7, *volatile root8;

#define INTERIOR(p) ((void *)((char *)(p) + 8))

/* Each block comes straight from malloc in its own function, so the first frame after
 * malloc names the block. */
#define BLOCK(name, size)                                                                  \
    __attribute__((noinline)) void *name(void *next) {                                     \
        struct node *n = malloc(size);                                                     \
        memset(n, 0, size);                                                                \
        n->next = next;                                                                    \
        return n;                                                                          \
    }

BLOCK(case1_A, 32)
BLOCK(case2_A, 48)
BLOCK(case2_B, 56)
BLOCK(case3_A, 64)
BLOCK(case4_A, 80)
BLOCK(case4_B, 88)
BLOCK(case5_A, 96)
BLOCK(case6_A, 112)
BLOCK(case6_B, 120)
BLOCK(case7_A, 128)
BLOCK(case7_B, 136)
BLOCK(case8_A, 144)
BLOCK(case8_B, 152)
BLOCK(case9_A, 160)
BLOCK(case9_B, 168)

__attribute__((noinline)) void make_cases(void) {
    root1 = case1_A(NULL);
    root2 = case2_A(case2_B(NULL));
    (void)case3_A(NULL);
    (void)case4_A(case4_B(NULL));
    root5 = INTERIOR(case5_A(NULL));
    root6 = case6_A(INTERIOR(case6_B(NULL)));
    root7 = INTERIOR(case7_A(case7_B(NULL)));
    root8 = INTERIOR(case8_A(INTERIOR(case8_B(NULL))));
    (void)case9_A(INTERIOR(case9_B(NULL)));
}

int main(void) {
    make_cases();
    static const char msg[] = "cases: 9 chains made\n";
    write(1, msg, sizeof msg - 1);
    return 0;
}
