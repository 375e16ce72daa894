/* Native crash sites for tests/programs/native_crash.py, loaded with ctypes (no Python.h).
 * Built by the tests (tests/native_builds.py) with -O1 -g; every function keeps its own frame
 * (noinline) so that signatures can name it. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* strlen of a pointer the compiler cannot see is NULL (volatile), so the call stays. */
__attribute__((noinline)) size_t call_strlen(const char *text) {
    const char *volatile p = text;
    size_t n = strlen(p);
    return n + 1;
}

__attribute__((noinline)) void *abort_worker(void *arg) {
    (void)arg;
    abort();
}

__attribute__((noinline)) void *strlen_worker(void *arg) {
    return (void *)call_strlen((const char *)arg);
}

/* A native thread that the interpreter does not know, started from C. */
int start_native_thread(int strlen_instead_of_abort) {
    pthread_t thread;
    return pthread_create(&thread, NULL, strlen_instead_of_abort ? strlen_worker : abort_worker,
                          NULL);
}
