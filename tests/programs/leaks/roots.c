/* What keeps a block alive at exit. argv[1] = "return" (default) or "exit":
 *   root_global_block     global --> block: still reachable                     400 B
 *   root_global_interior  global -?> block (start + 8) only: possibly lost      408 B
 *   chain_head/mid/tail   global --> head --> mid --> tail: all still reachable,
 *                         the chain a "why is this reachable" answer must show  416/424/432 B
 *   main_local_block      only pointer in a local of main (a volatile stack slot):
 *                         after "return" from main definitely lost (main's frame is gone);
 *                         after exit(0) inside main still reachable (main's frame is still
 *                         on the stack below exit's)                            440 B
 * Both variants exit with status 0. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct link {
    struct link *next;
};

void *volatile global_block;
void *volatile global_interior;
struct link *volatile chain_root;

#define BLOCK_FN(name, size)                                                               \
    __attribute__((noinline)) void *name(void) {                                           \
        void *p = malloc(size);                                                            \
        memset(p, 0, size);                                                                \
        return p;                                                                          \
    }

BLOCK_FN(root_global_block, 400)
BLOCK_FN(root_global_interior, 408)
BLOCK_FN(chain_head, 416)
BLOCK_FN(chain_mid, 424)
BLOCK_FN(chain_tail, 432)
BLOCK_FN(main_local_block, 440)

__attribute__((noinline)) void make_roots(void) {
    global_block = root_global_block();
    global_interior = (char *)root_global_interior() + 8;
    struct link *head = chain_head(), *mid = chain_mid(), *tail = chain_tail();
    head->next = mid;
    mid->next = tail;
    chain_root = head;
}

int main(int argc, char **argv) {
    int use_exit = argc > 1 && !strcmp(argv[1], "exit");
    make_roots();
    void *volatile local = main_local_block();
    static const char m1[] = "roots: return\n", m2[] = "roots: exit\n";
    if (use_exit) {
        write(1, m2, sizeof m2 - 1);
        exit(0);
    }
    write(1, m1, sizeof m1 - 1);
    (void)local;
    return 0;
}
