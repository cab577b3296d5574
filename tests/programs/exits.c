/* Ends in the way named by argv[1]: return, exit3, _exit4, abort, segv, kill9; or
 * sleep300: sleeps 300 ms without allocating, then returns 0. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *how = argc > 1 ? argv[1] : "return";
    void *volatile p = malloc(77);
    (void)p;
    printf("ending by %s\n", how);
    fflush(stdout);
    if (!strcmp(how, "exit3")) exit(3);
    if (!strcmp(how, "_exit4")) _exit(4);
    if (!strcmp(how, "abort")) abort();
    if (!strcmp(how, "segv")) { volatile int *z = (int *)16; *z = 1; }
    if (!strcmp(how, "kill9")) kill(getpid(), SIGKILL);
    if (!strcmp(how, "sleep300")) usleep(300000);
    return 0;
}
