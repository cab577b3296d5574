/* The C part of the memlens recorder.
 *
 * 1. Per-thread state in initial-exec TLS. Rust's thread_local! in a cdylib uses the
 *    general-dynamic model (__tls_get_addr), which may call malloc: a hook using it can
 *    recurse. Initial-exec TLS is a fixed offset from %fs, safe inside malloc. It works
 *    because the library is loaded at start-up through LD_PRELOAD, never dlopen'ed.
 */
#define _GNU_SOURCE
#include <stddef.h>

struct memlens_tls {
    int busy;       /* > 0 while this thread is inside the recorder */
    int exiting;    /* the thread's state was torn down at thread exit */
    void *state;    /* the thread's ThreadState, or NULL */
    int live_shard; /* 1 + the live-table shard this thread has locked, or 0 */
    int pending_n;  /* live-table operations queued by a re-entered hook */
    unsigned long long pending[8][2];
};

static __thread struct memlens_tls tls __attribute__((tls_model("initial-exec")));

__attribute__((visibility("hidden"))) struct memlens_tls *memlens_tls(void) { return &tls; }


/* 2. Where the program's own exit()/_exit()/_Exit() were called from: the caller's stack
 *    pointer and its callee-saved registers, which the leak scan uses as roots (memcheck
 *    sees them too: they are saved in the frames of exit's machinery). Naked stubs store
 *    them, then jump to the Rust implementation. */
struct memlens_regs {
    unsigned long long rbx, rbp, r12, r13, r14, r15, sp;
};
__attribute__((visibility("hidden"))) struct memlens_regs memlens_exit_regs;

#define MEMLENS_EXIT_STUB(name, impl)                                   \
    __attribute__((naked, visibility("default"))) void name(int status __attribute__((unused))) { \
        __asm__("movq %rbx, memlens_exit_regs+0(%rip)\n\t"              \
                "movq %rbp, memlens_exit_regs+8(%rip)\n\t"              \
                "movq %r12, memlens_exit_regs+16(%rip)\n\t"             \
                "movq %r13, memlens_exit_regs+24(%rip)\n\t"             \
                "movq %r14, memlens_exit_regs+32(%rip)\n\t"             \
                "movq %r15, memlens_exit_regs+40(%rip)\n\t"             \
                "leaq 8(%rsp), %rax\n\t"                                \
                "movq %rax, memlens_exit_regs+48(%rip)\n\t"             \
                "jmp " #impl "@PLT\n\t");                               \
    }

MEMLENS_EXIT_STUB(exit, memlens_exit_impl)
MEMLENS_EXIT_STUB(_exit, memlens_uexit_impl)
MEMLENS_EXIT_STUB(_Exit, memlens_uexit2_impl)

/* 3. main's frame. After main returns, glibc calls exit() itself (not through the PLT),
 *    and main's locals are dead: the scan must start above main's frame, as memcheck's
 *    does. __libc_start_main is interposed to call main through a trampoline that records
 *    its own stack pointer once main has returned. */
#include <dlfcn.h>

typedef int (*memlens_main_fn)(int, char **, char **);
static memlens_main_fn memlens_real_main;
__attribute__((visibility("hidden"))) unsigned long long memlens_main_returned_sp;

static int memlens_main(int argc, char **argv, char **envp) {
    int r = memlens_real_main(argc, argv, envp);
    unsigned long long sp;
    __asm__ volatile("movq %%rsp, %0" : "=r"(sp));
    memlens_main_returned_sp = sp;
    return r;
}

typedef int (*memlens_start_fn)(memlens_main_fn, int, char **, void (*)(void), void (*)(void),
                                void (*)(void), void *);

__attribute__((visibility("default"))) int
__libc_start_main(memlens_main_fn main, int argc, char **argv, void (*init)(void),
                  void (*fini)(void), void (*rtld_fini)(void), void *stack_end) {
    memlens_start_fn real = (memlens_start_fn)dlsym(RTLD_NEXT, "__libc_start_main");
    memlens_real_main = main;
    return real(memlens_main, argc, argv, init, fini, rtld_fini, stack_end);
}
