/*
 * Fault injection for the tests: preloaded into uWSGI (LD_PRELOAD), it holds every accepted
 * connection SLOW_ACCEPT_US microseconds (default 20,000) before accept() returns it. That widens
 * the moment between a worker taking a connection and starting its request, so a test can prove
 * that a worker told to leave in that moment still serves the connection.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static void hold(void) {
    const char *value = getenv("SLOW_ACCEPT_US");
    usleep(value ? (useconds_t) atoi(value) : 20000);
}

int accept4(int fd, struct sockaddr *address, socklen_t *length, int flags) {
    static int (*real)(int, struct sockaddr *, socklen_t *, int);
    if (!real) {
        real = (int (*)(int, struct sockaddr *, socklen_t *, int)) dlsym(RTLD_NEXT, "accept4");
    }
    int connection = real(fd, address, length, flags);
    if (connection >= 0) {
        hold();
    }
    return connection;
}

int accept(int fd, struct sockaddr *address, socklen_t *length) {
    static int (*real)(int, struct sockaddr *, socklen_t *);
    if (!real) {
        real = (int (*)(int, struct sockaddr *, socklen_t *)) dlsym(RTLD_NEXT, "accept");
    }
    int connection = real(fd, address, length);
    if (connection >= 0) {
        hold();
    }
    return connection;
}
