/* libaev conformance - Unix stream servers and connections
 * (loop.create_unix_server, loop.create_unix_connection): echo over a socket
 * file and over Linux's abstract namespace, the stale socket file rule, the
 * socket file removed at close (cleanup_socket), and clear errors. */
#include "test_util.h"

#include <sys/stat.h>
#include <sys/un.h>

typedef struct peer {
    aev_protocol_t proto;
    aev_transport_t *transport;
    int server;
    size_t got;
    char buf[64];
    int *lost_count;
} peer_t;

static int made(aev_protocol_t *p, aev_transport_t *t)
{
    peer_t *x = (peer_t *)p;
    x->transport = t;
    if (!x->server)
        return aev_transport_write(t, "hello unix", 10);
    return 0;
}

static int data(aev_protocol_t *p, const void *b, size_t n)
{
    peer_t *x = (peer_t *)p;
    if (x->server)
        return aev_transport_write(x->transport, b, n);
    memcpy(x->buf + x->got, b, n < sizeof x->buf - x->got ? n : sizeof x->buf - x->got);
    x->got += n;
    if (x->got >= 10)
        aev_transport_close(x->transport);
    return 0;
}

static int lost_stop_count;

static int lost(aev_protocol_t *p, int error)
{
    peer_t *x = (peer_t *)p;
    (void)error;
    if (!x->server) {
        ck_assert_int_eq(x->got, 10);
        ck_assert_int_eq(memcmp(x->buf, "hello unix", 10), 0);
        lost_stop_count++;
        aev_loop_stop(aev_transport_get_loop(x->transport));
    }
    free(x);
    return 0;
}

static aev_protocol_t *factory(void *userdata)
{
    peer_t *x = calloc(1, sizeof *x);
    ck_assert_ptr_nonnull(x);
    x->server = (int)(intptr_t)userdata;
    x->proto.connection_made = made;
    x->proto.data_received = data;
    x->proto.connection_lost = lost;
    return &x->proto;
}

static void echo_once(aev_loop_t *loop, const char *path)
{
    aev_future_t *cf = NULL;
    ck_assert_int_eq(aev_loop_create_unix_connection(loop, factory, (void *)0, path, NULL, &cf), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, cf), 0);
    void *t = NULL;
    ck_assert_int_eq(aev_future_result(cf, &t), 0);
    ck_assert_ptr_nonnull(t);
    lost_stop_count = 0;
    aev_loop_run_forever(loop); /* until the client's connection_lost */
    ck_assert_int_eq(lost_stop_count, 1);
    aev_future_unref(cf);
}

static void temp_path(char *buf, size_t size)
{
    tu_unix_path(buf, size);
}

START_TEST(test_unix_echo_file)
{
    aev_loop_t *loop = tu_loop_new();
    char path[108];
    temp_path(path, sizeof path);
    aev_future_t *sf = NULL;
    ck_assert_int_eq(aev_loop_create_unix_server(loop, factory, (void *)1, path, NULL, &sf), 0);
    ck_assert(aev_future_done(sf));
    void *srv = NULL;
    ck_assert_int_eq(aev_future_result(sf, &srv), 0);
    int fd = -1;
    ck_assert_int_eq(aev_server_sockets(srv, &fd, 1), 1);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    echo_once(loop, path);
    echo_once(loop, path);
    aev_server_close(srv);
    ck_assert_int_ne(stat(path, &st), 0); /* cleanup_socket: the file went with the server */
    aev_future_unref(sf);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_unix_echo_abstract)
{
    aev_loop_t *loop = tu_loop_new();
    char path[64];
    snprintf(path, sizeof path, "@aev-test-%d", (int)getpid());
    aev_future_t *sf = NULL;
    ck_assert_int_eq(aev_loop_create_unix_server(loop, factory, (void *)1, path, NULL, &sf), 0);
    echo_once(loop, path);
    /* a second server on the same abstract name is refused, with the name in the detail */
    aev_future_t *sf2 = NULL;
    int rc = aev_loop_create_unix_server(loop, factory, (void *)1, path, NULL, &sf2);
    ck_assert_int_eq(rc, -EADDRINUSE);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), path + 1));
    ck_assert_ptr_null(sf2);
    aev_future_unref(sf);
    tu_loop_free(loop);
}
END_TEST

/* A socket file left by a server that died is removed; any other file at the path is kept
 * and the bind fails with a clear error. */
START_TEST(test_unix_stale_socket_and_other_file)
{
    aev_loop_t *loop = tu_loop_new();
    char path[108];
    temp_path(path, sizeof path);
    int old = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "%s", path);
    ck_assert_int_eq(bind(old, (struct sockaddr *)&un, sizeof un), 0);
    close(old); /* the file stays: a stale socket */
    aev_future_t *sf = NULL;
    ck_assert_int_eq(aev_loop_create_unix_server(loop, factory, (void *)1, path, NULL, &sf), 0);
    echo_once(loop, path);
    aev_future_unref(sf); /* the last reference closes the server: the file goes */
    struct stat st;
    ck_assert_int_ne(stat(path, &st), 0);

    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("not a socket", f);
    fclose(f);
    sf = NULL;
    int rc = aev_loop_create_unix_server(loop, factory, (void *)1, path, NULL, &sf);
    ck_assert_int_eq(rc, -EADDRINUSE);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), path));
    ck_assert_int_eq(stat(path, &st), 0); /* a regular file is never removed */
    ck_assert(S_ISREG(st.st_mode));
    unlink(path);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_unix_errors)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *f = NULL;
    char longpath[200];
    memset(longpath, 'x', sizeof longpath - 1);
    longpath[sizeof longpath - 1] = '\0';
    ck_assert_int_eq(aev_loop_create_unix_server(loop, factory, NULL, longpath, NULL, &f), -EINVAL);
    ck_assert_int_eq(aev_loop_create_unix_server(loop, factory, NULL, "", NULL, &f), -EINVAL);
    ck_assert_int_eq(aev_loop_create_unix_connection(loop, factory, NULL, longpath, NULL, &f), -EINVAL);
    ck_assert_int_eq(aev_loop_create_unix_connection(loop, factory, NULL, "@", NULL, &f), -EINVAL);
    /* nobody listens there: the future fails with the path in its detail */
    char path[108];
    temp_path(path, sizeof path);
    ck_assert_int_eq(aev_loop_create_unix_connection(loop, factory, NULL, path, NULL, &f), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, f), -ENOENT);
    ck_assert_ptr_nonnull(strstr(aev_future_error_detail(f), path));
    aev_future_unref(f);
    tu_loop_free(loop);
}
END_TEST

static Suite *unix_stream_suite(void)
{
    Suite *s = suite_create("unix_stream");
    TU_ADD(s, test_unix_echo_file);
    TU_ADD(s, test_unix_echo_abstract);
    TU_ADD(s, test_unix_stale_socket_and_other_file);
    TU_ADD(s, test_unix_errors);
    return s;
}

TU_MAIN(unix_stream_suite)
