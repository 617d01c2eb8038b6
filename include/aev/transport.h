/* libaev - transports and protocols (asyncio "Transports and Protocols"),
 * stream connections and servers.
 *
 * A protocol is the application's side of a connection: a struct of callbacks
 * and a userdata pointer, made by a factory the loop calls for each new
 * connection (protocol_factory). A transport is the loop's side: it owns the
 * socket, buffers what could not be written yet, and calls the protocol.
 *
 * Protocol callbacks return 0, or a negative code meaning "raised": the loop
 * then reports it to the exception handler (with the protocol and transport in
 * the context) and aborts the transport, as asyncio's _fatal_error does.
 *
 * Order of calls, as asyncio guarantees: connection_made first, then any
 * number of data_received (or get_buffer/buffer_updated), at most one
 * eof_received, and connection_lost last, exactly once; after it the transport
 * never touches the protocol again, so connection_lost may free it.
 *
 * Lifetime of a transport: the loop owns it from connection_made until
 * connection_lost has returned; then it is freed, unless someone holds a
 * reference (aev_transport_ref/unref). The pointer given to connection_made is
 * valid until connection_lost returns.
 */
#ifndef AEV_TRANSPORT_H
#define AEV_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

typedef struct aev_transport aev_transport_t;
typedef struct aev_protocol aev_protocol_t;
typedef struct aev_server aev_server_t;

/* ---- protocols --------------------------------------------------------------- */

/* A protocol: set the callbacks it handles, leave the others NULL. */
struct aev_protocol {
    void *userdata;
    /* BaseProtocol */
    int (*connection_made)(aev_protocol_t *p, aev_transport_t *t);
    /* error: 0 for a regular EOF or close, else why the connection was lost */
    int (*connection_lost)(aev_protocol_t *p, int error);
    int (*pause_writing)(aev_protocol_t *p);
    int (*resume_writing)(aev_protocol_t *p);
    /* Protocol: data is valid only during the call */
    int (*data_received)(aev_protocol_t *p, const void *data, size_t len);
    /* return 1 to keep the transport open (half-closed: you may still write), 0 to close it */
    int (*eof_received)(aev_protocol_t *p);
    /* BufferedProtocol (used when get_buffer is set): give a buffer of at least 1 byte
     * (sizehint is advisory), the loop receives straight into it (zero copy) */
    void *(*get_buffer)(aev_protocol_t *p, size_t sizehint, size_t *size);
    int (*buffer_updated)(aev_protocol_t *p, size_t nbytes);
};

/** Makes the protocol of one new connection (protocol_factory); NULL refuses it (-ENOMEM). */
typedef aev_protocol_t *(*aev_protocol_factory_fn)(void *userdata);

/* ---- transports ------------------------------------------------------------------- */

/** Adds a reference, so that the transport outlives its connection_lost. */
aev_transport_t *aev_transport_ref(aev_transport_t *t);
/** Releases a reference taken with aev_transport_ref(). */
void aev_transport_unref(aev_transport_t *t);

/** Returns the loop of the transport. */
aev_loop_t *aev_transport_get_loop(const aev_transport_t *t);

/** Writes data: sent at once as far as the socket takes it, the rest copied into the write
 *  buffer. 0, AEV_EINVALID_STATE after write_eof/close, or the connection's error. */
int aev_transport_write(aev_transport_t *t, const void *data, size_t len);
/** Writes several buffers in order (writelines), as one write. */
int aev_transport_writelines(aev_transport_t *t, const struct iovec *iov, int iovcnt);
/** Closes the write side once the buffer is flushed (write_eof). */
int aev_transport_write_eof(aev_transport_t *t);
/** Returns 1 if write_eof is possible (stream sockets: yes). */
int aev_transport_can_write_eof(const aev_transport_t *t);

/** Closes the transport once its buffer is flushed; connection_lost(0) follows (close). */
void aev_transport_close(aev_transport_t *t);
/** Closes at once, dropping the buffer; connection_lost(0) follows soon (abort). */
void aev_transport_abort(aev_transport_t *t);
/** Returns 1 once the transport is closing or closed. */
int aev_transport_is_closing(const aev_transport_t *t);

/** Stops calling data_received until resume_reading (pause_reading). Idempotent. */
void aev_transport_pause_reading(aev_transport_t *t);
/** Resumes reading (resume_reading). Idempotent. */
void aev_transport_resume_reading(aev_transport_t *t);
/** Returns 1 while the transport reads (is_reading). */
int aev_transport_is_reading(const aev_transport_t *t);

