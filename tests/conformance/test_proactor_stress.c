/* libaev conformance - transports and servers under stress (issue 5, "correctness under
 * stress"), through the public API: the engine ABI side is tests/engine/test_io_uring.c.
 *
 *  - a completion queue far too small for the traffic: 200 connections echoing through a
 *    server on the same loop, with [poll.io_uring] entries = 4 (a 16-entry CQ);
 *  - transports closed and aborted while their receives are in flight and peers keep sending,
 *    then the loop closed with transports still open;
 *  - pause_reading/resume_reading on every chunk of a 4 MiB stream (each pause cancels a
 *    receive in flight whose data may race the cancel);
 *  - abort() with a send in flight (a slow reader): the write buffer stays until the send's
 *    final completion;
 *  - a server closed while clients keep connecting and its multishot accept is in flight.
 *
 * Every test runs on every plugin set. On a selector loop the same paths run over readiness
 * watchers (the behaviour asserted is asyncio's either way); on the proactor they run as
 * native io_uring operations, where cancel answers "the final completion is still to come".
 * The tests wait for events (connection_lost, a peer's EOF, futures), never for time; each
 * has a guard timer that fails it instead of hanging. Run them under valgrind and ASan on
 * the proactor: an early free shows up there (see docs/design.md, "Stress tests"). */
#include "test_util.h"

#include <limits.h>

/* ---- the byte pattern: depends on the connection and the offset, so that a byte of another
 * connection, a chunk repeated, lost or reordered, is seen ---------------------------------- */

static inline unsigned char pat(unsigned id, size_t off)
{
    uint32_t x = (uint32_t)off * 2654435761u + id * 0x9E3779B9u;
    x ^= x >> 13;
    return (unsigned char)(x >> 5);
}

static void pat_fill(unsigned char *buf, unsigned id, size_t off, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = pat(id, off + i);
}

/* Index of the first byte of data (at stream offset off) that is not the pattern, or -1. */
static long pat_check(const unsigned char *data, unsigned id, size_t off, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (data[i] != pat(id, off + i))
            return (long)i;
    return -1;
}

/* ---- a recording protocol ------------------------------------------------------------- */

typedef struct stress stress_t;
typedef struct conn conn_t;

struct conn {
    aev_protocol_t proto; /* first: the callbacks get &conn->proto */
    stress_t *st;
    aev_transport_t *t;   /* valid from connection_made to connection_lost */
    unsigned id;          /* the pattern it receives */
    int made, lost, lost_error, eofs;
    size_t got;           /* bytes received */
    long bad_at;          /* first wrong byte's offset, or -1 */
    int verify;           /* check what arrives against pat(id) */
    int echo;             /* write back what arrives */
    int closed_by_test;   /* the test closed or aborted it */
    int after_close;      /* data deliveries after that */
    int paused;           /* the test paused reading and has not resumed yet */
    int while_paused;     /* data/eof deliveries while paused */
    unsigned chunks;
    unsigned char bbuf[7001]; /* a buffered protocol's buffer (an odd size on purpose) */
};

struct stress {
    aev_loop_t *loop;
    conn_t *conns;
    int nconns;
    int nserver, server_first; /* server-side conns are handed out from conns[server_first] */
    int made, lost, hups;
    int stop_made, stop_lost, stop_hups; /* stop the loop when a total reaches this (0: never) */
    void (*on_made)(conn_t *c);
    void (*on_data)(conn_t *c);
    void (*on_lost)(conn_t *c);
};

static void maybe_stop(stress_t *st)
{
    if ((st->stop_made && st->made == st->stop_made) || (st->stop_lost && st->lost == st->stop_lost) ||
        (st->stop_hups && st->hups == st->stop_hups))
        aev_loop_stop(st->loop);
}

static int c_made(aev_protocol_t *p, aev_transport_t *t)
{
    conn_t *c = (conn_t *)p;
    c->made++;
    c->t = t;
    c->st->made++;
    if (c->st->on_made)
        c->st->on_made(c);
    maybe_stop(c->st);
    return 0;
}

/* One delivery of n bytes at data (the bytes are checked and counted here). */
static void c_bytes(conn_t *c, const void *data, size_t n)
{
    if (c->closed_by_test)
        c->after_close++;
    if (c->paused)
        c->while_paused++;
    if (c->verify && c->bad_at < 0) {
        long bad = pat_check(data, c->id, c->got, n);
        if (bad >= 0)
            c->bad_at = (long)c->got + bad;
    }
    c->got += n;
    c->chunks++;
    if (c->echo)
        ck_assert_int_eq(aev_transport_write(c->t, data, n), 0);
    if (c->st->on_data)
        c->st->on_data(c);
}

static int c_data(aev_protocol_t *p, const void *data, size_t n)
{
    c_bytes((conn_t *)p, data, n);
    return 0;
}

static void *c_get_buffer(aev_protocol_t *p, size_t hint, size_t *size)
{
    conn_t *c = (conn_t *)p;
    (void)hint;
    *size = sizeof c->bbuf;
    return c->bbuf;
}

static int c_updated(aev_protocol_t *p, size_t n)
{
    conn_t *c = (conn_t *)p;
    ck_assert_uint_le(n, sizeof c->bbuf);
    c_bytes(c, c->bbuf, n);
    return 0;
}

