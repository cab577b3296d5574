/* Torture 4: dlopen + dlsym + call + dlclose of argv[1] (dlplugin.c) 1,000 times. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long total = 0;
    for (int i = 0; i < 1000; i++) {
        void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            fprintf(stderr, "dlopen: %s\n", dlerror());
            return 1;
        }
        long (*f)(int) = (long (*)(int))dlsym(h, "plugin_work");
        if (!f) return 1;
        total += f(10);
        if (dlclose(h)) return 1;
    }
    printf("dlloop: 1000 rounds, total %ld\n", total);
    return 0;
}
