/* A block whose only pointer is in a vector register of a running thread. The thread
 * moves the pointer from a global into xmm0, clears the global, and spins in a loop that
 * touches no register but a counter; main exits while it spins. memlens scans the stopped
 * thread's xmm registers: the block is still reachable. memcheck scans general-purpose
 * registers only and calls it definitely lost (a deliberate difference, see
 * docs/LEAK_CHECK.md). A second block, dropped for real, is definitely lost in both. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

static void *volatile handoff;
static atomic_int ready;

static void *spin(void *arg) {
    __asm__ volatile("movq handoff(%%rip), %%xmm0\n\t"
                     "movq $0, handoff(%%rip)\n\t" ::: "xmm0", "memory");
    atomic_store(&ready, 1);
    __asm__ volatile("1: pause\n\t"
                     "jmp 1b\n\t" ::: "memory");
    return arg;
}

__attribute__((noinline)) static void *in_register(void) { return malloc(96); }
__attribute__((noinline)) static void *dropped(void) { return malloc(24); }

int main(void) {
    handoff = in_register();
    void *volatile gone = dropped();
    gone = NULL;
    pthread_t t;
    pthread_create(&t, NULL, spin, NULL);
    while (!atomic_load(&ready))
        usleep(100);
    ssize_t n = write(1, "spinning\n", 9);
    (void)n;
    exit(0);
}
