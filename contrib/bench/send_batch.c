/* send_batch.c: what one socket write costs on this machine, alone and inside
 * an io_uring batch: the measurement behind `io_uring on` (src/sendq.c).
 *
 * Opens N loopback TCP connection pairs (TCP_NODELAY), then for ROUNDS rounds
 * writes 100 bytes (two iovecs, like a response head and body) to each
 * sender and reads them back from each receiver: first with one writev(2)
 * per write, then with all N writes of a round as IORING_OP_SENDMSG entries
 * submitted by one io_uring_enter (MSG_DONTWAIT, as the gateway does). The
 * reads are the same read(2) calls in both and are timed apart. Prints the
 * process CPU time (user + system, getrusage) per write of each way, and the
 * per-syscall cost of getppid(2) for scale. Single process, loopback only,
 * bounded: N * ROUNDS writes each way.
 *
 * Usage: send_batch [N [ROUNDS]]   (defaults 20 and 10000)
 * Build: gcc -O2 -o build/bench/send_batch contrib/bench/send_batch.c -luring
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAXN 256

static double cpu_us(void)
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 +
           (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

static int drain(const int *fds, int n, char *buf, size_t len)
{
    for (int i = 0; i < n; i++)
        if (read(fds[i], buf, len) != 100)
            return -1;
    return 0;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 20, rounds = argc > 2 ? atoi(argv[2]) : 10000;
    if (n < 1 || n > MAXN || rounds < 1) {
        fprintf(stderr, "usage: send_batch [N (1..%d) [ROUNDS]]\n", MAXN);
        return 2;
    }
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(ls, MAXN) != 0 ||
        getsockname(ls, (struct sockaddr *)&sa, &sl) != 0) {
        perror("send_batch: listen");
        return 1;
    }
    int snd[MAXN], rcv[MAXN], one = 1;
    for (int i = 0; i < n; i++) {
        snd[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (snd[i] < 0 || connect(snd[i], (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
            (rcv[i] = accept(ls, NULL, NULL)) < 0) {
            perror("send_batch: connect");
            return 1;
        }
        setsockopt(snd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    char buf[4096];
    memset(buf, 'x', sizeof(buf));
    struct iovec iov[2] = {{buf, 60}, {buf + 100, 40}};

    double t0 = cpu_us();
    for (int i = 0; i < 200000; i++)
        syscall(SYS_getppid);
    double per_syscall = (cpu_us() - t0) / 200000;

    double reads = 0, r0;
    t0 = cpu_us();
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < n; i++)
            if (writev(snd[i], iov, 2) != 100)
                return perror("send_batch: writev"), 1;
        r0 = cpu_us();
        if (drain(rcv, n, buf, sizeof(buf)) != 0)
            return fprintf(stderr, "send_batch: short read\n"), 1;
        reads += cpu_us() - r0;
    }
    double direct = (cpu_us() - t0 - reads) / ((double)rounds * n);

    struct io_uring ring;
    struct io_uring_params p = {.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
                                         IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN};
    int rc = io_uring_queue_init_params(MAXN, &ring, &p);
    if (rc < 0) {
        fprintf(stderr, "send_batch: io_uring: %s\n", strerror(-rc));
        return 1;
    }
    struct msghdr mh[MAXN];
    reads = 0;
    t0 = cpu_us();
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < n; i++) {
            memset(&mh[i], 0, sizeof(mh[i]));
            mh[i].msg_iov = iov;
            mh[i].msg_iovlen = 2;
            io_uring_prep_sendmsg(io_uring_get_sqe(&ring), snd[i], &mh[i],
                                  MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        if (io_uring_submit_and_wait(&ring, (unsigned)n) != n)
            return fprintf(stderr, "send_batch: submit failed\n"), 1;
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            if (cqe->res != 100)
                return fprintf(stderr, "send_batch: send: %d\n", cqe->res), 1;
            seen++;
        }
        io_uring_cq_advance(&ring, seen);
        r0 = cpu_us();
        if (drain(rcv, n, buf, sizeof(buf)) != 0)
            return fprintf(stderr, "send_batch: short read\n"), 1;
        reads += cpu_us() - r0;
    }
    double batched = (cpu_us() - t0 - reads) / ((double)rounds * n);
    io_uring_queue_exit(&ring);

    printf("getppid: %.2f us per syscall\n", per_syscall);
    printf("writev: %.2f us per write\n", direct);
    printf("io_uring batch of %d: %.2f us per write (%.2fx less)\n", n, batched, direct / batched);
    return 0;
}