static int c_eof(aev_protocol_t *p)
{
    conn_t *c = (conn_t *)p;
    if (c->paused)
        c->while_paused++;
    c->eofs++;
    return 0; /* close */
}

static int c_lost(aev_protocol_t *p, int error)
{
    conn_t *c = (conn_t *)p;
    c->lost++;
    c->lost_error = error;
    c->st->lost++;
    if (c->st->on_lost)
        c->st->on_lost(c);
    c->t = NULL;
    maybe_stop(c->st);
    return 0;
}

static void stress_init(stress_t *st, aev_loop_t *loop, int n)
{
    memset(st, 0, sizeof *st);
    st->loop = loop;
    st->nconns = n;
    st->conns = calloc((size_t)n, sizeof *st->conns);
    ck_assert_ptr_nonnull(st->conns);
    for (int i = 0; i < n; i++) {
        conn_t *c = &st->conns[i];
        c->st = st;
        c->id = (unsigned)i;
        c->bad_at = -1;
        c->proto.connection_made = c_made;
        c->proto.data_received = c_data;
        c->proto.eof_received = c_eof;
        c->proto.connection_lost = c_lost;
    }
}

/* connect_accepted_socket's factory: userdata is the conn. */
static aev_protocol_t *conn_factory(void *userdata)
{
    return &((conn_t *)userdata)->proto;
}

/* A server's factory: the next conn from conns[server_first]. */
static aev_protocol_t *server_factory(void *userdata)
{
    stress_t *st = userdata;
    ck_assert_int_lt(st->server_first + st->nserver, st->nconns);
    return &st->conns[st->server_first + st->nserver++].proto;
}

/* Wraps fd in a transport with conn c; the future is released at once (c->t is valid until
 * connection_lost). */
static void conn_attach(stress_t *st, conn_t *c, int fd)
{
    aev_future_t *f = NULL;
    ck_assert_int_eq(aev_loop_connect_accepted_socket(st->loop, conn_factory, c, fd, &f), 0);
    aev_future_unref(f);
}

/* Runs until something stops the loop; fails the test if the guard (limit seconds) had to. */
static void run_guarded(aev_loop_t *loop, double limit, const char *waiting_for)
{
    ck_assert_msg(!tu_run_guarded(loop, limit), "timed out waiting for %s", waiting_for);
}

static int is_proactor(aev_loop_t *loop)
{
    return strcmp(tu_poller(loop), "io_uring") == 0;
}

/* A loop whose io_uring engine (if it is the one) has the given [poll.io_uring] entries:
 * 0 and *rc set on success, else *rc is aev_loop_new's error. */
static aev_loop_t *loop_with_entries(const char *entries, int *rc)
{
    char conf[] = "/tmp/aev-test-stress-XXXXXX";
    int fd = mkstemp(conf);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "[poll.io_uring]\nentries = %s\n", entries);
    fclose(f);
    aev_loop_t *loop = NULL;
    *rc = aev_loop_new(&(aev_loop_options_t){.config_file = conf}, &loop);
    unlink(conf);
    return loop;
}

/* ---- 1. completion-queue overflow: 200 echoing connections, entries = 4 ------------------ */

#define ECHO_CONNS 200
#define ECHO_CHUNK 4096
#define ECHO_CHUNKS 4
#define ECHO_BYTES (ECHO_CHUNK * ECHO_CHUNKS)

/* A client writes its whole stream at once, in ECHO_CHUNKS writes. */
static void echo_client_made(conn_t *c)
{
    if (c->id >= ECHO_CONNS)
        return; /* the server's side */
    unsigned char buf[ECHO_CHUNK];
    for (size_t k = 0; k < ECHO_CHUNKS; k++) {
        pat_fill(buf, c->id, k * ECHO_CHUNK, ECHO_CHUNK);
        ck_assert_int_eq(aev_transport_write(c->t, buf, ECHO_CHUNK), 0);
    }
}

/* A client that has its stream back closes; the server's side then sees EOF and closes. */
static void echo_client_data(conn_t *c)
{
    if (c->id < ECHO_CONNS && c->got == ECHO_BYTES)
        aev_transport_close(c->t);
}

/* 200 connections, both ends transports of the loop, each client sending 16 KiB that the
 * server echoes, with the engine's submission queue at 4 entries (its completion queue at
 * 16): hundreds of completions wait for each wait(), the kernel keeps the overflow. Every
 * byte arrives, in order, on its own connection; every connection ends with one
 * connection_lost(0), made once; the server accepted each connection once. A bad entries
 * value is refused on the proactor, which shows that the option reaches the engine. */
