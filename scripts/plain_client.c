// A plain HTTP client for scripts/bench_wrk.py: GET PATH over one keep-alive connection to
// 127.0.0.1:PORT for SECONDS, each request sent as soon as the last response is whole, timed with
// CLOCK_MONOTONIC from write to the last byte. Prints "requests p50 p99 p99.9 max" (ms) of the
// requests as timed, then p50 p99 p99.9 corrected for coordinated omission as wrk corrects them.
//
// Why two sets of figures: a client that waits for each response before it sends the next one
// times a stall of the server once, however long it lasts, while a client asking at random
// moments (a monitor polling) would meet it once per request it sent meanwhile. wrk corrects for
// that before it prints (stats_correct: a request that took x gets copies of x - k * interval,
// k = 1, 2, ... while above the interval, the run's mean time per request). During a catch-up
// the two differ by 3-15x (BENCHMARKS.md, sessions 14 and 15); a client this small leaves
// nothing of its own in either.
//
// Build: cc -O2 -o plain_client plain_client.c     Usage: plain_client PORT SECONDS [PATH]
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: plain_client PORT SECONDS [PATH]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    double seconds = atof(argv[2]);
    const char *path = argc > 3 ? argv[3] : "/api/stats";
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001)};
    if (connect(fd, (struct sockaddr *)&to, sizeof to) != 0) {
        perror("connect");
        return 1;
    }
    char request[512];
    int length = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", path, port);
    size_t cap = 1 << 22, n = 0;
    double *took = malloc(cap * sizeof *took);
    static char buf[1 << 16];
    double started = now();
    while (n < cap && now() - started < seconds) {
        double sent = now();
        if (write(fd, request, length) != length) {
            perror("write");
            return 1;
        }
        size_t got = 0, head = 0;
        long body = -1;
        for (;;) {
            ssize_t r = read(fd, buf + got, sizeof buf - 1 - got);
            if (r <= 0) {
                fprintf(stderr, r == 0 ? "connection closed\n" : "read failed\n");
                return 1;
            }
            got += r;
            buf[got] = 0;
            if (body < 0) {
                char *end = strstr(buf, "\r\n\r\n"), *cl = strcasestr(buf, "content-length:");
                if (end && cl) {
                    head = end + 4 - buf;
                    body = atol(cl + 15);
                }
            }
            if (body >= 0 && got >= head + body) break;
        }
        took[n++] = (now() - sent) * 1e3;
    }
    if (n == 0) return 1;
    double interval = (now() - started) * 1e3 / n;
    size_t m = n, room = 2 * n;
    double *all = malloc(room * sizeof *all);
    memcpy(all, took, n * sizeof *took);
    for (size_t i = 0; i < n; i++)
        for (double x = took[i] - interval; took[i] >= 2 * interval && x > interval; x -= interval) {
            if (m == room) all = realloc(all, (room *= 2) * sizeof *all);
            all[m++] = x;
        }
    qsort(took, n, sizeof *took, by_value);
    qsort(all, m, sizeof *all, by_value);
    printf("%zu %.3f %.3f %.3f %.3f %.3f %.3f %.3f\n", n, took[n / 2], took[(size_t)(n * 0.99)],
           took[(size_t)(n * 0.999)], took[n - 1], all[m / 2], all[(size_t)(m * 0.99)], all[(size_t)(m * 0.999)]);
    return 0;
}
