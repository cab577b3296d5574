/* Allocation sites through C++'s operators, with known totals, for `memlens run --sample`
 * (tests/sampling.rs):
 *
 *   site_new:       64 MiB in 65,536 `new Block` of 1 KiB, each deleted at once
 *   site_new_array: 256 MiB in 65,536 `new char[4096]`, each delete[]d at once
 *   site_nothrow:   64 MiB in 32,768 `new (std::nothrow) char[2048]`, each delete[]d
 *   site_keep:      64 MiB in 64 `new char[1 MiB]`, never deleted (live at exit)
 *
 * Every release is of a block the operators handed out, sampled or not: none is a heap
 * error. With the argument "oom" it then limits its address space (RLIMIT_AS) to 64 MiB
 * more than it uses and asks 8 times for `new char[256 MiB]`: each must call the
 * program's new-handler once and then throw std::bad_alloc; a null pointer must never
 * reach the program. Then 8 times `new (std::nothrow) char[256 MiB]`: each must call the
 * new-handler once and return null. The limit is lifted again afterwards. Prints
 * "sample_sites_cxx done" (and, with "oom", "new_handler=N bad_alloc=M" and
 * "nothrow: new_handler=N null=M" before it).
 */
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <sys/resource.h>

struct Block {
    char bytes[1024];
};

static char *keep[64];
static void *volatile sink;

__attribute__((noinline)) static void site_new() {
    for (int i = 0; i < 65536; i++) {
        Block *b = new Block;
        b->bytes[0] = (char)i;
        sink = b;
        delete b;
    }
}

__attribute__((noinline)) static void site_new_array() {
    for (int i = 0; i < 65536; i++) {
        char *p = new char[4096];
        p[0] = (char)i;
        sink = p;
        delete[] p;
    }
}

__attribute__((noinline)) static void site_nothrow() {
    for (int i = 0; i < 32768; i++) {
        char *p = new (std::nothrow) char[2048];
        if (!p)
            abort();
        p[0] = (char)i;
        sink = p;
        delete[] p;
    }
}

__attribute__((noinline)) static void site_keep() {
    for (int i = 0; i < 64; i++) {
        keep[i] = new char[1 << 20];
        memset(keep[i], 1, 64);
    }
}

static int handler_calls;

static void on_no_memory() {
    handler_calls++;
    // The next failure throws.
    std::set_new_handler(nullptr);
}

/* Bytes of address space in use (VmSize), or 0. */
static unsigned long long vm_size() {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    unsigned long long kib = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %llu kB", &kib) == 1)
            break;
    fclose(f);
    return kib * 1024;
}

__attribute__((noinline)) static void out_of_memory() {
    struct rlimit old;
    if (getrlimit(RLIMIT_AS, &old) != 0)
        abort();
    struct rlimit low = old;
    low.rlim_cur = vm_size() + (64ull << 20);
    if (setrlimit(RLIMIT_AS, &low) != 0)
        abort();
    int thrown = 0;
    for (int i = 0; i < 8; i++) {
        std::set_new_handler(on_no_memory);
        try {
            char *p = new char[256u << 20];
            // Never: the limit leaves no room for it.
            printf("new returned %p\n", (void *)p);
            abort();
        } catch (const std::bad_alloc &) {
            thrown++;
        }
    }
    /* The nothrow form runs the new-handler too (libstdc++'s calls the throwing form),
     * then returns null. */
    int nulls = 0, before = handler_calls;
    for (int i = 0; i < 8; i++) {
        std::set_new_handler(on_no_memory);
        char *p = new (std::nothrow) char[256u << 20];
        if (p)
            abort();
        nulls++;
    }
    std::set_new_handler(nullptr);
    if (setrlimit(RLIMIT_AS, &old) != 0)
        abort();
    printf("new_handler=%d bad_alloc=%d\n", before, thrown);
    printf("nothrow: new_handler=%d null=%d\n", handler_calls - before, nulls);
}

int main(int argc, char **argv) {
    site_new();
    site_new_array();
    site_nothrow();
    site_keep();
    if (argc > 1 && strcmp(argv[1], "oom") == 0)
        out_of_memory();
    printf("sample_sites_cxx done\n");
    return 0;
}