START_TEST(test_cq_overflow_echo)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    const char *lp = getenv("AEV_LOOP");
    if (lp && strcmp(lp, "proactor") == 0) {
        int bad_rc = 0;
        aev_loop_t *bad = loop_with_entries("1", &bad_rc);
        ck_assert_ptr_null(bad);
        ck_assert_int_eq(bad_rc, -EINVAL);
        ck_assert_ptr_nonnull(strstr(aev_error_detail(), "entries"));
    }
    int fds_before = tu_fd_count();
    int rc = 0;
    aev_loop_t *loop = loop_with_entries("4", &rc);
    ck_assert_msg(rc == 0, "aev_loop_new: %s: %s", aev_err_name(rc), aev_error_detail());
    if (lp && strcmp(lp, "proactor") == 0)
        ck_assert(is_proactor(loop));

    stress_t st;
    stress_init(&st, loop, 2 * ECHO_CONNS);
    st.server_first = ECHO_CONNS;
    st.on_made = echo_client_made;
    st.on_data = echo_client_data;
    st.stop_lost = 2 * ECHO_CONNS;
    for (int i = 0; i < 2 * ECHO_CONNS; i++) {
        st.conns[i].verify = i < ECHO_CONNS;
        st.conns[i].echo = i >= ECHO_CONNS;
    }
    aev_server_options_t so = {.backlog = 2 * ECHO_CONNS};
    aev_future_t *sf = NULL;
    struct sockaddr_storage ss;
    socklen_t len;
    aev_server_t *srv = tu_server_start(loop, fam, server_factory, &st, &so, &sf, &ss, &len);
    /* all connect before the loop runs: the accepts, receives and sends pile up at once */
    for (int i = 0; i < ECHO_CONNS; i++)
        conn_attach(&st, &st.conns[i], tu_connect_to((struct sockaddr *)&ss, len));

    run_guarded(loop, 20.0, "every echoing connection to end");

    ck_assert_int_eq(st.nserver, ECHO_CONNS);
    for (int i = 0; i < 2 * ECHO_CONNS; i++) {
        conn_t *c = &st.conns[i];
        ck_assert_msg(c->made == 1 && c->lost == 1, "conn %d: made %d, lost %d", i, c->made, c->lost);
        ck_assert_msg(c->lost_error == 0, "conn %d lost with %d (%s)", i, c->lost_error,
                      aev_err_name(c->lost_error));
        ck_assert_msg(c->got == ECHO_BYTES, "conn %d got %zu bytes of %d", i, c->got, ECHO_BYTES);
        ck_assert_msg(c->bad_at < 0, "conn %d: byte %ld is wrong (another connection's, or out of order)",
                      i, c->bad_at);
        ck_assert_int_eq(c->eofs, i >= ECHO_CONNS ? 1 : 0);
    }
    aev_server_close(srv);
    aev_future_unref(sf);
    tu_loop_free(loop);
    free(st.conns);
    ck_assert_int_eq(tu_fd_count(), fds_before);
}
END_TEST

/* ---- 2. closing and aborting with receives in flight, peers sending ------------------------ */

#define INFLIGHT_CONNS 100
#define INFLIGHT_CLOSE_END 50 /* conns 1..49 are closed, 50..98 aborted, 0 and 99 stay */
#define INFLIGHT_ROUNDS 8

typedef struct inflight {
    stress_t st;
    int peers[INFLIGHT_CONNS];
    size_t peer_off[INFLIGHT_CONNS]; /* bytes each peer sent */
    int rounds;
    int peer_hup[INFLIGHT_CONNS];
} inflight_t;

static inflight_t *g_inflight;

/* One round of the peers sending 1 KiB each, every iteration, INFLIGHT_ROUNDS times; then the
 * loop stops. Writes to a peer whose transport is gone fail (EPIPE, ECONNRESET) or fill up
 * (EAGAIN): both fine. */
static int inflight_round(aev_loop_t *loop, void *arg)
{
    inflight_t *x = arg;
    unsigned char buf[1024];
    for (int i = 1; i < INFLIGHT_CONNS; i++) {
        pat_fill(buf, (unsigned)i, x->peer_off[i], sizeof buf);
        ssize_t n = send(x->peers[i], buf, sizeof buf, MSG_NOSIGNAL | MSG_DONTWAIT);
        ck_assert_msg(n >= 0 || errno == EAGAIN || errno == EPIPE || errno == ECONNRESET,
                      "peer %d: send: %s", i, strerror(errno));
        if (n > 0)
            x->peer_off[i] += (size_t)n;
    }
    if (++x->rounds < INFLIGHT_ROUNDS)
        ck_assert_int_eq(aev_loop_call_soon(loop, inflight_round, x, NULL), 0);
    else
        aev_loop_stop(loop);
    return 0;
}

/* conn 0's first data: close half of the others, abort the rest but one, from inside its
 * data_received (the receives of the others are in flight, some with data in this batch). */
static void inflight_data(conn_t *c)
{
    if (c->id != 0 || c->chunks != 1)
        return;
    inflight_t *x = g_inflight;
    for (int i = 1; i < INFLIGHT_CONNS - 1; i++) {
        conn_t *o = &x->st.conns[i];
        ck_assert_int_eq(o->lost, 0);
        o->closed_by_test = 1;
        if (i < INFLIGHT_CLOSE_END)
            aev_transport_close(o->t);
        else
            aev_transport_abort(o->t);
    }
    ck_assert_int_eq(aev_loop_call_soon(c->st->loop, inflight_round, x, NULL), 0);
}

