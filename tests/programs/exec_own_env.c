/* Execs itself with an environment of its own making: LD_PRELOAD kept as it was (so the
 * new image loads the recorder), everything else replaced by FOO=custom, after a chdir to
 * argv[1]. The new image (argv[1] "child") leaks 4,444 bytes and exits 9. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *volatile g_sink;

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        g_sink = malloc(4444);
        g_sink = NULL;
        printf("child FOO=%s\n", getenv("FOO"));
        return 9;
    }
    if (argc < 2)
        return 2;
    char pre[4096];
    const char *lp = getenv("LD_PRELOAD");
    snprintf(pre, sizeof pre, "LD_PRELOAD=%s", lp ? lp : "");
    char *env[] = {pre, "FOO=custom", NULL};
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return 3;
    self[n] = 0;
    char *av[] = {argv[0], "child", NULL};
    if (chdir(argv[1]) != 0)
        return 4;
    execve(self, av, env);
    perror("execve");
    return 1;
}
