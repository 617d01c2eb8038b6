/* Test driver for examples/signals: runs the example, waits until it says its
 * handlers are in place ("pid N: send SIGINT or SIGTERM to exit."), sends it
 * the signal named on the command line, and checks that it printed
 * "got signal <NAME>: exit" and exited with status 0 (not killed by the
 * signal, not left running for its hour).
 *
 * usage: run_signal_example <path to signals> SIGTERM|SIGINT
 * Exits 0 on success, 1 on failure (with the reason and the output on stderr). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LIMIT_SECONDS 20.0

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char output[8192];
static size_t output_len;

static int fail(const char *why)
{
    fprintf(stderr, "run_signal_example: %s\n--- output of the example ---\n%.*s---\n", why,
            (int)output_len, output);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[2], "SIGTERM") != 0 && strcmp(argv[2], "SIGINT") != 0)) {
        fprintf(stderr, "usage: %s <signals example> SIGTERM|SIGINT\n", argv[0]);
        return 2;
    }
    int sig = strcmp(argv[2], "SIGTERM") == 0 ? SIGTERM : SIGINT;
    int out[2];
    if (pipe(out) < 0) {
        perror("pipe");
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        /* the example starts as a shell would start it: nothing blocked, defaults */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        dup2(out[1], STDOUT_FILENO);
        close(out[0]);
        close(out[1]);
        execl(argv[1], argv[1], (char *)NULL);
        perror("execl");
        _exit(127);
    }
    close(out[1]);

    double deadline = now() + LIMIT_SECONDS;
    int sent = 0, eof = 0;
    while (!eof) {
        double left = deadline - now();
        if (left <= 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            return fail(sent ? "the example did not exit after the signal"
                             : "the example never said it was ready");
        }
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        int n = poll(&p, 1, (int)(left * 1000) + 1);
        if (n < 0 && errno != EINTR) {
            perror("poll");
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            return 1;
        }
        if (n <= 0)
            continue;
        if (output_len == sizeof output - 1) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            return fail("too much output");
        }
        ssize_t r = read(out[0], output + output_len, sizeof output - 1 - output_len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            eof = 1;
            continue;
        }
        output_len += (size_t)r;
        output[output_len] = '\0';
        if (!sent && strstr(output, ": send SIGINT or SIGTERM to exit.\n")) {
            if (kill(pid, sig) < 0) {
                perror("kill");
                return 1;
            }
            sent = 1;
        }
    }
    close(out[0]);
    int status;
    if (waitpid(pid, &status, 0) < 0) {
        perror("waitpid");
        return 1;
    }
    char expect[64], pidline[64];
    snprintf(expect, sizeof expect, "got signal %s: exit\n", argv[2]);
    snprintf(pidline, sizeof pidline, "pid %ld: send SIGINT or SIGTERM to exit.\n", (long)pid);
    if (WIFSIGNALED(status))
        return fail(WTERMSIG(status) == sig ? "the example was killed by the signal: no handler"
                                            : "the example was killed by a signal");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return fail("the example exited with a non-zero status");
    if (!sent)
        return fail("the example exited before it said it was ready");
    if (!strstr(output, "Event loop running for 1 hour, press Ctrl+C to interrupt.\n") ||
        !strstr(output, pidline))
        return fail("the example's greeting is missing or names another pid");
    if (!strstr(output, expect))
        return fail("the example did not report the signal");
    fputs(output, stdout);
    return 0;
}
