/* A thread loads and unloads a library (argv[1]) in a loop, as plugin and NSS loading do,
 * while main exits: the exit scan stops that thread wherever it is, possibly inside
 * dlopen holding ld.so's lock, and must not wait for that lock itself. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *lib;
static atomic_long rounds;

static void *loader(void *arg) {
    for (;;) {
        void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
        if (h)
            dlclose(h);
        atomic_fetch_add(&rounds, 1);
    }
    return arg;
}

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    lib = argv[1];
    pthread_t t;
    pthread_create(&t, NULL, loader, NULL);
    while (atomic_load(&rounds) < 50)
        usleep(100);
    printf("exiting while a thread loads libraries\n");
    fflush(stdout);
    exit(0);
}