/** Sets the write-buffer marks: pause_writing above high, resume_writing at low or below.
 *  -1 for a default: high 64 KiB, low high / 4 (asyncio's). -EINVAL if low > high. */
int aev_transport_set_write_buffer_limits(aev_transport_t *t, long high, long low);
/** Reads the marks (either pointer may be NULL). */
void aev_transport_get_write_buffer_limits(const aev_transport_t *t, size_t *low, size_t *high);
/** Returns the number of bytes in the write buffer. */
size_t aev_transport_get_write_buffer_size(const aev_transport_t *t);

/** Replaces the protocol (set_protocol); the old one gets no more calls. */
void aev_transport_set_protocol(aev_transport_t *t, aev_protocol_t *p);
/** Returns the protocol (get_protocol). */
aev_protocol_t *aev_transport_get_protocol(const aev_transport_t *t);

/** get_extra_info('socket'): the file descriptor (still the transport's), or -1 after close. */
int aev_transport_get_fd(const aev_transport_t *t);
/** get_extra_info('peername'): 0 and the address, or a negative error. *len is in/out. */
int aev_transport_get_peername(const aev_transport_t *t, struct sockaddr *addr, socklen_t *len);
/** get_extra_info('sockname'). */
int aev_transport_get_sockname(const aev_transport_t *t, struct sockaddr *addr, socklen_t *len);

/* ---- connections ------------------------------------------------------------------ */

/** Wraps an accepted (or otherwise connected) stream socket fd in a transport with a protocol
 *  from factory (connect_accepted_socket). The transport owns fd from then on (also on
 *  failure, when it is closed). The future is done once connection_made has run, as asyncio
 *  returns only then; its value is the aev_transport_t * (the future holds a reference, so
 *  the pointer stays valid while you hold the future). */
int aev_loop_connect_accepted_socket(aev_loop_t *loop, aev_protocol_factory_fn factory, void *userdata,
                                     int fd, aev_future_t **out);

/* Options of create_connection; zero means the spec's default. */
typedef struct aev_connection_options {
    int family;                  /* getaddrinfo family (AF_UNSPEC) */
    int proto;                   /* getaddrinfo protocol */
    int flags;                   /* getaddrinfo flags */
    int use_sock;                /* 1: use sock, an already connected stream socket */
    int sock;
    const char *local_host;      /* local_addr: bind to this host (NULL: no bind) ... */
    int local_port;              /* ... and port */
    int all_errors;              /* 1: on failure, the detail lists every attempt's error */
    double happy_eyeballs_delay; /* > 0: Happy Eyeballs (RFC 8305 "Connection Attempt Delay",
                                    0.25 suggested): the next attempt starts when the latest
                                    one fails or after this many seconds, the first connection
                                    wins, the others are closed; 0: one at a time; < 0 or NaN:
                                    -EINVAL */
    int interleave;              /* > 0: reorder the addresses by family, this being RFC 8305's
                                    "First Address Family Count"; 0: no reordering, or 1 when
                                    happy_eyeballs_delay is set (asyncio's default); < 0: -EINVAL */
    const void *ssl;             /* TLS (the tls plugin family): not available yet */
    const char *server_hostname; /* only with ssl */
    double ssl_handshake_timeout, ssl_shutdown_timeout; /* only with ssl */
} aev_connection_options_t;

/** Opens a stream connection to host:port (create_connection): resolves host, tries each
 *  address in order until one connects, then makes the transport and protocol. The future
 *  (it is a task: cancel it to stop) is done once connection_made has run; its value is the
 *  aev_transport_t *, held by the future. Errors: the connection's (-ECONNREFUSED, ...), the
 *  resolver's (AEV_EDNS_*); with several addresses failing, the first error and a detail
 *  naming every attempt. Bad option combinations: -EINVAL with a detail, at once. */
int aev_loop_create_connection(aev_loop_t *loop, aev_protocol_factory_fn factory, void *userdata,
                               const char *host, int port, const aev_connection_options_t *opts,
                               aev_future_t **out);

/** Opens a Unix stream connection to path ("@name": abstract namespace)
 *  (create_unix_connection); opts: use_sock+sock only. As create_connection otherwise. */
