/* Torture 4: 16 threads use the static TLS of a linked library (tls_static.c) and the
 * dynamic TLS of a dlopen'ed one (argv[1], tls_dynamic.c), 1,000 mallocs in each. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

long static_tls_work(int n);
static long (*dynamic_tls_work)(int);

static void *worker(void *arg) {
    (void)arg;
    long a = static_tls_work(1000);
    long b = dynamic_tls_work(1000);
    return (void *)(a + b);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    void *h = dlopen(argv[1], RTLD_NOW);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    dynamic_tls_work = (long (*)(int))dlsym(h, "dynamic_tls_work");
    pthread_t t[16];
    for (int i = 0; i < 16; i++) pthread_create(&t[i], NULL, worker, NULL);
    long sum = 0;
    for (int i = 0; i < 16; i++) {
        void *r;
        pthread_join(t[i], &r);
        sum += (long)r;
    }
    sum += static_tls_work(10) + dynamic_tls_work(10);
    dlclose(h);
    printf("tls: sum %ld\n", sum);
    return 0;
}
