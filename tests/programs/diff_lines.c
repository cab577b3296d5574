/* Two allocation sites in one function, for `memlens diff` (tests/profile_cli.rs): with
 * argument N, N blocks of 100 bytes from the first malloc line and 2N of 200 bytes from
 * the second, all kept to the end. Built a second time with -DREBUILT (one more call
 * above them: another build, with another build id), for the case where lines cannot be
 * trusted to match across the two traces. */
#include <stdio.h>
#include <stdlib.h>

static void *keep[3000];

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1;
    if (n > 1000)
        return 2;
#ifdef REBUILT
    printf("rebuilt\n");
#endif
    for (int i = 0; i < n; i++)
        keep[i] = malloc(100); /* first site */
    for (int i = 0; i < 2 * n; i++)
        keep[1000 + i] = malloc(200); /* second site */
    printf("kept %d\n", 3 * n);
    return 0;
}
