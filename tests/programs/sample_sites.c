/* Allocation sites with known totals, for `memlens run --sample` (tests/sampling.rs).
 *
 *   site_a: 256 MiB in 65,536 blocks of 4 KiB, each freed at once
 *   site_b: 64 MiB in 1,048,576 blocks of 64 B, freed 1,024 at a time
 *   site_c: 64 MiB in 64 blocks of 1 MiB, never freed (live at exit)
 *   site_d: a buffer grown by realloc 2,048 times by 256 B (256 B .. 512 KiB), then freed:
 *           256 * 2048 * 2049 / 2 = 537,133,056 bytes requested
 *   site_e: 64 MiB in 65,536 blocks of 1 KiB from calloc, each freed at once
 *
 * Every release is of a block glibc handed out, sampled or not: none is a heap error.
 * With an argument DIR, after site_c it waits (up to 60 s) until a file whose name starts
 * with "memlens-" appears in DIR (a profile `memlens run --pprof-every` wrote while the
 * program runs), then goes on. Prints "sample_sites done" at the end.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

static void *keep[64];
static void *volatile sink;

__attribute__((noinline)) static void site_a(void) {
    for (int i = 0; i < 65536; i++) {
        char *p = malloc(4096);
        p[0] = (char)i;
        sink = p;
        free(p);
    }
}

__attribute__((noinline)) static void site_b(void) {
    static void *batch[1024];
    for (int round = 0; round < 1024; round++) {
        for (int i = 0; i < 1024; i++) {
            batch[i] = malloc(64);
        }
        for (int i = 0; i < 1024; i++) {
            free(batch[i]);
        }
    }
}

__attribute__((noinline)) static void site_c(void) {
    for (int i = 0; i < 64; i++) {
        keep[i] = malloc(1 << 20);
        memset(keep[i], 1, 64);
    }
}

__attribute__((noinline)) static void site_d(void) {
    char *buf = NULL;
    for (int i = 1; i <= 2048; i++) {
        buf = realloc(buf, (size_t)i * 256);
        buf[0] = (char)i;
    }
    free(buf);
}

__attribute__((noinline)) static void site_e(void) {
    for (int i = 0; i < 65536; i++) {
        char *p = calloc(64, 16);
        sink = p;
        free(p);
    }
}

/* Wait until a profile appears in dir: 1 if one did, 0 after 60 s. */
static int wait_for_profile(const char *dir) {
    for (int tries = 0; tries < 6000; tries++) {
        DIR *d = opendir(dir);
        if (d) {
            struct dirent *e;
            int found = 0;
            while ((e = readdir(d)) != NULL) {
                if (strncmp(e->d_name, "memlens-", 8) == 0) {
                    found = 1;
                }
            }
            closedir(d);
            if (found) {
                return 1;
            }
        }
        usleep(10000);
    }
    return 0;
}

int main(int argc, char **argv) {
    site_a();
    site_b();
    site_c();
    if (argc > 1 && !wait_for_profile(argv[1])) {
        printf("no profile appeared in %s\n", argv[1]);
        return 1;
    }
    site_d();
    site_e();
    printf("sample_sites done\n");
    return 0;
}