int aev_loop_create_unix_connection(aev_loop_t *loop, aev_protocol_factory_fn factory, void *userdata,
                                    const char *path, const aev_connection_options_t *opts,
                                    aev_future_t **out);

/* ---- servers ------------------------------------------------------------------------ */

/* Options of create_server; zero means the spec's default. */
typedef struct aev_server_options {
    int family;          /* AF_UNSPEC, AF_INET or AF_INET6 */
    int flags;           /* getaddrinfo flags (AI_PASSIVE is implied) */
    int use_sock;        /* 1: serve sock (an already bound socket) instead of host/port */
    int sock;
    int backlog;         /* listen() backlog; 0: 100 */
    int reuse_address;   /* 0: default (on, on Unix), 1: on, -1: off */
    int reuse_port;      /* 1: SO_REUSEPORT */
    int keep_alive;      /* 1: SO_KEEPALIVE on accepted connections */
    int no_start;        /* 1: start_serving=False (serve later with aev_server_start_serving) */
} aev_server_options_t;

/** Creates a TCP server listening on host:port (create_server). host NULL or "" means all
 *  interfaces; a comma list gives several hosts; port 0 picks a free one. Names are resolved
 *  with aev_loop_getaddrinfo (AI_PASSIVE), each address found gets a socket. With numeric
 *  hosts only, the future is done at once and bind errors are returned at once, with a detail
 *  naming the address; with names, they are the future's error. The future's value is the
 *  aev_server_t * with one reference: aev_server_ref() it to keep the server after releasing
 *  the future. */
int aev_loop_create_server(aev_loop_t *loop, aev_protocol_factory_fn factory, void *userdata,
                           const char *host, int port, const aev_server_options_t *opts,
                           aev_future_t **out);

/** Creates a Unix stream server on path (create_unix_server). "@name" is Linux's abstract
 *  namespace (no file). A stale socket file at path is removed first, and the server removes
 *  its own socket file when it closes (cleanup_socket). opts: backlog, use_sock+sock,
 *  no_start; the others do not apply. The future is done at once, as create_server's. */
int aev_loop_create_unix_server(aev_loop_t *loop, aev_protocol_factory_fn factory, void *userdata,
                                const char *path, const aev_server_options_t *opts, aev_future_t **out);

/** Adds a reference to the server. */
aev_server_t *aev_server_ref(aev_server_t *s);
/** Releases a reference; the last one closes the server if needed and frees it. */
void aev_server_unref(aev_server_t *s);
/** Returns the server's loop (get_loop). */
aev_loop_t *aev_server_get_loop(const aev_server_t *s);
/** Stops listening: the listening sockets are closed; connections stay (close). */
void aev_server_close(aev_server_t *s);
/** Closes every connection of the server gracefully (close_clients). */
void aev_server_close_clients(aev_server_t *s);
/** Aborts every connection of the server (abort_clients). */
void aev_server_abort_clients(aev_server_t *s);
/** Starts accepting (start_serving); idempotent. */
int aev_server_start_serving(aev_server_t *s);
/** Starts serving if needed and gives a future that never completes by itself
 *  (serve_forever): cancelling it closes the server; closing the server cancels it. One
 *  serve_forever per server at a time (AEV_EINVALID_STATE). Await it from a task. */
int aev_server_serve_forever(aev_server_t *s, aev_future_t **out);
/** Returns 1 while accepting (is_serving). */
int aev_server_is_serving(const aev_server_t *s);
/** A future done when the server is closed and its connections are gone (wait_closed). */
int aev_server_wait_closed(aev_server_t *s, aev_future_t **out);
/** Returns the number of listening sockets; up to cap of their fds go to fds (sockets). */
size_t aev_server_sockets(const aev_server_t *s, int *fds, size_t cap);

/* ---- datagrams ----------------------------------------------------------------------- */

