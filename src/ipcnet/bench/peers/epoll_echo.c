/* epoll_echo: the C peer for `ipcnet bench models`, a level-triggered epoll echo server.
 *
 * Usage: epoll_echo tcp HOST PORT | epoll_echo unix PATH
 * Prints "epoll_echo: echo listening on URL" to stderr when ready; SIGTERM or SIGINT stop
 * it (exit 0). Rules: one thread, non-blocking sockets, one read buffer shared by all
 * connections; bytes a peer cannot take yet are kept per connection and the connection
 * stops being read until they are sent (backpressure); EOF after everything was sent closes.
 * Compiled at bench time with `cc -O2`; no binary is ever committed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define BUF_SIZE (256 * 1024)
#define MAX_EVENTS 64

struct conn {
    int fd;
    char *pending; /* bytes read but not yet written back */
    size_t len, off;
};

static volatile sig_atomic_t stopping;
static char buf[BUF_SIZE];

static void on_signal(int sig) { (void)sig; stopping = 1; }

static void die(const char *what) { perror(what); exit(1); }

static void close_conn(int ep, struct conn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->pending);
    free(c);
}

static void watch(int ep, int op, struct conn *c, unsigned events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(ep, op, c->fd, &ev) < 0) die("epoll_ctl");
}

/* Write c->pending; 1 when all of it went, 0 when the socket is full, -1 on error. */
static int flush(struct conn *c) {
    while (c->off < c->len) {
        ssize_t n = send(c->fd, c->pending + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        c->off += (size_t)n;
    }
    c->len = c->off = 0;
    return 1;
}

/* Echo what is readable; 0 to keep the connection, -1 to close it. */
static int on_readable(int ep, struct conn *c) {
    ssize_t n = recv(c->fd, buf, sizeof buf, 0);
    if (n == 0) return -1;
    if (n < 0) return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    ssize_t sent = send(c->fd, buf, (size_t)n, MSG_NOSIGNAL);
    if (sent < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
        sent = 0;
    }
    if (sent < n) { /* keep the rest, stop reading until it is written */
        size_t rest = (size_t)(n - sent);
        c->pending = realloc(c->pending, rest);
        if (!c->pending) die("realloc");
        memcpy(c->pending, buf + sent, rest);
        c->len = rest;
        c->off = 0;
        watch(ep, EPOLL_CTL_MOD, c, EPOLLOUT);
    }
    return 0;
}

static int open_listener(int argc, char **argv, char *url, size_t url_size) {
    int fd, one = 1;
    if (argc == 4 && strcmp(argv[1], "tcp") == 0) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
        if (inet_pton(AF_INET, argv[2], &sa.sin_addr) != 1) {
            fprintf(stderr, "epoll_echo: not an IPv4 address: %s\n", argv[2]);
            exit(2);
        }
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket");
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
        socklen_t len = sizeof sa;
        getsockname(fd, (struct sockaddr *)&sa, &len);
        snprintf(url, url_size, "tcp://%s:%d", argv[2], ntohs(sa.sin_port));
    } else if (argc == 3 && strcmp(argv[1], "unix") == 0) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(argv[2]) >= sizeof sa.sun_path) {
            fprintf(stderr, "epoll_echo: unix path too long: %s\n", argv[2]);
            exit(2);
        }
        strcpy(sa.sun_path, argv[2]);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket");
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
        snprintf(url, url_size, "unix://%s", argv[2]);
    } else {
        fprintf(stderr, "usage: epoll_echo tcp HOST PORT | epoll_echo unix PATH\n");
        exit(2);
    }
    if (listen(fd, 1024) < 0) die("listen");
    return fd;
}

int main(int argc, char **argv) {
    char url[256];
    int lfd = open_listener(argc, argv, url, sizeof url);
    int is_tcp = strcmp(argv[1], "tcp") == 0;

    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: epoll_wait gets EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL}; /* NULL marks the listener */
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) die("epoll_ctl");

    fprintf(stderr, "epoll_echo: echo listening on %s\n", url);
    fflush(stderr);

    struct epoll_event events[MAX_EVENTS];
    while (!stopping) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) { /* accept everything that is waiting */
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    int one = 1;
                    if (is_tcp) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *nc = calloc(1, sizeof *nc);
                    if (!nc) die("calloc");
                    nc->fd = fd;
                    watch(ep, EPOLL_CTL_ADD, nc, EPOLLIN);
                }
                continue;
            }
            int status = 0;
            if (events[i].events & EPOLLOUT) {
                status = flush(c);
                if (status == 1) {
                    watch(ep, EPOLL_CTL_MOD, c, EPOLLIN); /* drained: read again */
                    status = 0;
                } else if (status == 0 && (events[i].events & (EPOLLERR | EPOLLHUP))) {
                    status = -1;
                }
            } else if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                status = on_readable(ep, c);
            }
            if (status < 0) close_conn(ep, c);
        }
    }
    close(lfd);
    if (!is_tcp) unlink(argv[2]);
    return 0;
}
