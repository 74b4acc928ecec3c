/* The C reference of the Modbus -> InfluxDB benches: what a lean client costs doing the job of
 * `shopfloor connect` on the same workload, so that our figures can be given as a ratio to it.
 *
 * Usage: modbus_influx MODBUS_PORT INFLUX_PORT DB DEVICES REGISTERS POLL_US POINTS_PER_POST
 *
 * Every POLL_US it reads REGISTERS holding registers from address 0 of DEVICES devices, unit
 * ids 1, 2, ... (after 247 they start again at 1, as the bench's connectors file does)
 * (libmodbus, FC3, one connection to 127.0.0.1): the cycle's requests go out together, one per
 * unit id in flight as `shopfloor connect` does by default, and the answers are taken in order
 * (libmodbus' raw request and confirmation calls). Each read is stamped with the time its answer
 * came, and each register formatted as the line `shopfloor connect` writes:
 *     telemetry,line=bench,machine=unitNN,signal=rNNN,site=bench value=V.0,quality=0i TS
 * (the series part of each line is precomputed; a uint16 is written as the float it is).
 * Every POINTS_PER_POST lines go to InfluxDB 1.x as one POST /write over one keep-alive HTTP
 * connection, by a second thread, so that reads go on while a write is in flight; with
 * QUEUED batches waiting the reader waits (backpressure, nothing dropped). A cycle that overran
 * skips the ticks it missed, as ours does. Failed reads and writes are counted on stderr.
 * Runs until killed (SIGTERM).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <modbus.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define QUEUED 4
#define MAX_LINE 160

typedef struct {
    char *text;
    size_t length;
    int points;
} batch_t;

static batch_t batches[QUEUED + 1];
static int filled[QUEUED + 1]; /* indices of batches waiting to be written, in order */
static int nfilled = 0;
static int free_list[QUEUED + 1];
static int nfree = 0;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;

static int influx_port;
static const char *database;
static unsigned long read_errors = 0, write_errors = 0;