/* Datagram endpoints (asyncio's loop.create_datagram_endpoint, DatagramTransport and
 * DatagramProtocol) over UDP (AF_INET, AF_INET6) and Unix datagram sockets (AF_UNIX).
 *
 * A datagram transport is a type of its own, aev_datagram_transport_t, with its own
 * functions (aev_datagram_transport_*), and its protocol is an aev_datagram_protocol_t:
 * a datagram endpoint has no byte stream to write into or end (write, write_eof,
 * eof_received, get_buffer do not apply), and its protocol receives whole datagrams with
 * their sender's address, so the stream types are not reused.
 *
 * Order of calls, as asyncio: connection_made first, then any number of datagram_received
 * and error_received, and connection_lost last, exactly once; after it the transport never
 * touches the protocol again (connection_lost may free it).
 *
 * Errors of the socket do not end the endpoint (asyncio's error_received): a receive or a
 * send that fails (-ECONNREFUSED when a connected UDP endpoint's peer answered an earlier
 * datagram with "port unreachable", -EMSGSIZE, ...) is given to error_received and the
 * transport stays open. Only errors of the loop itself (no memory, a socket that cannot be
 * watched) are fatal: reported to the exception handler, then connection_lost(error).
 *
 * Protocol callbacks return 0 or a negative code ("raised"): connection_made raising is
 * reported to the exception handler and aborts the transport (the endpoint's future fails
 * with that code), as for streams; datagram_received, error_received, pause_writing and
 * resume_writing raising are reported and the transport stays open, as asyncio's datagram
 * transport leaves it. The exception context has has_socket/socket set; its protocol and
 * transport members are for stream transports and stay NULL.
 *
 * Lifetime: the loop owns the transport from connection_made until connection_lost has
 * returned (aev_datagram_transport_ref/unref keep it longer). When the loop closes, open
 * endpoints are closed and their protocols get connection_lost(AEV_ECLOSED).
 */
typedef struct aev_datagram_transport aev_datagram_transport_t;
typedef struct aev_datagram_protocol aev_datagram_protocol_t;

/* A datagram protocol: set the callbacks it handles, leave the others NULL. */
struct aev_datagram_protocol {
    void *userdata;
    /* BaseProtocol */
    int (*connection_made)(aev_datagram_protocol_t *p, aev_datagram_transport_t *t);
    /* error: 0 after close/abort, AEV_ECLOSED at loop close, or the fatal error */
    int (*connection_lost)(aev_datagram_protocol_t *p, int error);
    int (*pause_writing)(aev_datagram_protocol_t *p);
    int (*resume_writing)(aev_datagram_protocol_t *p);
    /* DatagramProtocol: one whole datagram (len may be 0), valid only during the call. addr
     * is the sender's address (addrlen bytes), or NULL and 0 for an unnamed Unix socket. */
    int (*datagram_received)(aev_datagram_protocol_t *p, const void *data, size_t len,
                             const struct sockaddr *addr, socklen_t addrlen);
    /* a send or receive failed (a negative errno); the transport stays open */
    int (*error_received)(aev_datagram_protocol_t *p, int error);
};

/** Makes the protocol of a new endpoint (protocol_factory); NULL refuses it (-ENOMEM). */
typedef aev_datagram_protocol_t *(*aev_datagram_protocol_factory_fn)(void *userdata);

/* Options of create_datagram_endpoint; zero means the spec's default. Ports are used only
 * with their host; a port without its host is -EINVAL. */
typedef struct aev_datagram_options {
    const char *local_host;  /* local_addr: bind to local_host:local_port ("" : every
                                interface, the wildcard address); NULL: no bind */
    int local_port;          /* 0: a free port */
    const char *remote_host; /* remote_addr: connect to remote_host:remote_port (the default
                                destination of sendto); NULL: none */
    int remote_port;
    const char *local_path;  /* AF_UNIX: bind to this path ("@name": abstract namespace); a
                                stale socket file there is removed first */
    const char *remote_path; /* AF_UNIX: connect to this path */
    int family;              /* AF_UNSPEC (from the addresses), AF_INET, AF_INET6, AF_UNIX; with
                                no address at all it must be given (an unbound socket) */
    int proto;               /* getaddrinfo protocol / socket protocol */
    int flags;               /* getaddrinfo flags */
    int reuse_address;       /* must stay 0: refused (-EINVAL) as asyncio 3.8.1+ refuses it, since
                                SO_REUSEADDR lets other users' UDP sockets take the datagrams */
    int reuse_port;          /* 1: SO_REUSEPORT (AF_INET/AF_INET6 only) */
    int allow_broadcast;     /* 1: SO_BROADCAST; the remote address is then not connect()ed,
                                only used as sendto's default destination (asyncio) */
    int use_sock;            /* 1: use sock, an existing datagram socket, instead of addresses */
    int sock;
} aev_datagram_options_t;

