/* Torture 4: a linked library with initial-exec (static) TLS. */
#include <stdlib.h>
static __thread long counter;
static __thread char buffer[4096];
long static_tls_work(int n) {
    for (int i = 0; i < n; i++) {
        void *p = malloc(40);
        buffer[i % 4096] = (char)i;
        counter += buffer[i % 4096] != 0;
        free(p);
    }
    return counter;
}