/* A peer whose transport was closed: readable at EOF (or reset); drains, then counts. */
static int inflight_peer_readable(aev_loop_t *loop, void *arg)
{
    conn_t *c = arg;
    inflight_t *x = g_inflight;
    unsigned char buf[4096];
    for (;;) {
        ssize_t n = recv(x->peers[c->id], buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0)
            continue; /* the transports never write: nothing arrives but the end */
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        ck_assert_msg(n == 0 || errno == ECONNRESET, "peer %u: recv: %s", c->id, strerror(errno));
        break;
    }
    ck_assert_int_eq(aev_loop_remove_reader(loop, x->peers[c->id]), 1);
    x->peer_hup[c->id] = 1;
    x->st.hups++;
    maybe_stop(&x->st);
    return 0;
}

/* 100 transports with receives in flight. conn 0's data_received closes 49 of the others and
 * aborts 49 while their peers' bytes are arriving (most of them in the same batch of
 * completions, after the close), and the peers go on sending for 8 iterations.
 * Each closed/aborted transport gets connection_lost once (error 0) and no data after close
 * (asyncio drops what a closed transport would still read); each peer sees the connection end
 * while the loop runs (on the proactor only once the cancelled receive released the socket).
 * Then the loop closes with two transports open: connection_lost(AEV_ECLOSED) once each.
 * No descriptor leaks (valgrind/ASan: no memory either). */
START_TEST(test_close_abort_with_receives_in_flight)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    int fds_before = tu_fd_count();
    aev_loop_t *loop = tu_loop_new();
    inflight_t *x = calloc(1, sizeof *x);
    ck_assert_ptr_nonnull(x);
    g_inflight = x;
    stress_init(&x->st, loop, INFLIGHT_CONNS);
    for (int i = 0; i < INFLIGHT_CONNS; i++) {
        int sv[2];
        tu_stream_pair(fam, sv);
        x->peers[i] = sv[1];
        x->st.conns[i].verify = 1;
        conn_attach(&x->st, &x->st.conns[i], sv[0]);
    }
    x->st.stop_made = INFLIGHT_CONNS;
    run_guarded(loop, 10.0, "connection_made of every transport");
    x->st.stop_made = 0;
    for (int i = 0; i < INFLIGHT_CONNS; i++)
        ck_assert_int_eq(x->st.conns[i].made, 1);
    tu_run_once(loop); /* the receives connection_made started reach the engine (proactor) */
    /* every transport now has a receive in flight; the bytes arrive: conns 1..24 first, then
     * conn 0's trigger, then 25..99 (in the same batch of completions or readiness events as
     * the trigger: they race the close) */
    x->st.on_data = inflight_data;
    unsigned char buf[2048];
    for (int k = 0; k < 3; k++) {
        int from = k == 0 ? 1 : k == 1 ? 0 : INFLIGHT_CLOSE_END / 2;
        int to = k == 0 ? INFLIGHT_CLOSE_END / 2 : k == 1 ? 1 : INFLIGHT_CONNS;
        for (int i = from; i < to; i++) {
            pat_fill(buf, (unsigned)i, 0, sizeof buf);
            size_t n = i == 0 ? 1 : sizeof buf;
            ck_assert_int_eq(send(x->peers[i], buf, n, MSG_NOSIGNAL), (ssize_t)n);
            x->peer_off[i] = n;
        }
    }
    run_guarded(loop, 10.0, "the peers' rounds after the close");
    ck_assert_int_eq(x->rounds, INFLIGHT_ROUNDS);
    for (int i = 0; i < INFLIGHT_CONNS; i++) {
        conn_t *c = &x->st.conns[i];
        int gone = i > 0 && i < INFLIGHT_CONNS - 1;
        ck_assert_msg(c->lost == gone, "conn %d: connection_lost %d times", i, c->lost);
        if (gone)
            ck_assert_msg(c->lost_error == 0, "conn %d lost with %s", i, aev_err_name(c->lost_error));
        ck_assert_msg(c->after_close == 0, "conn %d: %d deliveries after close/abort", i, c->after_close);
        ck_assert_msg(c->bad_at < 0, "conn %d: byte %ld is wrong", i, c->bad_at);
    }
    ck_assert_uint_eq(x->st.conns[0].got, 1);
    /* each peer of a closed transport sees its end */
    for (int i = 1; i < INFLIGHT_CONNS - 1; i++)
        ck_assert_int_eq(aev_loop_add_reader(loop, x->peers[i], inflight_peer_readable, &x->st.conns[i]), 0);
    x->st.stop_hups = INFLIGHT_CONNS - 2;
    run_guarded(loop, 10.0, "every peer of a closed transport to see the connection end");

    ck_assert_int_eq(aev_loop_close(loop), 0);
    for (int i = 0; i < INFLIGHT_CONNS; i++) {
        conn_t *c = &x->st.conns[i];
        ck_assert_msg(c->made == 1 && c->lost == 1, "conn %d: made %d, lost %d", i, c->made, c->lost);
        if (i == 0 || i == INFLIGHT_CONNS - 1)
            ck_assert_int_eq(c->lost_error, AEV_ECLOSED);
    }
    aev_loop_free(loop);
    for (int i = 0; i < INFLIGHT_CONNS; i++)
        close(x->peers[i]);
    free(x->st.conns);
    free(x);
    ck_assert_int_eq(tu_fd_count(), fds_before);
}
END_TEST

/* ---- 3. pause/resume on every chunk of a 4 MiB stream ---------------------------------- */

#define TOGGLE_BYTES (4u << 20)