/** Creates a datagram endpoint (create_datagram_endpoint). Host names are resolved with
 *  aev_loop_getaddrinfo (SOCK_DGRAM, opts' family/proto/flags); for each (family, protocol)
 *  having both a local and a remote address (as far as they were asked for), in the order
 *  getaddrinfo gave them, a socket is opened, given its options, bound and connected, until
 *  one succeeds (else the first error, the detail naming every attempt). The future (a
 *  task: cancel it to give up) is done once connection_made has run; its value is the
 *  aev_datagram_transport_t *, held by the future. Bad input is refused at once with -EINVAL
 *  and a detail, and nothing is opened: reuse_address, a port outside 0-65535, a port
 *  without its host, an unknown family, no address and no family, hosts with AF_UNIX or
 *  paths with another family, reuse_port on AF_UNIX, use_sock with any address or socket
 *  option (family, proto, flags, reuse_port, allow_broadcast), a sock that is not a datagram
 *  socket. With use_sock the endpoint owns sock once this returned 0 (it is closed with the
 *  transport, or if the future fails); on an error returned here it stays the caller's. */
int aev_loop_create_datagram_endpoint(aev_loop_t *loop, aev_datagram_protocol_factory_fn factory,
                                      void *userdata, const aev_datagram_options_t *opts,
                                      aev_future_t **out);

/** Sends one datagram (sendto): data (len bytes, 0 allowed) to addr, or with addr NULL to
 *  the remote address (remote_addr, or the peer of a connected sock). Tried at once; when
 *  the socket would block, the datagram is copied into the write buffer and sent later,
 *  whole and in order. Returns 0 also when the send failed: that error goes to
 *  error_received, as asyncio. -EINVAL: addr differs from the remote address (asyncio's
 *  "Invalid address"), a bad addrlen, NULL data with len > 0; -EDESTADDRREQ: addr NULL and no
 *  remote address; AEV_EINVALID_STATE once closing. */
int aev_datagram_transport_sendto(aev_datagram_transport_t *t, const void *data, size_t len,
                                  const struct sockaddr *addr, socklen_t addrlen);

/** Closes once the buffered datagrams are sent; connection_lost(0) follows (close). */
void aev_datagram_transport_close(aev_datagram_transport_t *t);
/** Closes at once, dropping the buffered datagrams; connection_lost(0) follows (abort). */
void aev_datagram_transport_abort(aev_datagram_transport_t *t);
/** Returns 1 once the transport is closing or closed (is_closing). */
int aev_datagram_transport_is_closing(const aev_datagram_transport_t *t);

/** Stops delivering datagrams until resume_reading (pause_reading); they wait in the
 *  socket's receive queue. Idempotent. */
void aev_datagram_transport_pause_reading(aev_datagram_transport_t *t);
/** Resumes delivering datagrams (resume_reading). Idempotent. */
void aev_datagram_transport_resume_reading(aev_datagram_transport_t *t);
/** Returns 1 while the transport reads (is_reading). */
int aev_datagram_transport_is_reading(const aev_datagram_transport_t *t);

/** Sets the write-buffer marks: pause_writing above high, resume_writing at low or below;
 *  -1 for a default (high 64 KiB, low high / 4). -EINVAL if low > high. */
int aev_datagram_transport_set_write_buffer_limits(aev_datagram_transport_t *t, long high, long low);
/** Reads the marks (either pointer may be NULL). */
void aev_datagram_transport_get_write_buffer_limits(const aev_datagram_transport_t *t, size_t *low,
                                                    size_t *high);
/** Returns the size of the write buffer: each buffered datagram's bytes plus 8 (its UDP
 *  header), as asyncio 3.13 counts (get_write_buffer_size). */
size_t aev_datagram_transport_get_write_buffer_size(const aev_datagram_transport_t *t);

/** Replaces the protocol (set_protocol); the old one gets no more calls. */
void aev_datagram_transport_set_protocol(aev_datagram_transport_t *t, aev_datagram_protocol_t *p);
/** Returns the protocol (get_protocol). */
aev_datagram_protocol_t *aev_datagram_transport_get_protocol(const aev_datagram_transport_t *t);
/** Returns the loop of the transport. */
aev_loop_t *aev_datagram_transport_get_loop(const aev_datagram_transport_t *t);

/** get_extra_info('socket'): the file descriptor (still the transport's), or -1 after close. */
int aev_datagram_transport_get_fd(const aev_datagram_transport_t *t);
/** get_extra_info('peername'): 0 and the connected peer's address, or a negative error
 *  (-ENOTCONN: not connected: no remote address, or allow_broadcast). *len is in/out. */
