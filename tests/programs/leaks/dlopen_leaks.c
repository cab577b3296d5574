/* Leaks made inside a library loaded with dlopen. The library, leak_plugin.so (built
 * from leak_plugin.c), must be in the same directory as this executable; argv[1]:
 *   keep   dlopen, call plugin_leak and plugin_keep, keep the library loaded
 *   close  the same, then dlclose the library before returning
 * Build with -ldl on glibc < 2.34 (dlopen is in libc since 2.34). */
#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void say(const char *s) { write(1, s, strlen(s)); }

int main(int argc, char **argv) {
    int do_close = argc > 1 && !strcmp(argv[1], "close");
    char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 32);
    if (n <= 0) return 2;
    path[n] = 0;
    char *slash = strrchr(path, '/');
    strcpy(slash + 1, "leak_plugin.so");
    void *h = dlopen(path, RTLD_NOW);
    if (!h) {
        say("dlopen failed\n");
        return 1;
    }
    void (*leak)(void) = (void (*)(void))dlsym(h, "plugin_leak");
    void (*keep)(void) = (void (*)(void))dlsym(h, "plugin_keep");
    leak();
    keep();
    if (do_close) {
        dlclose(h);
        say("dlopen: plugin closed\n");
    } else {
        say("dlopen: plugin kept\n");
    }
    return 0;
}
