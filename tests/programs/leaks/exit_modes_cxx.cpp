// exit_modes.c for a C++ program: libstdc++ allocates its emergency exception-handling
// pool (72,704 bytes with this libstdc++, (anonymous namespace)::pool::pool, called from a
// static constructor) before main and never frees it itself. At the exit_group system
// call (after return, exit() or _exit) valgrind runs __gnu_cxx::__freeres and
// __libc_freeres, which free it, so memcheck does not show it; when the process dies by a
// signal it does not, and the pool is still reachable.
// argv[1]: "return" (default), "_exit" (_exit(4)) or "sigterm" (raise(SIGTERM)).
// One 700-byte block is definitely lost (cxx_lost_block). Prints with write(2), so there
// is no stdio buffer.
#include <csignal>
#include <cstring>
#include <unistd.h>

template <class T> static inline void escape(T *p) { __asm__ volatile("" : : "r"(p) : "memory"); }

__attribute__((noinline)) void cxx_lost_block() {
    char *p = new char[700];
    memset(p, 0, 700);
    escape(p);
}

static void say(const char *s) { write(1, s, strlen(s)); }

// Zero the dead stack below main's frame before dying by a signal, as Valgrind's own leak
// tests do: raise()'s frame lies there, and whatever its uninitialised slots still hold
// from earlier calls (the allocation's frames, a preloaded allocator's) is scanned as part
// of a live frame by any conservative scanner.
__attribute__((noinline)) static void scrub_stack() {
    volatile char dead[8192];
    memset(const_cast<char *>(dead), 0, sizeof dead);
}

int main(int argc, char **argv) {
    const char *how = argc > 1 ? argv[1] : "return";
    cxx_lost_block();
    if (!strcmp(how, "_exit")) {
        say("exit_modes_cxx: ending by _exit\n");
        _exit(4);
    }
    if (!strcmp(how, "sigterm")) {
        say("exit_modes_cxx: ending by sigterm\n");
        scrub_stack();
        raise(SIGTERM);
    }
    say("exit_modes_cxx: ending by return\n");
    return 0;
}