int aev_datagram_transport_get_peername(const aev_datagram_transport_t *t, struct sockaddr *addr,
                                        socklen_t *len);
/** get_extra_info('sockname'). */
int aev_datagram_transport_get_sockname(const aev_datagram_transport_t *t, struct sockaddr *addr,
                                        socklen_t *len);

/** Adds a reference, so that the transport outlives its connection_lost. */
aev_datagram_transport_t *aev_datagram_transport_ref(aev_datagram_transport_t *t);
/** Releases a reference taken with aev_datagram_transport_ref(). */
void aev_datagram_transport_unref(aev_datagram_transport_t *t);
/* ---- sending files ---------------------------------------------------------------------- */

/** Sends count bytes (0: up to the end of the file) of the regular file file_fd, from offset,
 *  over the transport (loop.sendfile). The future is a task (cancel it to stop); its value is
 *  the number of bytes sent, an intptr_t in the void * (read it with aev_future_result()).
 *  Bytes written to the transport before arrive first: the write buffer drains before the
 *  file goes. On a stream transport the file goes with sendfile(2) (reading paused meanwhile;
 *  aev_transport_write() is refused with AEV_EINVALID_STATE until the future is done); where
 *  that is impossible and fallback is 1, it is read with pread() and written to the transport
 *  with its flow control, the future being done once the write buffer drained; with fallback
 *  0 the future fails with AEV_ESENDFILE_NOT_AVAILABLE. When the future is done, the file's
 *  position is offset + bytes sent, however it ended. Keep file_fd open until then.
 *  Refused at once (*out NULL, with a detail): a closing transport or one already sending a
 *  file (AEV_EINVALID_STATE); a directory (-EISDIR), a file that is not regular or a negative
 *  offset or count (-EINVAL), a file not open for reading (-EBADF). A transport closed
 *  meanwhile fails the future with the connection's error (-ECONNABORTED if none). */
int aev_loop_sendfile(aev_loop_t *loop, aev_transport_t *t, int file_fd, int64_t offset, int64_t count,
                      int fallback, aev_future_t **out);
/* ---- pipes ------------------------------------------------------------------------------ */
/* Pipe transports are aev_transport_t too, with the same protocol calls as streams:
 *  - a read pipe only reads: data_received (or a buffered protocol's get_buffer/buffer_updated),
 *    then at EOF eof_received, whose return value does not matter (a read pipe cannot stay
 *    half open), and connection_lost(0). write, writelines and write_eof return
 *    AEV_EINVALID_STATE; can_write_eof is 0; abort is close.
 *  - a write pipe only writes, with the write buffer and its marks (pause_writing and
 *    resume_writing) as a stream; write_eof is close: the fd is closed once the buffer drained,
 *    then connection_lost(0); can_write_eof is 1; pause/resume_reading do nothing and
 *    is_reading is 0. When the reader goes away (the write end of a pipe or socket is watched,
 *    as asyncio does) the transport closes: connection_lost(0) if nothing was buffered, else
 *    connection_lost(-EPIPE); a write that finds the reader gone ends it with
 *    connection_lost(-EPIPE). No SIGPIPE is raised. */

/** Connects the read end of a pipe (connect_read_pipe): fd may be a pipe or FIFO, a socket or
 *  a character device (a tty); anything else, a regular file for instance, is refused with
 *  -EINVAL and a detail ("Pipe transport is for pipes/sockets only."). fd is made non-blocking.
 *  On success the transport owns fd (it is closed before connection_lost); on failure fd is left
 *  to the caller as it was. The future is done once connection_made has run; its value is the
 *  aev_transport_t * (held by the future). */
int aev_loop_connect_read_pipe(aev_loop_t *loop, aev_protocol_factory_fn factory, void *userdata, int fd,
                               aev_future_t **out);

/** Connects the write end of a pipe (connect_write_pipe); fd as for connect_read_pipe (refused:
 *  "Pipe transport is only for pipes, sockets and character devices"). As connect_read_pipe
 *  otherwise. */
int aev_loop_connect_write_pipe(aev_loop_t *loop, aev_protocol_factory_fn factory, void *userdata, int fd,
                                aev_future_t **out);

/** get_extra_info('pipe'): the pipe transport's fd, -1 after close or for a stream transport. */
int aev_transport_get_pipe(const aev_transport_t *t);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif /* AEV_TRANSPORT_H */
