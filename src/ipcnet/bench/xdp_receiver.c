/* The C userspace receiver for `ipcnet bench xdp`: read and discard every datagram.
 *
 * usage: xdp_receiver PORT SECONDS CPU
 * Pins itself to CPU, binds UDP PORT, prints "ready" once bound, reads with recvmmsg (64 per
 * call) until SECONDS have passed since the first datagram or 1 s without one, then prints
 * "received N".
 */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#define BATCH 64

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = {.sin_family = AF_INET};
	static char bufs[BATCH][2048];
	struct mmsghdr msgs[BATCH];
	struct iovec iovs[BATCH];
	struct timeval tv = {.tv_sec = 1};
	unsigned long long received = 0;
	double end = 0;
	cpu_set_t cpus;
	int fd, i, big = 4 << 20;

	if (argc != 4) {
		fprintf(stderr, "usage: %s PORT SECONDS CPU\n", argv[0]);
		return 2;
	}
	CPU_ZERO(&cpus);
	CPU_SET(atoi(argv[3]), &cpus);
	if (sched_setaffinity(0, sizeof(cpus), &cpus) != 0)
		perror("sched_setaffinity");
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	addr.sin_port = htons(atoi(argv[1]));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
		perror("bind");
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	memset(msgs, 0, sizeof(msgs));
	for (i = 0; i < BATCH; i++) {
		iovs[i].iov_base = bufs[i];
		iovs[i].iov_len = sizeof(bufs[i]);
		msgs[i].msg_hdr.msg_iov = &iovs[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	for (;;) {
		int n = recvmmsg(fd, msgs, BATCH, 0, NULL);

		if (n <= 0)
			break; /* SO_RCVTIMEO: a second without a datagram */
		if (!received)
			end = now() + atof(argv[2]);
		received += n;
		if (now() >= end)
			break;
	}
	printf("received %llu\n", received);
	return 0;
}
