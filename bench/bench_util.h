/* bench_util.h - helpers of the libaev micro-benchmarks.
 *
 * These programs are contenders for the peer benchmark kit in
 * ../../shared/bench (see its README.md), but this repository builds on its
 * own, so the conventions of that kit's bench_common.h are re-stated here:
 *  - the same clocks: `seconds` is process CPU time (user+sys) of the
 *    measured phase, `wall_s` is monotonic wall time of the same phase;
 *  - the same pseudo-random generator (xorshift64*) and the same two
 *    derivations, so bench_random_ms(n, 42) gives the same timeouts and
 *    bench_random_perm(n, 7) the same cancel order as every peer;
 *  - the same one-line report on stdout;
 *  - a pipe whose read end is watched and never becomes readable, because a
 *    real program always watches at least one descriptor;
 *  - exit status 2 with a message on stderr for bad arguments.
 */
#ifndef AEV_BENCH_UTIL_H
#define AEV_BENCH_UTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pipe2 */
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Prints a message to stderr and exits 2 (bad arguments, impossible setup). */
static inline void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

/* Monotonic wall clock, in seconds. */
static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Process CPU time (user+sys, all threads), in seconds. */
static inline double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* xorshift64* (Vigna): one step of the state, scrambled output. */
static inline uint64_t bench_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * UINT64_C(0x2545F4914F6CDD1D);
}

/* n timeouts in whole milliseconds, uniform in [1, 1000]: 1 + rand % 1000. */
static inline uint32_t *bench_random_ms(size_t n, uint64_t seed)
{
    uint32_t *ms = malloc((n ? n : 1) * sizeof *ms);
    if (!ms)
        bench_die("out of memory");
    for (size_t i = 0; i < n; i++)
        ms[i] = 1 + (uint32_t)(bench_rand(&seed) % 1000);
    return ms;
}

/* A permutation of 0..n-1: Fisher-Yates from the top, j = rand % i. */
static inline uint32_t *bench_random_perm(size_t n, uint64_t seed)
{
    uint32_t *p = malloc((n ? n : 1) * sizeof *p);
    if (!p)
        bench_die("out of memory");
    for (size_t i = 0; i < n; i++)
        p[i] = (uint32_t)i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(bench_rand(&seed) % i);
        uint32_t t = p[i - 1];
        p[i - 1] = p[j];
        p[j] = t;
    }
    return p;
}

/* calloc and touch every page, so that page faults stay out of a measurement. */
static inline void *bench_alloc(size_t n, size_t size)
{
    if (n && size > SIZE_MAX / n)
        bench_die("out of memory (%zu x %zu bytes)", n, size);
    unsigned char *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        bench_die("out of memory (%zu x %zu bytes)", n, size);
    for (size_t i = 0; i < n * size; i += 4096)
        p[i] = 0;
    return p;
}

/* A decimal unsigned argument; anything else is a usage error. */
static inline uint64_t bench_parse_u64(const char *s, const char *what)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-')
        bench_die("bad %s: '%s'", what, s);
    return (uint64_t)v;
}

/* The never-readable pipe: its read end is watched, nothing is ever written. */
static inline void bench_idle_pipe(int fds[2])
{
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        bench_die("pipe2: %s", strerror(errno));
}

/* The one output line of a micro-benchmark, in the peers' format:
 * name= ops= seconds=<cpu> ops_per_sec= wall_s= [extra key=value fields]. */
static inline void bench_report(const char *name, uint64_t ops, double cpu, double wall,
                                const char *extra)
{
    printf("name=%s ops=%llu seconds=%.6f ops_per_sec=%.1f wall_s=%.6f%s%s\n", name,
           (unsigned long long)ops, cpu, cpu > 0 ? (double)ops / cpu : 0.0, wall,
           extra && *extra ? " " : "", extra ? extra : "");
    fflush(stdout);
}

#endif /* AEV_BENCH_UTIL_H */
