// Torture 3: unusual control flow. argv[1] picks the case.
//   signal      10,000 raise(SIGALRM); the handler mallocs a block and frees the previous
//   longjmp     100 times: recurse 100 deep, each frame mallocs, longjmp out of the bottom
//   exceptions  1,000 throws through 100 frames, each frame holding a std::string
//   cancel      pthread_cancel of a thread blocked in read() and one in pthread_cond_wait
//   running     8 threads still allocating in a loop when main returns
#include <atomic>
#include <csetjmp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <pthread.h>
#include <stdexcept>
#include <string>
#include <unistd.h>

void *volatile sink;

static void *held;
static volatile sig_atomic_t handled;
static void on_alarm(int) {
    void *p = malloc(64);
    free(held);
    held = p;
    handled = handled + 1;
}

static jmp_buf env;
static void *blocks[100 * 100];
static int nblocks;
__attribute__((noinline)) static void dive(int depth) {
    blocks[nblocks++] = malloc(32 + depth);
    if (depth == 0) longjmp(env, 1);
    dive(depth - 1);
    sink = blocks[0];  // not a tail call
}

__attribute__((noinline)) static int deep_throw(int depth) {
    std::string s(40 + depth % 20, 'x');  // heap (beyond the small-string buffer)
    if (depth == 0) throw std::runtime_error("bottom of the stack reached " + s);
    return deep_throw(depth - 1) + (int)s.size();
}

static int pipefd[2];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static std::atomic<int> blocked{0};
static void *reader(void *) {
    char c;
    void *p = malloc(100);
    sink = p;
    blocked++;
    ssize_t r = read(pipefd[0], &c, 1);  // blocks forever: nobody writes
    sink = (void *)r;
    return nullptr;
}
static void unlock(void *) { pthread_mutex_unlock(&mu); }
static void *waiter(void *) {
    pthread_mutex_lock(&mu);
    pthread_cleanup_push(unlock, nullptr);
    blocked++;
    for (;;) pthread_cond_wait(&cv, &mu);
    pthread_cleanup_pop(1);
    return nullptr;
}

static std::atomic<long> spins{0};
static void *spinner(void *) {
    for (;;) {
        void *p = malloc(48);
        sink = p;
        free(p);
        spins++;
    }
    return nullptr;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "signal")) {
        signal(SIGALRM, on_alarm);
        for (int i = 0; i < 10000; i++) raise(SIGALRM);
        free(held);
        printf("signal: handled %d\n", (int)handled);
    } else if (!strcmp(mode, "longjmp")) {
        int jumps = 0;
        for (int i = 0; i < 100; i++) {
            if (setjmp(env) == 0) dive(99);
            jumps++;
        }
        for (int i = 0; i < nblocks; i++) free(blocks[i]);
        printf("longjmp: %d jumps, %d blocks\n", jumps, nblocks);
    } else if (!strcmp(mode, "exceptions")) {
        int caught = 0;
        for (int i = 0; i < 1000; i++) {
            try {
                deep_throw(99);
            } catch (const std::runtime_error &e) {
                caught += strncmp(e.what(), "bottom", 6) == 0;
            }
        }
        printf("exceptions: caught %d\n", caught);
    } else if (!strcmp(mode, "cancel")) {
        if (pipe(pipefd)) abort();
        pthread_t r, w;
        pthread_create(&r, nullptr, reader, nullptr);
        pthread_create(&w, nullptr, waiter, nullptr);
        while (blocked.load() < 2) sched_yield();
        // Each thread is in (or about to enter) its blocking call, a cancellation point.
        pthread_cancel(r);
        pthread_cancel(w);
        void *rr, *wr;
        pthread_join(r, &rr);
        pthread_join(w, &wr);
        printf("cancel: reader %s, waiter %s\n", rr == PTHREAD_CANCELED ? "cancelled" : "returned",
               wr == PTHREAD_CANCELED ? "cancelled" : "returned");
    } else if (!strcmp(mode, "running")) {
        pthread_t t[8];
        for (auto &x : t) pthread_create(&x, nullptr, spinner, nullptr);
        while (spins.load() < 8000) sched_yield();
        printf("running: main returns with 8 threads allocating\n");
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    return 0;
}
