/* A program that execs itself again ("again" as argv[1] in the new image), after doing
 * what argv[1] says to the environment:
 *   unset     unsetenv("LD_PRELOAD"), then execv
 *   replace   LD_PRELOAD set to another library (libm), then execv
 *   emptyenv  execve with an environment of its own: {"A=1", NULL}
 *   keep      execv with the environment unchanged
 *   shell     through a shell: execl("/bin/sh", "sh", "-c", "exec \"$0\" again", argv[0])
 * Each image mallocs 77 bytes; the new one also leaks 1000 bytes and exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *keep[2];

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    keep[0] = malloc(77);
    if (!strcmp(mode, "again")) {
        keep[1] = malloc(1000);
        keep[1] = 0;
        printf("new image\n");
        return 0;
    }
    char *args[] = {argv[0], "again", NULL};
    if (!strcmp(mode, "unset")) {
        unsetenv("LD_PRELOAD");
    } else if (!strcmp(mode, "replace")) {
        setenv("LD_PRELOAD", "libm.so.6", 1);
    } else if (!strcmp(mode, "emptyenv")) {
        char *env[] = {"A=1", NULL};
        execve(argv[0], args, env);
        return 99;
    } else if (!strcmp(mode, "shell")) {
        execl("/bin/sh", "sh", "-c", "exec \"$0\" again", argv[0], (char *)NULL);
        return 99;
    } else if (strcmp(mode, "keep")) {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    execv(argv[0], args);
    return 99; /* the exec failed */
}
