/*
 * recording_server: a Modbus TCP server on libmodbus that records what it applies and injects faults.
 *
 * Test peer for linegate (tests/plc/recording_peer.py builds and drives it). It listens on
 * 127.0.0.1:<port>, serves many clients over time and at once (one select() loop over the listening
 * socket and every client socket; libmodbus parses each request and applies it to the mapping), and
 * prints one line per event on stdout, flushed at once:
 *
 *   PORT <port>                              first line: the port it listens on
 *   C <t_ns> <conn> <peer_port>              a client connected (conn: 1, 2, ... in accept order)
 *   D <t_ns> <conn>                          a connection closed (by the client, by --drop-after, at exit)
 *   W <t_ns> <fc> <addr> <count> <v0> ...    a write it applied (coils as 0/1; FC22: the resulting value;
 *                                            FC23: its write part)
 *   R <t_ns> <fc> <addr> <count>             a read it answered (FC1-4; FC17 as addr 0 count 0)
 *   E <t_ns> <fc> <addr> <count> <code>      a request answered with Modbus exception <code>, not applied
 *   S <t_ns> <fc> <addr> <count>             a request swallowed while stalled: not applied, never answered
 *   U <t_ns>                                 resumed from a stall (SIGUSR1)
 *
 * t_ns is clock_gettime(CLOCK_MONOTONIC), the clock of Python's time.monotonic_ns(). A line is printed
 * when the request is applied, which is before its reply is sent (and before any delay).
 *
 * Mapping: 256 coils, 256 holding registers (all 0 at start), 16 discrete inputs (odd addresses 1),
 * 16 input registers (input register i holds 0x100 + i).
 *
 * Faults (flags; requests are counted 1, 2, ... over all connections):
 *   --port N             port on 127.0.0.1 (0, the default: a free one, printed on the PORT line)
 *   --delay-ms N         delay replies by N ms; the request is applied before the delay
 *   --delay-share P      delay only a random share P (0..1) of the replies that --delay-fc and
 *                        --delay-on-only let through (drawn from a generator seeded by --seed)
 *   --seed S             seed of that generator (default 1)
 *   --delay-fc F         delay only replies to function code F
 *   --delay-on-only      delay only replies to write-single-coil ON (FC5, 0xFF00)
 *   --exception-fc F     answer every request with function code F with exception --exception-code
 *   --exception-code C   (default 4, server device failure) without applying it
 *   --stall-after K      answer the first K requests, then answer none: requests are still read (and
 *                        recorded as S) but neither applied nor answered, until SIGUSR1 resumes
 *                        normal service for good
 *   --drop-after K       apply the K-th request, then close its connection instead of replying
 *   --short-reply-fc F   apply every request with function code F, then answer it with its reply
 *                        one byte short (the MBAP length says so: a well-framed reply whose PDU is
 *                        too short for its function, as from a faulty PLC firmware)
 *   --short-reply-on-only   short only the replies to write-single-coil ON (FC5, 0xFF00)
 *
 * How a delay is served: a delayed reply waits in its connection's slot while the loop goes on
 * serving every other connection; the delayed connection itself is not read again until its reply
 * has gone out (the next request waits in the socket, as at a PLC that serves a connection one
 * request at a time). So a delay never blocks other clients. (Receiving one request does block the
 * loop while it arrives: libmodbus waits up to its byte timeout, 0.5 s, for a request sent in pieces.)
 *
 * At most 64 connections at once (one more is accepted and closed at once, without records).
 * Bad flags: a usage line on stderr, exit status 2.
 * SIGTERM or SIGINT: close every connection (D records) and exit 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <modbus.h>

#define NB_COILS 256
#define NB_HOLDING 256
#define NB_DISCRETE 16
#define NB_INPUT_REGS 16
#define MAX_CLIENTS 64
#define HEADER 7 /* MBAP header length: the function code is at req[7] */

struct client {
    int fd; /* -1: slot free */
    int id;
    uint8_t reply[MODBUS_TCP_MAX_ADU_LENGTH];
    int reply_len; /* > 0: a delayed reply waits until due_ns */
    int64_t due_ns;
};

struct options {
    int port;
    long delay_ms;
    double delay_share;
    uint64_t seed;
    int delay_fc;
    int delay_on_only;
    int exception_fc;
    int exception_code;
    long stall_after;
    long drop_after;
    int short_reply_fc;
    int short_reply_on_only;
};

