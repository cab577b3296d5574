/* A program whose SIGALRM handler calls _exit(3) (or exit(4) with argument "exit") while
 * the main thread allocates and frees in a loop: the signal lands inside malloc or free
 * most of the time, so under memlens inside the recorder's hooks. Expected: the process
 * ends with the handler's status, every time, never hangs. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t use_exit;

static void on_alarm(int sig) {
    (void)sig;
    if (use_exit)
        exit(4);
    _exit(3);
}

int main(int argc, char **argv) {
    use_exit = argc > 1 && !strcmp(argv[1], "exit");
    signal(SIGALRM, on_alarm);
    struct itimerval t = {{0, 0}, {0, 20000}};
    setitimer(ITIMER_REAL, &t, 0);
    for (;;) {
        void *volatile p = malloc(48);
        void *volatile q = malloc(4096);
        free(p);
        free(q);
    }
}
