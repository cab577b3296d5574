/* dlopen plugin.so (path in argv[1]), call plugin_alloc (4242 B, kept), dlclose. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    void *h = dlopen(argv[1], RTLD_NOW);
    if (!h) { fprintf(stderr, "%s\n", dlerror()); return 1; }
    void *(*f)(void) = (void *(*)(void))dlsym(h, "plugin_alloc");
    void *volatile p = f();
    (void)p;
    dlclose(h);
    printf("dlopen done\n");
    return 0;
}
