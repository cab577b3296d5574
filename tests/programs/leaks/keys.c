/* Every pthread key is the program's. main creates keys until pthread_key_create fails
 * (PTHREAD_KEYS_MAX = 1024 with glibc) and stores a 24-byte block in each; those blocks
 * are reachable through main's thread-specific data at exit (glibc runs no key
 * destructors for the thread that calls exit). A recorder that took a key for itself
 * would leave the program 1023 keys, and one block fewer. One block is dropped: definitely
 * lost. Prints the number of keys. */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void say_keys(int n) {
    char buf[64];
    int len = snprintf(buf, sizeof buf, "keys: %d\n", n);
    ssize_t w = write(1, buf, (size_t)len);
    (void)w;
}

__attribute__((noinline)) static void *key_value(void) { return malloc(24); }
__attribute__((noinline)) static void drop_one(void) {
    void *volatile p = malloc(100);
    p = NULL;
}

int main(void) {
    static pthread_key_t keys[PTHREAD_KEYS_MAX + 1];
    int n = 0;
    while (n <= PTHREAD_KEYS_MAX && pthread_key_create(&keys[n], free) == 0) {
        pthread_setspecific(keys[n], key_value());
        n++;
    }
    drop_one();
    say_keys(n);
    exit(0);
}
