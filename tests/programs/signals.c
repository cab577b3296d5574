/* Fatal signals under memlens: the leak check still runs, the program still dies by its
 * signal, and the program's own view of its signal dispositions is unchanged.
 *
 * argv[1]:
 *   segv     lose 777 bytes, keep 1000, then write through a null pointer (SIGSEGV)
 *   reset    install a SIGINT handler, put back SIG_DFL, lose 777 bytes, raise(SIGINT)
 *   handler  the program's own SIGTERM handler prints and calls _exit(3)
 *   query    print what sigaction()/signal() report for SIGTERM, SIGUSR1 and SIGPIPE
 *   loop     lose 777 bytes, keep 100 x 1000 bytes, print "ready PID", then allocate
 *            and free forever (until killed from outside)
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *volatile kept[100];

__attribute__((noinline)) static void lose(void) {
    void *volatile p = malloc(777);
    memset(p, 1, 777);
    p = 0;
}

/* Zero the dead stack below the caller: the recorder's frames under lose()'s malloc left
 * copies of its pointer there, and a signal landing while the loop is inside malloc
 * would find them above its stack pointer (Valgrind's leak tests scrub the same way). */
__attribute__((noinline)) static void scrub(void) {
    volatile char area[16384];
    memset((char *)area, 0, sizeof area);
}

static void on_term(int sig) {
    (void)sig;
    static const char msg[] = "handled\n";
    write(1, msg, sizeof msg - 1);
    _exit(3);
}

static void on_int(int sig) { (void)sig; }

static const char *name(void (*h)(int)) {
    return h == SIG_DFL ? "default" : h == SIG_IGN ? "ignore" : "handler";
}

int main(int argc, char **argv) {
    const char *how = argc > 1 ? argv[1] : "segv";
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!strcmp(how, "segv")) {
        lose();
        kept[0] = malloc(1000);
        puts("segv");
        *(volatile int *)0 = 1;
    } else if (!strcmp(how, "reset")) {
        signal(SIGINT, on_int);
        signal(SIGINT, SIG_DFL);
        lose();
        puts("reset");
        raise(SIGINT);
    } else if (!strcmp(how, "handler")) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_term;
        sigaction(SIGTERM, &sa, NULL);
        lose();
        raise(SIGTERM);
    } else if (!strcmp(how, "query")) {
        struct sigaction old;
        sigaction(SIGTERM, NULL, &old);
        printf("SIGTERM %s flags %d\n", name(old.sa_handler), old.sa_flags & ~0x04000000);
        void (*prev)(int) = signal(SIGUSR1, on_int);
        printf("SIGUSR1 was %s\n", name(prev));
        prev = signal(SIGUSR1, SIG_DFL);
        printf("SIGUSR1 was %s\n", name(prev));
        prev = signal(SIGUSR1, SIG_DFL);
        printf("SIGUSR1 was %s\n", name(prev));
        sigaction(SIGPIPE, NULL, &old);
        printf("SIGPIPE %s\n", name(old.sa_handler));
    } else if (!strcmp(how, "loop")) {
        lose();
        scrub();
        for (int i = 0; i < 100; i++) kept[i] = malloc(1000);
        printf("ready %d\n", (int)getpid());
        for (;;) {
            void *volatile p = malloc(64);
            free(p);
        }
    }
    return 0;
}
