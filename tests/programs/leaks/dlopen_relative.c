/* A library dlopen'ed by a relative path, after which the program changes directory:
 * chdir to this executable's directory, dlopen("./leak_plugin.so") (built from
 * leak_plugin.c, next to the executable), chdir("/"), then call plugin_leak (1100 B,
 * definitely lost) and plugin_keep (1200 B, held by the library's global: still
 * reachable). The library stays loaded. ld.so's own blocks for it hold the path as given,
 * "./leak_plugin.so" (16 characters), so their sizes do not depend on the directory.
 * The loader knows the library only as "./leak_plugin.so": a tool that keeps that name
 * cannot find the file again from any other directory to name the leaking function.
 * Build with -ldl on glibc < 2.34 (dlopen is in libc since 2.34). */
#include <dlfcn.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

static void say(const char *s) { write(1, s, strlen(s)); }

int main(void) {
    char dir[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (n <= 0) return 2;
    dir[n] = 0;
    *strrchr(dir, '/') = 0;
    if (chdir(dir) != 0) return 2;
    void *h = dlopen("./leak_plugin.so", RTLD_NOW);
    if (!h || chdir("/") != 0) {
        say("dlopen failed\n");
        return 1;
    }
    void (*leak)(void) = (void (*)(void))dlsym(h, "plugin_leak");
    void (*keep)(void) = (void (*)(void))dlsym(h, "plugin_keep");
    leak();
    keep();
    say("dlopen: ./leak_plugin.so kept\n");
    return 0;
}