static volatile sig_atomic_t g_stop = 0;
static volatile sig_atomic_t g_resume = 0;

static struct client clients[MAX_CLIENTS];
static struct options opt;
static modbus_t *ctx;
static modbus_mapping_t *mapping;
static int capture[2]; /* socketpair: libmodbus writes a reply to capture[0], we read it from capture[1] */
static uint64_t rng_state;
static long n_requests = 0;
static int stalled = 0;
static int stall_done = 0;
static int next_conn_id = 1;

static void on_stop(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void on_resume(int sig)
{
    (void)sig;
    g_resume = 1;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* splitmix64: a small, seedable generator so that --seed gives the same draws everywhere. */
static double next_uniform(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z = z ^ (z >> 31);
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void emit(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

static unsigned u16(const uint8_t *p)
{
    return ((unsigned)p[0] << 8) | p[1];
}

/* Address and quantity of a request, as recorded (count 1 for single writes). */
static void request_span(const uint8_t *req, int len, unsigned *addr, unsigned *count)
{
    int fc = req[HEADER];
    *addr = len >= HEADER + 3 ? u16(req + HEADER + 1) : 0;
    *count = 0;
    switch (fc) {
    case MODBUS_FC_READ_COILS:
    case MODBUS_FC_READ_DISCRETE_INPUTS:
    case MODBUS_FC_READ_HOLDING_REGISTERS:
    case MODBUS_FC_READ_INPUT_REGISTERS:
    case MODBUS_FC_WRITE_MULTIPLE_COILS:
    case MODBUS_FC_WRITE_MULTIPLE_REGISTERS:
        *count = len >= HEADER + 5 ? u16(req + HEADER + 3) : 0;
        break;
    case MODBUS_FC_WRITE_SINGLE_COIL:
    case MODBUS_FC_WRITE_SINGLE_REGISTER:
    case MODBUS_FC_MASK_WRITE_REGISTER:
        *count = 1;
        break;
    case MODBUS_FC_WRITE_AND_READ_REGISTERS:
        /* recorded by its write part */
        *addr = len >= HEADER + 7 ? u16(req + HEADER + 5) : 0;
        *count = len >= HEADER + 9 ? u16(req + HEADER + 7) : 0;
        break;
    default:
        *addr = 0;
        break;
    }
}

/* The record of a request that libmodbus answered without an exception. */
static void record_applied(int64_t t, const uint8_t *req)
{
    int fc = req[HEADER];
    const uint8_t *pdu = req + HEADER;
    unsigned addr = u16(pdu + 1), i, n;
    char line[8192];
    int off;

    switch (fc) {
    case MODBUS_FC_READ_COILS:
    case MODBUS_FC_READ_DISCRETE_INPUTS:
    case MODBUS_FC_READ_HOLDING_REGISTERS:
    case MODBUS_FC_READ_INPUT_REGISTERS:
        emit("R %lld %d %u %u\n", (long long)t, fc, addr, u16(pdu + 3));
        return;
    case MODBUS_FC_WRITE_SINGLE_COIL:
        emit("W %lld %d %u 1 %d\n", (long long)t, fc, addr, u16(pdu + 3) == 0xFF00 ? 1 : 0);
        return;
    case MODBUS_FC_WRITE_SINGLE_REGISTER:
        emit("W %lld %d %u 1 %u\n", (long long)t, fc, addr, u16(pdu + 3));
        return;
    case MODBUS_FC_MASK_WRITE_REGISTER:
        emit("W %lld %d %u 1 %u\n", (long long)t, fc, addr, (unsigned)mapping->tab_registers[addr]);
        return;
    case MODBUS_FC_WRITE_MULTIPLE_COILS:
        n = u16(pdu + 3);
        off = snprintf(line, sizeof line, "W %lld %d %u %u", (long long)t, fc, addr, n);
        for (i = 0; i < n; i++)
            off += snprintf(line + off, sizeof line - off, " %d", (pdu[6 + i / 8] >> (i % 8)) & 1);
        emit("%s\n", line);
        return;
    case MODBUS_FC_WRITE_MULTIPLE_REGISTERS:
        n = u16(pdu + 3);
        off = snprintf(line, sizeof line, "W %lld %d %u %u", (long long)t, fc, addr, n);
        for (i = 0; i < n; i++)
            off += snprintf(line + off, sizeof line - off, " %u", u16(pdu + 6 + 2 * i));
        emit("%s\n", line);
        return;
    case MODBUS_FC_WRITE_AND_READ_REGISTERS:
        addr = u16(pdu + 5);
        n = u16(pdu + 7);
        off = snprintf(line, sizeof line, "W %lld %d %u %u", (long long)t, fc, addr, n);
        for (i = 0; i < n; i++)
            off += snprintf(line + off, sizeof line - off, " %u", u16(pdu + 10 + 2 * i));
        emit("%s\n", line);
        return;
    default:
        emit("R %lld %d 0 0\n", (long long)t, fc);
        return;
    }
}

static void close_client(struct client *c)
{
    /* printed before the close: a client that sees the connection closed finds the D record there */
    emit("D %lld %d\n", (long long)mono_ns(), c->id);
    close(c->fd);
    c->fd = -1;
    c->reply_len = 0;
}

static void send_reply(struct client *c, const uint8_t *buf, int len)
{
    int sent = 0;
    while (sent < len) {
        ssize_t rc = send(c->fd, buf + sent, len - sent, MSG_NOSIGNAL);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            close_client(c);
            return;
        }
        sent += (int)rc;
    }
}

/* Reads back what libmodbus wrote to the capture socket: the reply it built (0 bytes if none). */
static int take_captured(uint8_t *buf, int size)
{
    int len = 0;
    for (;;) {
        ssize_t rc = recv(capture[1], buf + len, size - len, MSG_DONTWAIT);
        if (rc > 0) {
            len += (int)rc;
            if (len == size)
                return len;
        } else if (rc < 0 && errno == EINTR) {
            continue;
        } else {
            return len;
        }
    }
}

static int is_coil_on(int fc, const uint8_t *req, int len)
{
    return fc == MODBUS_FC_WRITE_SINGLE_COIL && len >= HEADER + 5 && u16(req + HEADER + 3) == 0xFF00;
}

static int should_delay(int fc, const uint8_t *req, int len)
{
    if (opt.delay_ms <= 0)
        return 0;
    if (opt.delay_fc >= 0 && fc != opt.delay_fc)
        return 0;
    if (opt.delay_on_only && !is_coil_on(fc, req, len))
        return 0;
    if (opt.delay_share < 1.0)
        return next_uniform() < opt.delay_share;
    return 1;
}

static void handle_request(struct client *c)
{
    uint8_t req[MODBUS_TCP_MAX_ADU_LENGTH];
    uint8_t reply[MODBUS_TCP_MAX_ADU_LENGTH];
    unsigned addr, count;
    int len, reply_len, fc;
    int64_t t;

    modbus_set_socket(ctx, c->fd);
    len = modbus_receive(ctx, req);
    if (len < 0) { /* closed by the client, or a broken request */
        close_client(c);
        return;
    }
    if (len <= HEADER)
        return;
    t = mono_ns();
    fc = req[HEADER];
    request_span(req, len, &addr, &count);
    n_requests++;

    if (!stalled && !stall_done && opt.stall_after >= 0 && n_requests > opt.stall_after)
        stalled = 1;
    if (stalled) {
        emit("S %lld %d %u %u\n", (long long)t, fc, addr, count);
        return;
    }

    /* Apply (libmodbus validates the request, updates the mapping and builds the reply); the reply
       goes to the capture socket so that it can be held back, or dropped, here. */
    modbus_set_socket(ctx, capture[0]);
    if (fc == opt.exception_fc) {
        modbus_reply_exception(ctx, req, (unsigned)opt.exception_code);
    } else if (modbus_reply(ctx, req, len, mapping) < 0) {
        /* a function code libmodbus does not serve (FC7): answer "illegal function" */
        take_captured(reply, sizeof reply);
        modbus_reply_exception(ctx, req, MODBUS_EXCEPTION_ILLEGAL_FUNCTION);
    }
    reply_len = take_captured(reply, sizeof reply);
    if (reply_len > HEADER + 1 && (reply[HEADER] & 0x80))
        emit("E %lld %d %u %u %d\n", (long long)t, fc, addr, count, reply[HEADER + 1]);
    else if (reply_len > HEADER)
        record_applied(t, req);

    if (opt.drop_after > 0 && n_requests == opt.drop_after) {
        close_client(c);
        return;
    }
    if (reply_len <= 0)
        return;
    if (fc == opt.short_reply_fc && reply_len > HEADER + 1 &&
        (!opt.short_reply_on_only || is_coil_on(fc, req, len))) {
        reply_len -= 1; /* the MBAP length (bytes 4-5) counts the unit id and the PDU */
        reply[4] = (uint8_t)((reply_len - 6) >> 8);
        reply[5] = (uint8_t)((reply_len - 6) & 0xFF);
    }
    if (should_delay(fc, req, len)) {
        memcpy(c->reply, reply, (size_t)reply_len);
        c->reply_len = reply_len;
        c->due_ns = t + (int64_t)opt.delay_ms * 1000000LL;
        return;
    }
    send_reply(c, reply, reply_len);
}

static void accept_client(int listen_fd)
{
    struct sockaddr_in peer;
    socklen_t peer_len = sizeof peer;
    int fd, i, one = 1;

    fd = accept(listen_fd, (struct sockaddr *)&peer, &peer_len);
    if (fd < 0)
        return;
    for (i = 0; i < MAX_CLIENTS; i++) {
        if (clients[i].fd < 0)
            break;
    }
    if (i == MAX_CLIENTS || fd >= FD_SETSIZE) {
        close(fd);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    clients[i].fd = fd;
    clients[i].id = next_conn_id++;
    clients[i].reply_len = 0;
    emit("C %lld %d %d\n", (long long)mono_ns(), clients[i].id, ntohs(peer.sin_port));
}

static int open_listener(int port)
{
    struct sockaddr_in addr;
    socklen_t addr_len = sizeof addr;
    int fd, one = 1;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 64) < 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &addr_len) < 0) {
        close(fd);
        return -1;
    }
    emit("PORT %d\n", ntohs(addr.sin_port));
    return fd;
}

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [--port N] [--delay-ms N] [--delay-share P] [--seed S] [--delay-fc F]\n"
            "          [--delay-on-only] [--exception-fc F] [--exception-code C]\n"
            "          [--stall-after K] [--drop-after K] [--short-reply-fc F]\n"
            "          [--short-reply-on-only]\n",
            prog);
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_options(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},
        {"delay-ms", required_argument, NULL, 'd'},
        {"delay-share", required_argument, NULL, 's'},
        {"seed", required_argument, NULL, 'S'},
        {"delay-fc", required_argument, NULL, 'f'},
        {"delay-on-only", no_argument, NULL, 'o'},
        {"exception-fc", required_argument, NULL, 'e'},
        {"exception-code", required_argument, NULL, 'c'},
        {"stall-after", required_argument, NULL, 't'},
        {"drop-after", required_argument, NULL, 'x'},
        {"short-reply-fc", required_argument, NULL, 'r'},
        {"short-reply-on-only", no_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    long v;
    char *end;

    opt.port = 0;
    opt.delay_ms = 0;
    opt.delay_share = 1.0;
    opt.seed = 1;
    opt.delay_fc = -1;
    opt.delay_on_only = 0;
    opt.exception_fc = -1;
    opt.exception_code = MODBUS_EXCEPTION_SLAVE_OR_SERVER_FAILURE;
    opt.stall_after = -1;
    opt.drop_after = -1;
    opt.short_reply_fc = -1;
    opt.short_reply_on_only = 0;

    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'p':
            if (parse_long(optarg, 0, 65535, &v) < 0)
                return -1;
            opt.port = (int)v;
            break;
        case 'd':
            if (parse_long(optarg, 0, 3600000, &v) < 0)
                return -1;
            opt.delay_ms = v;
            break;
        case 's':
            errno = 0;
            opt.delay_share = strtod(optarg, &end);
            if (errno != 0 || end == optarg || *end != '\0' || !(opt.delay_share >= 0.0 && opt.delay_share <= 1.0))
                return -1;
            break;
        case 'S':
            errno = 0;
            opt.seed = strtoull(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0')
                return -1;
            break;
        case 'f':
            if (parse_long(optarg, 1, 127, &v) < 0)
                return -1;
            opt.delay_fc = (int)v;
            break;
        case 'o':
            opt.delay_on_only = 1;
            break;
        case 'e':
            if (parse_long(optarg, 1, 127, &v) < 0)
                return -1;
            opt.exception_fc = (int)v;
            break;
        case 'c':
            if (parse_long(optarg, 1, MODBUS_EXCEPTION_MAX - 1, &v) < 0)
                return -1;
            opt.exception_code = (int)v;
            break;
        case 't':
            if (parse_long(optarg, 0, 1000000000, &v) < 0)
                return -1;
            opt.stall_after = v;
            break;
        case 'x':
            if (parse_long(optarg, 1, 1000000000, &v) < 0)
                return -1;
            opt.drop_after = v;
            break;
        case 'r':
            if (parse_long(optarg, 1, 127, &v) < 0)
                return -1;
            opt.short_reply_fc = (int)v;
            break;
        case 'R':
            opt.short_reply_on_only = 1;
            break;
        default:
            return -1;
        }
    }
    return optind == argc ? 0 : -1;
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    int listen_fd, i;

    if (parse_options(argc, argv) < 0) {
        usage(argv[0]);
        return 2;
    }
    rng_state = opt.seed;

    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop; /* no SA_RESTART: select() returns EINTR and the loop sees the flag */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_resume;
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    for (i = 0; i < MAX_CLIENTS; i++)
        clients[i].fd = -1;

    ctx = modbus_new_tcp("127.0.0.1", opt.port);
    mapping = modbus_mapping_new(NB_COILS, NB_DISCRETE, NB_HOLDING, NB_INPUT_REGS);
    if (ctx == NULL || mapping == NULL) {
        fprintf(stderr, "recording_server: libmodbus: %s\n", modbus_strerror(errno));
        return 1;
    }
    /* libmodbus sleeps for the response timeout before some exception replies (after a malformed
       request); keep that sleep short, it would hold up every client. */
    modbus_set_response_timeout(ctx, 0, 1000);
    for (i = 0; i < NB_DISCRETE; i++)
        mapping->tab_input_bits[i] = (uint8_t)(i & 1);
    for (i = 0; i < NB_INPUT_REGS; i++)
        mapping->tab_input_registers[i] = (uint16_t)(0x100 + i);

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, capture) < 0) {
        perror("recording_server: socketpair");
        return 1;
    }
    listen_fd = open_listener(opt.port);
    if (listen_fd < 0) {
        perror("recording_server: listen");
        return 1;
    }

    while (!g_stop) {
        fd_set rset;
        struct timeval tv, *ptv = NULL;
        int64_t now, next_due = -1;
        int max_fd = listen_fd, rc;

        if (g_resume) {
            g_resume = 0;
            if (stalled || !stall_done) {
                stalled = 0;
                stall_done = 1;
                emit("U %lld\n", (long long)mono_ns());
            }
        }

        now = mono_ns();
        FD_ZERO(&rset);
        FD_SET(listen_fd, &rset);
        for (i = 0; i < MAX_CLIENTS; i++) {
            struct client *c = &clients[i];
            if (c->fd >= 0 && c->reply_len > 0 && c->due_ns <= now) {
                int n = c->reply_len;
                c->reply_len = 0;
                send_reply(c, c->reply, n);
            }
            if (c->fd < 0)
                continue;
            if (c->reply_len > 0) {
                if (next_due < 0 || c->due_ns < next_due)
                    next_due = c->due_ns;
                continue; /* not read again until its delayed reply is out */
            }
            FD_SET(c->fd, &rset);
            if (c->fd > max_fd)
                max_fd = c->fd;
        }
        if (next_due >= 0) {
            int64_t wait = next_due - now;
            tv.tv_sec = (time_t)(wait / 1000000000LL);
            tv.tv_usec = (suseconds_t)((wait % 1000000000LL) / 1000);
            ptv = &tv;
        }

        rc = select(max_fd + 1, &rset, NULL, NULL, ptv);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            perror("recording_server: select");
            break;
        }
        if (FD_ISSET(listen_fd, &rset))
            accept_client(listen_fd);
        for (i = 0; i < MAX_CLIENTS && !g_stop; i++) {
            if (clients[i].fd >= 0 && clients[i].reply_len == 0 && FD_ISSET(clients[i].fd, &rset))
                handle_request(&clients[i]);
        }
    }

    for (i = 0; i < MAX_CLIENTS; i++) {
        if (clients[i].fd >= 0)
            close_client(&clients[i]);
    }
    close(listen_fd);
    close(capture[0]);
    close(capture[1]);
    modbus_mapping_free(mapping);
    modbus_free(ctx);
    return 0;
}
