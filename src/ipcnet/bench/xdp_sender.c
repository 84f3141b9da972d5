/* The load for `ipcnet bench xdp`: small UDP datagrams with sendmmsg, as fast as one CPU can.
 *
 * usage: xdp_sender DST_IPV4 PORT SECONDS CPU PAYLOAD_BYTES
 * Pins itself to CPU, sends batches of 64 datagrams to DST:PORT until SECONDS have passed,
 * then prints "sent N" on stdout. ENOBUFS/EAGAIN (a full queue) are counted, not fatal.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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
	struct sockaddr_in dst = {.sin_family = AF_INET};
	struct mmsghdr msgs[BATCH];
	struct iovec iov;
	char payload[1500] = {0};
	unsigned long long sent = 0, full = 0;
	double end;
	cpu_set_t cpus;
	size_t size;
	int fd, i;

	if (argc != 6) {
		fprintf(stderr, "usage: %s DST_IPV4 PORT SECONDS CPU PAYLOAD_BYTES\n", argv[0]);
		return 2;
	}
	CPU_ZERO(&cpus);
	CPU_SET(atoi(argv[4]), &cpus);
	if (sched_setaffinity(0, sizeof(cpus), &cpus) != 0)
		perror("sched_setaffinity");
	size = (size_t)atoi(argv[5]);
	if (size > sizeof(payload))
		size = sizeof(payload);
	if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", argv[1]);
		return 2;
	}
	dst.sin_port = htons(atoi(argv[2]));
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&dst, sizeof(dst)) != 0) {
		perror("socket/connect");
		return 1;
	}
	iov.iov_base = payload;
	iov.iov_len = size;
	memset(msgs, 0, sizeof(msgs));
	for (i = 0; i < BATCH; i++) {
		msgs[i].msg_hdr.msg_iov = &iov;
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	end = now() + atof(argv[3]);
	while (now() < end) {
		int n = sendmmsg(fd, msgs, BATCH, 0);

		if (n > 0)
			sent += n;
		else if (errno == ENOBUFS || errno == EAGAIN || errno == ECONNREFUSED)
			full++;
		else {
			perror("sendmmsg");
			return 1;
		}
	}
	printf("sent %llu full %llu\n", sent, full);
	return 0;
}
