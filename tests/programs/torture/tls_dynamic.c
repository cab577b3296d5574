/* Torture 4: a dlopen'ed library with dynamic TLS (general-dynamic: __tls_get_addr, which
 * allocates each thread's block with malloc on first use). */
#include <stdlib.h>
static __thread long counter;
static __thread char buffer[65536];
long dynamic_tls_work(int n) {
    for (int i = 0; i < n; i++) {
        void *p = malloc(56);
        buffer[(i * 97) % 65536] = (char)(i | 1);
        counter += buffer[(i * 97) % 65536] != 0;
        free(p);
    }
    return counter;
}
