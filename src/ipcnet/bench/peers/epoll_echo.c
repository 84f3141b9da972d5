/* epoll_echo: the C peer of `ipcnet bench models`, a level-triggered epoll echo server.
 * Usage: epoll_echo tcp HOST PORT | epoll_echo unix PATH. Prints "epoll_echo: echo listening
 * on URL" to stderr when ready; SIGTERM or SIGINT stop it (exit 0). Rules: one thread,
 * non-blocking sockets, one read buffer for all connections; bytes a peer cannot take yet
 * are kept per connection, which is not read until they are sent (backpressure); EOF closes.
 * Compiled at bench time with `cc -O2`; no binary is ever committed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/un.h>
#include <unistd.h>

struct conn { int fd; char *pending; size_t len, off; }; /* pending: read, not yet sent */
static volatile sig_atomic_t stopping;
static char buf[256 * 1024];

static void on_signal(int sig) { (void)sig; stopping = 1; }
static void die(const char *what) { perror(what); exit(1); }
static int again(void) { return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR; }

static void watch(int ep, int op, struct conn *c, unsigned events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(ep, op, c->fd, &ev) < 0) die("epoll_ctl");
}

/* Send c->pending: 1 when all of it went, 0 when the socket is full, -1 on error. */
static int flush(struct conn *c) {
    while (c->off < c->len) {
        ssize_t n = send(c->fd, c->pending + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (n < 0) return again() ? 0 : -1;
        c->off += (size_t)n;
    }
    c->len = c->off = 0;
    return 1;
}

/* Echo what is readable, keeping what the peer cannot take yet: 0 keeps, -1 closes. */
static int on_readable(int ep, struct conn *c) {
    ssize_t n = recv(c->fd, buf, sizeof buf, 0), sent;
    if (n <= 0) return n < 0 && again() ? 0 : -1;
    if ((sent = send(c->fd, buf, (size_t)n, MSG_NOSIGNAL)) < 0) {
        if (!again()) return -1;
        sent = 0;
    }
    if (sent < n) {
        c->len = (size_t)(n - sent), c->off = 0;
        if (!(c->pending = realloc(c->pending, c->len))) die("realloc");
        memcpy(c->pending, buf + sent, c->len);
        watch(ep, EPOLL_CTL_MOD, c, EPOLLOUT);
    }
    return 0;
}

static int open_listener(int argc, char **argv, char *url, size_t size) {
    int fd, one = 1, tcp = argc == 4 && strcmp(argv[1], "tcp") == 0;
    struct sockaddr_in in = {.sin_family = AF_INET};
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    socklen_t len = tcp ? sizeof in : sizeof un;
    if (tcp) {
        in.sin_port = htons((uint16_t)atoi(argv[3]));
        if (inet_pton(AF_INET, argv[2], &in.sin_addr) != 1) {
            fprintf(stderr, "epoll_echo: not an IPv4 address: %s\n", argv[2]);
            exit(2);
        }
    } else if (argc != 3 || strcmp(argv[1], "unix") != 0 || strlen(argv[2]) >= sizeof un.sun_path) {
        fprintf(stderr, "usage: epoll_echo tcp HOST PORT | epoll_echo unix PATH (< 108 bytes)\n");
        exit(2);
    } else {
        strcpy(un.sun_path, argv[2]);
    }
    struct sockaddr *sa = tcp ? (struct sockaddr *)&in : (struct sockaddr *)&un;
    if ((fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) die("socket");
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, sa, len) < 0 || listen(fd, 1024) < 0 || getsockname(fd, sa, &len) < 0) die("bind");
    if (tcp) snprintf(url, size, "tcp://%s:%d", argv[2], ntohs(in.sin_port));
    else snprintf(url, size, "unix://%s", argv[2]);
    return fd;
}

int main(int argc, char **argv) {
    char url[256];
    int lfd = open_listener(argc, argv, url, sizeof url), is_tcp = argv[1][0] == 't', one = 1;
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: epoll_wait gets EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event events[64], lev = {.events = EPOLLIN, .data.ptr = NULL}; /* NULL: listener */
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) die("epoll");
    fprintf(stderr, "epoll_echo: echo listening on %s\n", url);
    while (!stopping) {
        int n = epoll_wait(ep, events, 64, -1);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            unsigned ev = events[i].events;
            int fd, status = 0;
            if (c == NULL) { /* accept everything that is waiting */
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (is_tcp) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    if (!(c = calloc(1, sizeof *c))) die("calloc");
                    c->fd = fd;
                    watch(ep, EPOLL_CTL_ADD, c, EPOLLIN);
                }
                continue;
            }
            if (ev & EPOLLOUT) {
                status = flush(c);
                if (status == 1) watch(ep, EPOLL_CTL_MOD, c, EPOLLIN); /* drained: read again */
                status = status == 0 && (ev & (EPOLLERR | EPOLLHUP)) ? -1 : status < 0 ? -1 : 0;
            } else if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                status = on_readable(ep, c);
            }
            if (status < 0) {
                close(c->fd); /* leaves the epoll set */
                free(c->pending);
                free(c);
            }
        }
    }
    close(lfd);
    if (!is_tcp) unlink(argv[2]);
    return 0;
}
