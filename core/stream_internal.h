/* libaev core - stream transports and servers (stream.c, server.c), and the pipe
 * transports (pipe.c), which are the same aev_transport_t with another kind. */
#ifndef AEV_STREAM_INTERNAL_H
#define AEV_STREAM_INTERNAL_H

#include "aev/transport.h"
#include "io_op.h"
#include "loop_internal.h"

#define AEV__HELD_READ 0x01u
#define AEV__HELD_WRITE 0x02u

/* aev_transport_t.kind */
enum {
    AEV__TRANSPORT_STREAM = 0, /* a connected stream socket: reads and writes */
    AEV__TRANSPORT_READ_PIPE,  /* connect_read_pipe: reads only (rop: read(2)) */
    AEV__TRANSPORT_WRITE_PIPE  /* connect_write_pipe: writes only (wop: write(2)); rop, if
                                  active, is the AEV_OP_POLL that learns the reader is gone */
};

/* The write side of a transport: allocated when a write first has to wait (most connections
 * never buffer a byte) or when write-buffer limits are set, kept until the transport is freed. */
typedef struct aev__stream_wside {
    aev__op_t wop;          /* the send of the buffered bytes, while any wait */
    struct aev_transport *t;
    char *wbuf_sending;     /* the buffer a send in flight on a completion engine reads */
    char *wbuf_retired;     /* a buffer the write buffer left while a send read it */
    char *wbuf;             /* bytes waiting to be written: wbuf[woff, wlen) */
    size_t wlen, woff, wcap;
    size_t high, low;       /* write-buffer marks */
} aev__stream_wside_t;

/* What a transport needs only for a while or rarely: the factory until connection_made, the
 * pause stash, a sendfile. Allocated on demand, freed once it holds nothing. */
typedef struct aev__stream_cold {
    aev_protocol_factory_fn factory; /* called when the connection is made (NULL after) */
    void *factory_data;
    char *rstash;           /* bytes a receive brought after pause_reading, before its cancel
                               took effect (completion engines): delivered on resume */
    size_t rstash_len;
    struct aev__tsendfile *sendfile; /* loop.sendfile in progress (core/sendfile.c), or NULL */
} aev__stream_cold_t;

struct aev_transport {
    aev_loop_t *loop;
    uint32_t refs;   /* the loop's until connection_lost has run, the users' */
    int fd;          /* -1 once closed */
    aev_protocol_t *proto;           /* NULL until connection_made */
    aev_server_t *server;            /* the server that accepted it, or NULL (a server finds
                                        its connections on the loop's list) */
    struct aev_transport *prev, *next;         /* the loop's open transports */
    aev__stream_cold_t *cold;        /* factory, pause stash, sendfile, or NULL */
    int conn_error;         /* what connection_lost will say */
    uint8_t reading;        /* not paused */
    uint8_t closing;        /* close() or abort() was called, or a fatal error */
    uint8_t eof_pending;    /* write_eof() was called */
    uint8_t eof_sent;       /* shutdown(SHUT_WR) done */
    uint8_t eof_received;
    uint8_t made_pending;   /* connection_made is queued (holds a reference) */
    uint8_t made;           /* connection_made ran */
    uint8_t lost;           /* connection_lost is queued or ran */
    uint8_t writing_paused; /* pause_writing was called, resume_writing not yet */
    uint8_t kind;           /* AEV__TRANSPORT_* */
    uint8_t held;           /* AEV__HELD_*: a cancelled op whose final completion is to come
                               holds a reference (completion engines) */
    /* rare states, as bits (the transport stays within 152 bytes: a 160-byte malloc chunk) */
    unsigned eof_stashed : 1;     /* an EOF came after pause_reading, before its cancel took
                                     effect */
    unsigned lost_waits_read : 1; /* connection_lost waits for the final completion of a
                                     cancelled receive into a buffered protocol's buffer
                                     (completion engines) */
    unsigned write_writev : 1;    /* writes go through write(2)/writev(2) (a pipe or character
                                     device write pipe), not send(2) */
    aev_future_t *made_waiter; /* completed once connection_made ran (with the transport), or
                                  with the error that ended the connection before */
    aev__stream_wside_t *w; /* the write side, or NULL while no write ever waited */
    aev__op_t rop;          /* the receive (multishot while reading) */
};

/* loop.sendfile in progress on t, or NULL. */
static inline struct aev__tsendfile *aev__stream_sendfile(const aev_transport_t *t)
{
    return t->cold ? t->cold->sendfile : NULL;
}
/* Sets (or clears: NULL) t's sendfile. 0, or -ENOMEM (setting only). */
int aev__stream_set_sendfile(aev_transport_t *t, struct aev__tsendfile *st);

/* Bytes in t's write buffer. */
static inline size_t aev__stream_write_pending(const aev_transport_t *t)
{
    return t->w ? t->w->wlen - t->w->woff : 0;
}

/* A transport over a connected stream socket (owned from now on, also on failure: the
 * caller closes fd only if this fails); connection_made is scheduled. */
int aev__stream_new(aev_loop_t *loop, int fd, aev_protocol_factory_fn factory, void *factory_data,
                    aev_server_t *server, aev_transport_t **out);
void aev__stream_resume_io(aev_transport_t *t);
/* set_write_buffer_limits(high, low) as asyncio resolves them (negative: the default, or 4 x
 * low; low defaults to high / 4) for stream and datagram transports. -EINVAL + detail if
 * low > high. */
int aev__write_limits_resolve(long high, long low, size_t default_high, size_t *h, size_t *l);
/* Stops one of t's operations (t->rop or t->w->wop); on a completion engine t is held until its
 * final completion. */
void aev__stream_op_stop(aev_transport_t *t, aev__op_t *op);
/* Closes at once (abort, fatal errors): buffer dropped, connection_lost(error) queued. */
void aev__stream_force_close(aev_transport_t *t, int error);
/* connection_lost(t->conn_error) soon (once), as asyncio's call_soon(_call_connection_lost). */
void aev__stream_lost_soon(aev_transport_t *t);

/* pipe.c: the read pipe met EOF (eof_received, then connection_lost(0)); the write pipe's
 * connection_made ran (start watching for the reader going away). */
void aev__pipe_read_eof(aev_transport_t *t);
void aev__pipe_made(aev_transport_t *t);
/* pipe.c: a write pipe's send is about to start (not active): it runs natively on a proactor
 * loop only while the process ignores SIGPIPE (checked now, one rt_sigaction). */
void aev__pipe_write_route(aev_transport_t *t);

/* A server's connection ended (from connection_lost). */
void aev__server_connection_gone(aev_server_t *s, aev_transport_t *t);

/* Fills a Unix socket address from path ("@name": the abstract namespace). -EINVAL + detail. */
struct sockaddr_un;
int aev__unix_address(const char *path, struct sockaddr_un *un, socklen_t *len);

/* loop.sendfile's hooks (core/sendfile.c), called only while t has a sendfile: a write
 * refused while sendfile(2) owns the socket (AEV_EINVALID_STATE + detail, else 0); the write
 * buffer drained or close() was called (the transfer looks again); the connection lost
 * (before the socket is closed; detaches t's sendfile). */
int aev__sendfile_write_refused(aev_transport_t *t);
void aev__sendfile_wake(aev_transport_t *t);
void aev__sendfile_lost(aev_transport_t *t);

/* loop close: transports get connection_lost(AEV_ECLOSED) now; servers are closed */
void aev__streams_loop_close(aev_loop_t *loop);
void aev__servers_loop_close(aev_loop_t *loop);

#endif /* AEV_STREAM_INTERNAL_H */