static int toggle_resume_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    aev_transport_t *t = arg;
    conn_t *c = (conn_t *)aev_transport_get_protocol(t);
    if (c && !aev_transport_is_closing(t)) {
        c->paused = 0;
        aev_transport_resume_reading(t);
    }
    aev_transport_unref(t);
    return 0;
}

/* Pauses reading from a callback of its own (not from inside a delivery: the receive is in
 * flight, and on the proactor may complete with data after the pause), resuming from the
 * next iteration. */
static int toggle_pause_cb(aev_loop_t *loop, void *arg)
{
    aev_transport_t *t = arg;
    conn_t *c = (conn_t *)aev_transport_get_protocol(t);
    if (c && !aev_transport_is_closing(t) && !c->paused) {
        aev_transport_pause_reading(t);
        c->paused = 1;
        ck_assert_int_eq(aev_loop_call_soon(loop, toggle_resume_cb, aev_transport_ref(t), NULL), 0);
    }
    aev_transport_unref(t);
    return 0;
}

/* The reader (conn 0) toggles reading on every chunk, three ways in turn: pause and resume at
 * once (the cancelled receive is still in flight when reading resumes); pause, and resume from
 * the next iteration (what raced the cancel is kept and delivered first); pause from a
 * callback of the next iteration, resume from the one after. */
static void toggle_data(conn_t *c)
{
    if (c->id != 0)
        return;
    switch (c->chunks % 3) {
    case 0:
        aev_transport_pause_reading(c->t);
        ck_assert_int_eq(aev_transport_is_reading(c->t), 0);
        aev_transport_resume_reading(c->t);
        break;
    case 1:
        aev_transport_pause_reading(c->t);
        ck_assert_int_eq(aev_transport_is_reading(c->t), 0);
        c->paused = 1;
        ck_assert_int_eq(aev_loop_call_soon(c->st->loop, toggle_resume_cb, aev_transport_ref(c->t), NULL), 0);
        break;
    default:
        ck_assert_int_eq(aev_loop_call_soon(c->st->loop, toggle_pause_cb, aev_transport_ref(c->t), NULL), 0);
        break;
    }
}

/* The writer (conn 1) writes the whole stream at once (most of it stays in its buffer, sent by
 * one send operation after another), then write_eof. */
static void toggle_made(conn_t *c)
{
    if (c->id != 1)
        return;
    unsigned char *data = malloc(TOGGLE_BYTES);
    ck_assert_ptr_nonnull(data);
    pat_fill(data, 0, 0, TOGGLE_BYTES);
    ck_assert_int_eq(aev_transport_write(c->t, data, TOGGLE_BYTES), 0);
    free(data);
    ck_assert_int_eq(aev_transport_write_eof(c->t), 0);
}

/* A transport on the loop streams 4 MiB to another transport of the loop, whose protocol
 * pauses reading on every chunk and resumes it at once or from the next iteration. Every
 * byte arrives, in order, none while paused; EOF once, after all of them, and not while
 * paused; each side connection_lost once. Run with a plain protocol (_i 0..2, the three
 * address kinds) and a buffered one (_i 3..5). */
START_TEST(test_pause_resume_every_chunk)
{
    const int fam = _i % TU_FAM_COUNT;
    const int buffered = _i >= TU_FAM_COUNT;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    stress_t st;
    stress_init(&st, loop, 2);
    st.conns[0].verify = 1;
    if (buffered) {
        st.conns[0].proto.get_buffer = c_get_buffer;
        st.conns[0].proto.buffer_updated = c_updated;
    }
    st.on_made = toggle_made;
    st.on_data = toggle_data;
    st.stop_lost = 2;
    int sv[2];
    tu_stream_pair(fam, sv);
    conn_attach(&st, &st.conns[0], sv[1]); /* the reader: the end with the capped receive buffer */
    conn_attach(&st, &st.conns[1], sv[0]);
    run_guarded(loop, 20.0, "the 4 MiB stream to end");
    conn_t *r = &st.conns[0], *w = &st.conns[1];
    ck_assert_msg(r->got == TOGGLE_BYTES, "got %zu of %u bytes", r->got, TOGGLE_BYTES);
    ck_assert_msg(r->bad_at < 0, "byte %ld of the stream is wrong", r->bad_at);
    ck_assert_msg(r->while_paused == 0, "%d deliveries while reading was paused", r->while_paused);
    ck_assert_int_eq(r->eofs, 1);
    ck_assert_int_eq(r->lost, 1);
    ck_assert_int_eq(r->lost_error, 0);
    ck_assert_int_eq(w->lost, 1);
    ck_assert_int_eq(w->lost_error, 0);
    ck_assert_uint_ge(r->chunks, 8); /* the toggling really ran */
    tu_loop_free(loop);
    free(st.conns);
}
END_TEST

/* ---- 4. abort with a send in flight ----------------------------------------------------- */

#define ABORT_BYTES (2u << 20)

typedef struct abort_case {
    stress_t st;
    int peer;
    size_t peer_got;
    long peer_bad_at;
    int peer_end;
    int write_after_abort;
} abort_case_t;

static abort_case_t *g_abort;

/* The stream goes in 64 KiB writes: after the first, a send is in flight while the write
 * buffer grows (the bytes the kernel reads must stay where they are meanwhile). */