static int http_connect(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(influx_port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    return fd;
}

/* Reads one HTTP response; returns its status, or -1 if the connection failed. */
static int http_response(int fd) {
    char head[8192];
    size_t have = 0;
    char *end = NULL;
    while (end == NULL) {
        if (have == sizeof head - 1) return -1;
        ssize_t got = recv(fd, head + have, sizeof head - 1 - have, 0);
        if (got <= 0) return -1;
        have += (size_t)got;
        head[have] = '\0';
        end = strstr(head, "\r\n\r\n");
    }
    int status = atoi(head + 9); /* "HTTP/1.1 204" */
    long body = 0;
    char *length = strcasestr(head, "\r\nContent-Length:");
    if (length != NULL && length < end) body = atol(length + 17);
    long extra = (long)(have - (size_t)(end + 4 - head)) ;
    char sink[4096];
    for (long left = body - extra; left > 0;) {
        ssize_t got = recv(fd, sink, left < (long)sizeof sink ? (size_t)left : sizeof sink, 0);
        if (got <= 0) return -1;
        left -= got;
    }
    return status;
}

static int post(int fd, const batch_t *batch) {
    char header[256];
    int size = snprintf(header, sizeof header,
                        "POST /write?db=%s&precision=ns HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n",
                        database, batch->length);
    struct iovec parts[2] = {{header, (size_t)size}, {batch->text, batch->length}};
    size_t total = (size_t)size + batch->length, sent = 0;
    while (sent < total) {
        ssize_t wrote = writev(fd, parts, 2);
        if (wrote <= 0) return -1;
        sent += (size_t)wrote;
        for (int i = 0; i < 2; i++) { /* advance past what went out */
            size_t step = (size_t)wrote < parts[i].iov_len ? (size_t)wrote : parts[i].iov_len;
            parts[i].iov_base = (char *)parts[i].iov_base + step;
            parts[i].iov_len -= step;
            wrote -= (ssize_t)step;
        }
    }
    return http_response(fd);
}

static void *writer(void *unused) {
    (void)unused;
    int fd = -1;
    for (;;) {
        pthread_mutex_lock(&lock);
        while (nfilled == 0) pthread_cond_wait(&changed, &lock);
        int index = filled[0];
        pthread_mutex_unlock(&lock);
        int status = -1;
        while (status != 204) {
            if (fd < 0) fd = http_connect();
            status = fd < 0 ? -1 : post(fd, &batches[index]);
            if (status < 0 && fd >= 0) {
                close(fd);
                fd = -1;
            }
            if (status != 204) {
                write_errors++;
                fprintf(stderr, "write failed (%d), %lu so far\n", status, write_errors);
                usleep(100000);
            }
        }
        pthread_mutex_lock(&lock);
        memmove(filled, filled + 1, (size_t)(--nfilled) * sizeof filled[0]);
        free_list[nfree++] = index;
        pthread_cond_broadcast(&changed);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

/* The reader's batch, once full, goes to the writer; the next empty one is returned. */
static int hand_over(int index) {
    pthread_mutex_lock(&lock);
    filled[nfilled++] = index;
    pthread_cond_broadcast(&changed);
    while (nfree == 0) pthread_cond_wait(&changed, &lock);
    int next = free_list[--nfree];
    pthread_mutex_unlock(&lock);
    batches[next].length = 0;
    batches[next].points = 0;
    return next;
}

static char *format_uint(char *out, unsigned long long value) {
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    while (n) *out++ = digits[--n];
    return out;
}

static long long now_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr,
                "usage: %s MODBUS_PORT INFLUX_PORT DB DEVICES REGISTERS POLL_US POINTS_PER_POST\n",
                argv[0]);
        return 2;
    }
    int modbus_port = atoi(argv[1]);
    influx_port = atoi(argv[2]);
    database = argv[3];
    int devices = atoi(argv[4]), registers = atoi(argv[5]);
    long long poll_ns = atoll(argv[6]) * 1000LL;
    int per_post = atoi(argv[7]);
    if (devices < 1 || registers < 1 || registers > 125 || poll_ns <= 0 || per_post < 1) {
        fprintf(stderr, "DEVICES > 0, REGISTERS 1..125, POLL_US and POINTS_PER_POST > 0\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    /* "telemetry,line=bench,machine=unitNN,signal=rNNN,site=bench value=" per register */
    char **prefix = malloc(sizeof(char *) * (size_t)(devices * registers));
    size_t *prefix_length = malloc(sizeof(size_t) * (size_t)(devices * registers));
    for (int u = 0; u < devices; u++)
        for (int r = 0; r < registers; r++) {
            char line[MAX_LINE];
            int n = snprintf(line, sizeof line,
                             "telemetry,line=bench,machine=unit%02d,signal=r%03d,site=bench value=",
                             u + 1, r);
            prefix[u * registers + r] = strdup(line);
            prefix_length[u * registers + r] = (size_t)n;
        }
    for (int i = 0; i <= QUEUED; i++) {
        batches[i].text = malloc((size_t)per_post * MAX_LINE + (size_t)registers * MAX_LINE);
        if (i) free_list[nfree++] = i;
    }
    int current = 0;
    pthread_t thread;
    pthread_create(&thread, NULL, writer, NULL);

    modbus_t *ctx = modbus_new_tcp("127.0.0.1", modbus_port);
    if (ctx == NULL || modbus_connect(ctx) < 0) {
        fprintf(stderr, "modbus: %s\n", modbus_strerror(errno));
        return 1;
    }
    uint8_t answer[MODBUS_TCP_MAX_ADU_LENGTH];
    long long due = now_ns(CLOCK_MONOTONIC);
    for (;;) {
        /* the cycle's reads all go out before the first answer is awaited */
        for (int u = 0; u < devices; u++) {
            uint8_t request[] = {(uint8_t)(u % 247 + 1), 3, 0, 0, 0, (uint8_t)registers};
            if (modbus_send_raw_request(ctx, request, sizeof request) < 0) read_errors++;
        }
        for (int u = 0; u < devices; u++) {
            int length = modbus_receive_confirmation(ctx, answer);
            /* the server has Nagle's algorithm on: acknowledge at once, or each further answer
             * waits for our delayed ACK (ours does the same) */
            int on = 1;
            setsockopt(modbus_get_socket(ctx), IPPROTO_TCP, TCP_QUICKACK, &on, sizeof on);
            if (length != 9 + 2 * registers || answer[6] != u % 247 + 1 || answer[7] != 3) {
                read_errors++;
                fprintf(stderr, "read failed: %s, %lu so far\n",
                        length < 0 ? modbus_strerror(errno) : "unexpected answer", read_errors);
                modbus_close(ctx);
                modbus_connect(ctx);
                break;
            }
            const uint8_t *words = answer + 9;
            char stamp[32] = " ";
            char *stamp_end = format_uint(stamp + 1, (unsigned long long)now_ns(CLOCK_REALTIME));
            size_t stamp_length = (size_t)(stamp_end - stamp);
            batch_t *batch = &batches[current];
            char *out = batch->text + batch->length;
            for (int r = 0; r < registers; r++) {
                if (batch->points) *out++ = '\n';
                memcpy(out, prefix[u * registers + r], prefix_length[u * registers + r]);
                out += prefix_length[u * registers + r];
                out = format_uint(out, (unsigned)(words[2 * r] << 8 | words[2 * r + 1]));
                memcpy(out, ".0,quality=0i", 13);
                out += 13;
                memcpy(out, stamp, stamp_length);
                out += stamp_length;
                batch->points++;
            }
            batch->length = (size_t)(out - batch->text);
            if (batch->points >= per_post) current = hand_over(current);
        }
        due += poll_ns;
        long long now = now_ns(CLOCK_MONOTONIC);
        if (due < now) due += (now - due + poll_ns - 1) / poll_ns * poll_ns;
        struct timespec wake = {due / 1000000000LL, due % 1000000000LL};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &wake, NULL);
    }
}
