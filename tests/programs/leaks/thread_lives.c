/* Threads whose memory is live although their stack pointer says little about it.
 * argv[1]:
 *   unjoined  a worker returns a 77-byte block and ends; main exits without joining it.
 *             The only pointer is the thread's return value, which glibc keeps in the
 *             thread's descriptor, at the top of its (dead) stack mapping, for
 *             pthread_join: still reachable.
 *   fiber     a thread switches (swapcontext) to a fiber on a stack of its own and spins
 *             there at exit; a 3000-byte block is held by a __thread variable and a
 *             500-byte block by a local of the frame it switched from. Both live in the
 *             thread's own stack mapping, which its stack pointer is not in: still
 *             reachable.
 *   redzone   a thread spins in a leaf function that keeps the only pointer to a 64-byte
 *             block in its red zone (below the stack pointer): still reachable.
 * Plus one 24-byte block dropped for real in each mode: definitely lost. Prints the mode
 * with write(2) once the threads are where they must be. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

static atomic_int ready;
static void say(const char *s) { ssize_t n = write(1, s, strlen(s)); (void)n; }

__attribute__((noinline)) static void drop_one(void) {
    void *volatile p = malloc(24);
    p = NULL;
}

static void *unjoined_worker(void *arg) {
    char *r = malloc(77);
    memset(r, 1, 77);
    atomic_store(&ready, 1);
    return arg ? arg : r;
}

static __thread void *volatile fiber_tls;
static ucontext_t fiber_ctx, thread_ctx;

static void fiber_main(void) {
    atomic_store(&ready, 1);
    for (;;)
        __asm__ volatile("pause" ::: "memory");
}

static void *fiber_thread(void *arg) {
    fiber_tls = malloc(3000);
    void *volatile local = malloc(500);
    static char fiber_stack[64 * 1024];
    getcontext(&fiber_ctx);
    fiber_ctx.uc_stack.ss_sp = fiber_stack;
    fiber_ctx.uc_stack.ss_size = sizeof fiber_stack;
    fiber_ctx.uc_link = NULL;
    makecontext(&fiber_ctx, fiber_main, 0);
    swapcontext(&thread_ctx, &fiber_ctx);
    return (void *)local;
}

/* A leaf function (no call, so the compiler may use the red zone): the pointer is
 * stored at -8(%rsp) and the register cleared, then it spins. */
__attribute__((noinline)) static void spin_with_red_zone(void *p) {
    __asm__ volatile("movq %0, -8(%%rsp)\n\t"
                     "xorl %k0, %k0\n\t"
                     "movl $1, ready(%%rip)\n\t"
                     "1: pause\n\t"
                     "jmp 1b\n\t"
                     : "+r"(p)
                     :
                     : "memory");
}

__attribute__((noinline)) static void *redzone_block(void) { return malloc(64); }

static void *redzone_thread(void *arg) {
    spin_with_red_zone(redzone_block());
    return arg;
}

int main(int argc, char **argv) {
    const char *how = argc > 1 ? argv[1] : "unjoined";
    pthread_t t;
    drop_one();
    if (!strcmp(how, "unjoined"))
        pthread_create(&t, NULL, unjoined_worker, NULL);
    else if (!strcmp(how, "fiber"))
        pthread_create(&t, NULL, fiber_thread, NULL);
    else if (!strcmp(how, "redzone"))
        pthread_create(&t, NULL, redzone_thread, NULL);
    else
        return 2;
    while (!atomic_load(&ready))
        usleep(100);
    if (!strcmp(how, "unjoined"))
        usleep(20000); /* let the worker finish its exit */
    say(how);
    say("\n");
    exit(0);
}