static void abort_made(conn_t *c)
{
    unsigned char *data = malloc(ABORT_BYTES);
    ck_assert_ptr_nonnull(data);
    pat_fill(data, 0, 0, ABORT_BYTES);
    for (size_t off = 0; off < ABORT_BYTES; off += 65536)
        ck_assert_int_eq(aev_transport_write(c->t, data + off, 65536), 0);
    free(data);
}

/* The peer reads what is there, up to want bytes, checking it is the stream in order. */
static size_t abort_peer_take(abort_case_t *a, size_t want)
{
    unsigned char buf[65536];
    size_t took = 0;
    while (took < want) {
        size_t ask = want - took < sizeof buf ? want - took : sizeof buf;
        ssize_t n = recv(a->peer, buf, ask, MSG_DONTWAIT);
        if (n <= 0)
            break;
        if (a->peer_bad_at < 0) {
            long bad = pat_check(buf, 0, a->peer_got, (size_t)n);
            if (bad >= 0)
                a->peer_bad_at = (long)a->peer_got + bad;
        }
        a->peer_got += (size_t)n;
        took += (size_t)n;
    }
    return took;
}

/* Aborts the writer from a callback of the loop (its send is in flight), right after the
 * peer made room in the socket (the send wakes up as the cancel is on its way), then writes
 * over freshly allocated memory of the write buffer's size: a buffer freed too early and
 * reused would go out to the peer as these bytes. */
static int abort_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    abort_case_t *a = arg;
    conn_t *c = &a->st.conns[0];
    ck_assert_uint_gt(aev_transport_get_write_buffer_size(c->t), 0);
    ck_assert_uint_gt(abort_peer_take(a, 256 * 1024), 0);
    aev_transport_abort(c->t);
    ck_assert_int_eq(aev_transport_is_closing(c->t), 1);
    a->write_after_abort = aev_transport_write(c->t, "x", 1);
    for (int k = 0; k < 4; k++) {
        void *junk = malloc(ABORT_BYTES * 2);
        ck_assert_ptr_nonnull(junk);
        memset(junk, 0xA5, ABORT_BYTES * 2);
        free(junk);
    }
    return 0;
}

static void abort_check_done(abort_case_t *a)
{
    if (a->peer_end && a->st.conns[0].lost)
        aev_loop_stop(a->st.loop);
}

static void abort_lost(conn_t *c)
{
    (void)c;
    abort_check_done(g_abort);
}

/* The slow reader: reads what is there, checking it is the stream in order, until the end. */
static int abort_peer_readable(aev_loop_t *loop, void *arg)
{
    abort_case_t *a = arg;
    while (abort_peer_take(a, SIZE_MAX) > 0) {
    }
    unsigned char b;
    ssize_t n = recv(a->peer, &b, 1, MSG_DONTWAIT | MSG_PEEK);
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
        return 0; /* more to come */
    ck_assert_msg(n == 0 || errno == ECONNRESET, "peer: recv: %zd (%s)", n, strerror(errno));
    ck_assert_int_eq(aev_loop_remove_reader(loop, a->peer), 1);
    a->peer_end = 1;
    abort_check_done(a);
    return 0;
}

/* A transport writes 2 MiB to a peer that has read 64 KiB only: most of it is in the write
 * buffer with a send in flight. abort() from a loop callback: connection_lost(0) once, writes
 * refused at once, and the buffer is dropped (the peer gets less than 2 MiB), but whatever
 * the peer does get is the stream, in order (no byte from a freed buffer reaches the
 * socket), and the peer sees the end while the loop runs (the cancelled send released the
 * socket). On the proactor the send's final completion comes after connection_lost: the
 * transport and its buffer must outlive it (ASan/valgrind see an early free). */
START_TEST(test_abort_with_send_in_flight)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    int fds_before = tu_fd_count();
    aev_loop_t *loop = tu_loop_new();
    abort_case_t *a = calloc(1, sizeof *a);
    ck_assert_ptr_nonnull(a);
    g_abort = a;
    a->peer_bad_at = -1;
    stress_init(&a->st, loop, 1);
    a->st.on_made = abort_made;
    a->st.on_lost = abort_lost;
    a->st.stop_made = 1;
    int sv[2];
    tu_stream_pair(fam, sv);
    a->peer = sv[1];
    conn_attach(&a->st, &a->st.conns[0], sv[0]);
    run_guarded(loop, 10.0, "connection_made");
    a->st.stop_made = 0;
    ck_assert_uint_gt(aev_transport_get_write_buffer_size(a->st.conns[0].t), ABORT_BYTES / 2);
    /* the slow reader takes 64 KiB: the send in flight moves on */
    while (a->peer_got < 65536) {
        ck_assert(tu_poll_fd(a->peer, POLLIN, 5.0) & POLLIN);
        abort_peer_take(a, 65536 - a->peer_got);
    }
    ck_assert_int_lt(a->peer_bad_at, 0);
    tu_run_once(loop);
    ck_assert_int_eq(aev_loop_call_soon(loop, abort_cb, a, NULL), 0);
    ck_assert_int_eq(aev_loop_add_reader(loop, a->peer, abort_peer_readable, a), 0);
    run_guarded(loop, 10.0, "connection_lost and the peer's end of stream");
    conn_t *c = &a->st.conns[0];
    ck_assert_int_eq(c->lost, 1);
    ck_assert_int_eq(c->lost_error, 0);
    ck_assert_int_ne(a->write_after_abort, 0);
    ck_assert_msg(a->peer_bad_at < 0, "byte %ld the peer got is wrong", a->peer_bad_at);
    ck_assert_uint_lt(a->peer_got, ABORT_BYTES);
    tu_run_once(loop); /* whatever completion is left */
    ck_assert_int_eq(c->lost, 1);
    tu_loop_free(loop);
    close(a->peer);
    free(a->st.conns);
    free(a);
    ck_assert_int_eq(tu_fd_count(), fds_before);
}
END_TEST

