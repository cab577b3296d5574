/* Frees everything it allocates (including through realloc and a thread): memcheck
 * reports "All heap blocks were freed -- no leaks are possible". Nothing may be reported
 * here, whatever the kind. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((noinline)) void *clean_block(size_t n) {
    void *p = malloc(n);
    memset(p, 1, n);
    return p;
}

static void *worker(void *arg) {
    free(clean_block(64));
    return arg;
}

int main(void) {
    void *blocks[16];
    for (int i = 0; i < 16; i++)
        blocks[i] = clean_block(16 * (i + 1));
    blocks[3] = realloc(blocks[3], 4000);
    for (int i = 0; i < 16; i++)
        free(blocks[i]);
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    pthread_join(t, NULL);
    static const char msg[] = "clean: all freed\n";
    write(1, msg, sizeof msg - 1);
    return 0;
}
