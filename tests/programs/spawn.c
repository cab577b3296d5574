/* Process creation and signals. argv[1] is a program to start (a dynamically linked one).
 *   - a SIGUSR1 handler allocates 32 B, 100 times (raise() from main code);
 *   - posix_spawn(argv[1] "spawned"), vfork()+execv(argv[1] "vforked"), system("exit 7");
 * Prints each child's exit status; with argv[1] = exits (which prints "ending by MODE"):
 *   signals 100 / ending by spawned / posix_spawn 0 / ending by vforked / vfork 0 / system 7 */
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
void *kept[100];
volatile int handled;

__attribute__((noinline)) void on_signal(int sig) {
    (void)sig;
    kept[handled++] = malloc(32);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    signal(SIGUSR1, on_signal);
    for (int i = 0; i < 100; i++) raise(SIGUSR1);
    printf("signals %d\n", handled);
    fflush(stdout);

    pid_t pid;
    char *a1[] = {argv[1], "spawned", NULL};
    int st;
    if (posix_spawn(&pid, argv[1], NULL, NULL, a1, environ) != 0) return 3;
    waitpid(pid, &st, 0);
    printf("posix_spawn %d\n", WEXITSTATUS(st));
    fflush(stdout);

    char *a2[] = {argv[1], "vforked", NULL};
    pid = vfork();
    if (pid == 0) {
        execv(argv[1], a2);
        _exit(127);
    }
    waitpid(pid, &st, 0);
    printf("vfork %d\n", WEXITSTATUS(st));
    fflush(stdout);

    st = system("exit 7");
    printf("system %d\n", WEXITSTATUS(st));
    return 0;
}