/* ---- 5. server close while clients keep connecting ------------------------------------- */

#define SC_MAX_CLIENTS 600
#define SC_CLOSE_AT 40     /* connections made when the server closes */
#define SC_PER_ROUND 4     /* clients connecting per iteration */
#define SC_ROUNDS_AFTER 8  /* iterations of connecting after the close */

typedef struct server_case {
    stress_t st;
    aev_server_t *srv;
    struct sockaddr_storage ss;
    socklen_t len;
    int clients[SC_MAX_CLIENTS];
    int nclients;
    int refused;
    int closed, rounds_after;
    aev_future_t *wc;
    int wc_done;
} server_case_t;

static server_case_t *g_sc;

/* A client connects without blocking: in progress, done, or refused once the server is gone
 * (ENOENT: a Unix server's socket file was removed; EAGAIN: its backlog is full). */
static void sc_connect_one(server_case_t *x)
{
    ck_assert_int_lt(x->nclients, SC_MAX_CLIENTS);
    int fd = socket(x->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    x->clients[x->nclients++] = fd;
    if (connect(fd, (struct sockaddr *)&x->ss, x->len) == 0 || errno == EINPROGRESS)
        return;
    ck_assert_msg(errno == ECONNREFUSED || errno == ENOENT || errno == EAGAIN, "connect: %s", strerror(errno));
    ck_assert_msg(x->closed || errno == EAGAIN, "refused before the server closed: %s", strerror(errno));
    x->refused++;
}

static void sc_maybe_stop(server_case_t *x)
{
    if (x->wc_done && x->rounds_after >= SC_ROUNDS_AFTER)
        aev_loop_stop(x->st.loop);
}

static int sc_round(aev_loop_t *loop, void *arg)
{
    server_case_t *x = arg;
    for (int k = 0; k < SC_PER_ROUND; k++)
        sc_connect_one(x);
    if (x->closed && ++x->rounds_after >= SC_ROUNDS_AFTER) {
        sc_maybe_stop(x);
        return 0;
    }
    ck_assert_int_eq(aev_loop_call_soon(loop, sc_round, x, NULL), 0);
    return 0;
}

static int sc_wait_closed_done(aev_future_t *f, void *arg)
{
    server_case_t *x = arg;
    ck_assert_int_eq(aev_future_error(f), 0);
    x->wc_done = 1;
    sc_maybe_stop(x);
    return 0;
}

/* The SC_CLOSE_AT-th connection_made on the server's side: more clients connect (their
 * accepts race the close), then the server closes, its clients are closed, and wait_closed
 * is awaited. */
static void sc_made(conn_t *c)
{
    server_case_t *x = g_sc;
    (void)c;
    if (x->st.made != SC_CLOSE_AT)
        return;
    for (int k = 0; k < 8; k++)
        sc_connect_one(x);
    aev_server_close(x->srv);
    x->closed = 1;
    ck_assert_int_eq(aev_server_is_serving(x->srv), 0);
    aev_server_close_clients(x->srv);
    ck_assert_int_eq(aev_server_wait_closed(x->srv, &x->wc), 0);
    ck_assert_int_eq(aev_future_add_done_callback(x->wc, sc_wait_closed_done, x), 0);
}

/* A server accepts (on the proactor: one multishot accept in flight) while clients connect,
 * 4 per iteration, and closes (then close_clients) from a connection_made, right after 8 more
 * clients connected, while more go on connecting. wait_closed completes; every connection
 * the server's side made gets connection_lost once; no connection accepted around the close
 * is left open: the process has the same descriptors as before (the clients closed). */
START_TEST(test_server_close_while_clients_connect)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    int fds_before = tu_fd_count();
    aev_loop_t *loop = tu_loop_new();
    server_case_t *x = calloc(1, sizeof *x);
    ck_assert_ptr_nonnull(x);
    g_sc = x;
    stress_init(&x->st, loop, SC_MAX_CLIENTS);
    x->st.on_made = sc_made;
    aev_server_options_t so = {.backlog = 64};
    aev_future_t *sf = NULL;
    x->srv = tu_server_start(loop, fam, server_factory, &x->st, &so, &sf, &x->ss, &x->len);
    aev_server_ref(x->srv);
    aev_future_unref(sf);
    ck_assert_int_eq(aev_loop_call_soon(loop, sc_round, x, NULL), 0);
    run_guarded(loop, 10.0, "wait_closed and the clients connecting after the close");
    ck_assert_int_eq(x->closed, 1);
    ck_assert_int_ge(x->st.made, SC_CLOSE_AT);
    for (int i = 0; i < x->st.nserver; i++) {
        conn_t *c = &x->st.conns[i];
        ck_assert_msg(c->lost == c->made, "server conn %d: made %d, lost %d", i, c->made, c->lost);
    }
    ck_assert_int_eq(x->st.lost, x->st.made);
    ck_assert_int_eq(aev_server_sockets(x->srv, NULL, 0), 0);
    aev_future_unref(x->wc);
    aev_server_unref(x->srv);
    for (int i = 0; i < x->nclients; i++)
        close(x->clients[i]);
    tu_loop_free(loop);
    free(x->st.conns);
    free(x);
    ck_assert_int_eq(tu_fd_count(), fds_before);
}
END_TEST

/* ---- 6. a receive that moves between the ring and poll + recv(2) ------------------------ */

/* On a proactor loop a stream receive whose pieces keep coming big leaves the provided
 * buffer ring for "poll, then recv(2) into the loop's shared buffer", and small pieces
 * bring it back (core/io_op_completion.c, "hot"). The writer sends, in ping-pong with the
 * reader, cycles of 12 pieces of 32 KiB, then 40 pieces of 100 bytes; the reader pauses
 * reading on some big pieces (resuming from the next iteration, so the switch races a
 * cancel). Every byte arrives once, in order, none while paused. */
#define HOT_CYCLES 4
#define HOT_BIG_PIECES 12
#define HOT_BIG_SIZE (32u << 10)
#define HOT_SMALL_PIECES 40
#define HOT_SMALL_SIZE 100u

typedef struct hot_case {
    stress_t st;
    size_t sent;   /* bytes the writer has written */
    unsigned piece; /* pieces written */
    unsigned char *pattern;
} hot_case_t;

static hot_case_t *g_hot;

static size_t hot_total(void)
{
    return (size_t)HOT_CYCLES * (HOT_BIG_PIECES * HOT_BIG_SIZE + HOT_SMALL_PIECES * HOT_SMALL_SIZE);
}

/* The writer's next piece, once the reader has everything sent so far. */
static void hot_next_piece(hot_case_t *h)
{
    conn_t *w = &h->st.conns[1];
    if (h->sent == hot_total()) {
        ck_assert_int_eq(aev_transport_write_eof(w->t), 0);
        return;
    }
    unsigned in_cycle = h->piece % (HOT_BIG_PIECES + HOT_SMALL_PIECES);
    size_t n = in_cycle < HOT_BIG_PIECES ? HOT_BIG_SIZE : HOT_SMALL_SIZE;
    ck_assert_int_eq(aev_transport_write(w->t, h->pattern + h->sent, n), 0);
    h->sent += n;
    h->piece++;
}

static void hot_made(conn_t *c)
{
    if (c->id == 1)
        hot_next_piece(g_hot);
}

static void hot_data(conn_t *c)
{
    hot_case_t *h = g_hot;
    if (c->id != 0 || c->got != h->sent)
        return;
    unsigned in_cycle = (h->piece - 1) % (HOT_BIG_PIECES + HOT_SMALL_PIECES);
    if (in_cycle == 6 || in_cycle == 9) { /* pause while the receive may be switching */
        aev_transport_pause_reading(c->t);
        c->paused = 1;
        ck_assert_int_eq(aev_loop_call_soon(c->st->loop, toggle_resume_cb, aev_transport_ref(c->t), NULL), 0);
    }
    hot_next_piece(h);
}

START_TEST(test_receive_ring_and_hot)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    hot_case_t *h = calloc(1, sizeof *h);
    ck_assert_ptr_nonnull(h);
    g_hot = h;
    h->pattern = malloc(hot_total());
    ck_assert_ptr_nonnull(h->pattern);
    pat_fill(h->pattern, 0, 0, hot_total());
    stress_init(&h->st, loop, 2);
    h->st.conns[0].verify = 1;
    h->st.on_made = hot_made;
    h->st.on_data = hot_data;
    h->st.stop_lost = 2;
    int sv[2];
    tu_stream_pair(fam, sv);
    conn_attach(&h->st, &h->st.conns[0], sv[1]);
    conn_attach(&h->st, &h->st.conns[1], sv[0]);
    run_guarded(loop, 20.0, "the big and small pieces");
    conn_t *r = &h->st.conns[0];
    ck_assert_msg(r->got == hot_total(), "got %zu of %zu bytes", r->got, hot_total());
    ck_assert_msg(r->bad_at < 0, "byte %ld of the stream is wrong", r->bad_at);
    ck_assert_msg(r->while_paused == 0, "%d deliveries while reading was paused", r->while_paused);
    ck_assert_int_eq(r->eofs, 1);
    ck_assert_int_eq(r->lost, 1);
    ck_assert_int_eq(h->st.conns[1].lost, 1);
    tu_loop_free(loop);
    free(h->st.conns);
    free(h->pattern);
    free(h);
}
END_TEST

static Suite *proactor_stress_suite(void)
{
    Suite *s = suite_create("proactor_stress");
    TU_ADD_LOOP(s, test_cq_overflow_echo, TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_close_abort_with_receives_in_flight, TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_pause_resume_every_chunk, 2 * TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_abort_with_send_in_flight, TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_server_close_while_clients_connect, TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_receive_ring_and_hot, TU_FAM_COUNT);
    return s;
}

TU_MAIN(proactor_stress_suite)
