/* rtpgen: RTP load generator for bench/media.py (its sockets are inherited file descriptors).
 *
 * usage: rtpgen paced|flood DURATION_S PARAM PAYLOAD_FILE FRAMES
 *   paced: PARAM = packet interval per flow in microseconds (20000 = 50 packets/s)
 *   flood: PARAM = packets in flight per flow; every packet received is answered at once
 * stdin, one flow per line: "send_fd dst_port recv_fd src_port reply_flow track"
 *   flow i sends from send_fd to 127.0.0.1:dst_port; its packets must come back on recv_fd from
 *   127.0.0.1:src_port (anything else counts as misrouted); reply_flow answers it in flood mode.
 * PAYLOAD_FILE: tracks of FRAMES x 160 bytes of G.711, played in a loop (track chosen per flow).
 *
 * Every packet is a real RTP packet (V=2, PT 0, marker on the first, sequence number and
 * timestamp advancing by one frame, SSRC = flow id) with 160 bytes of audio; the payload is
 * never touched, so a recorder downstream gets real G.711. The send time of each packet is kept
 * here (a ring per flow indexed by sequence number) and its latency measured on arrival.
 *
 * stdout: one JSON object: sent, send_failed, received, received_window (until DURATION),
 * misrouted, stale (arrived after its ring slot was reused, or twice), bucket_us and hist, the
 * latency histogram as [bucket, count] pairs (bucket b = [b, b + 1) x bucket_us).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FRAME 160
#define HEADER 12
#define PACKET (HEADER + FRAME)
#define RING 512 /* per flow: 10 s of packets at 50 packets/s */
#define BATCH 64
#define BUCKET_US 10
#define BUCKETS 200001 /* 10 us buckets up to 2 s; the last one holds everything later */
#define MAX_SOCKETS 64
#define PACING_US 200 /* the shortest sleep while waiting for the next packet due */

typedef struct { uint32_t sent_us; uint32_t k1; } slot_t; /* k1 = packet index + 1, 0 = free */

typedef struct {
    int send_fd, recv_fd, reply, track, batch;
    struct sockaddr_in dst;
    uint16_t src_port; /* network byte order */
    uint32_t k;        /* packets sent */
    slot_t *ring;
} flow_t;

typedef struct {
    int fd, n;
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH][2];
    unsigned char head[BATCH][HEADER];
} batch_t;

static flow_t *flows;
static int nflows;
static batch_t batches[MAX_SOCKETS];
static int nbatches;
static unsigned char *tracks;
static int ntracks, frames;
static long sent, send_failed, received, received_window = -1, misrouted, stale;
static long hist[BUCKETS];
static struct timespec t0;

static uint32_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((ts.tv_sec - t0.tv_sec) * 1000000L + (ts.tv_nsec - t0.tv_nsec) / 1000);
}

static int batch_of(int fd) {
    for (int b = 0; b < nbatches; b++)
        if (batches[b].fd == fd) return b;
    if (nbatches == MAX_SOCKETS) { fprintf(stderr, "too many sockets\n"); exit(2); }
    batches[nbatches].fd = fd;
    return nbatches++;
}

static void flush(batch_t *b) {
    int off = 0;
    while (off < b->n) {
        int r = sendmmsg(b->fd, b->msgs + off, (unsigned)(b->n - off), 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { send_failed += b->n - off; break; }
        off += r;
    }
    b->n = 0;
}

/* Queue flow i's next packet on its socket's batch, remembering when it left. */
static void queue(int i, uint32_t t) {
    flow_t *f = &flows[i];
    batch_t *b = &batches[f->batch];
    int j = b->n++;
    uint32_t k = f->k++;
    unsigned char *h = b->head[j];
    h[0] = 0x80;                  /* V=2, no padding, no extension, no CSRC */
    h[1] = k == 0 ? 0x80 : 0x00;  /* marker on the first packet, PT 0 (PCMU) */
    uint16_t seq = htons((uint16_t)k);
    uint32_t ts = htonl(k * FRAME), ssrc = htonl((uint32_t)i);
    memcpy(h + 2, &seq, 2);
    memcpy(h + 4, &ts, 4);
    memcpy(h + 8, &ssrc, 4);
    b->iov[j][0].iov_base = h;
    b->iov[j][0].iov_len = HEADER;
    b->iov[j][1].iov_base = tracks + ((size_t)f->track * frames + k % frames) * FRAME;
    b->iov[j][1].iov_len = FRAME;
    struct msghdr *m = &b->msgs[j].msg_hdr;
    memset(m, 0, sizeof *m);
    m->msg_iov = b->iov[j];
    m->msg_iovlen = 2;
    m->msg_name = &f->dst;
    m->msg_namelen = sizeof f->dst;
    slot_t *s = &f->ring[k % RING];
    s->sent_us = t;
    s->k1 = k + 1;
    sent++;
    if (b->n == BATCH) flush(b);
}

static void flush_all(void) {
    for (int b = 0; b < nbatches; b++)
        if (batches[b].n) flush(&batches[b]);
}

int main(int argc, char **argv) {
    if (argc != 6) { fprintf(stderr, "usage: see source\n"); return 2; }
    int flood = strcmp(argv[1], "flood") == 0;
    double duration = atof(argv[2]);
    long param = atol(argv[3]);
    frames = atoi(argv[5]);
    FILE *pf = fopen(argv[4], "rb");
    if (!pf || frames <= 0) { perror("payload"); return 2; }
    fseek(pf, 0, SEEK_END);
    long bytes = ftell(pf);
    rewind(pf);
    ntracks = (int)(bytes / ((long)frames * FRAME));
    if (ntracks < 1) { fprintf(stderr, "payload file too short\n"); return 2; }
    tracks = malloc((size_t)bytes);
    if (fread(tracks, 1, (size_t)bytes, pf) != (size_t)bytes) { perror("payload"); return 2; }
    fclose(pf);

    int cap = 1024;
    flows = malloc(cap * sizeof *flows);
    int sfd, dport, rfd, sport, reply, track;
    while (scanf("%d %d %d %d %d %d", &sfd, &dport, &rfd, &sport, &reply, &track) == 6) {
        if (nflows == cap) { cap *= 2; flows = realloc(flows, cap * sizeof *flows); }
        flow_t *f = &flows[nflows++];
        memset(f, 0, sizeof *f);
        f->send_fd = sfd;
        f->recv_fd = rfd;
        f->reply = reply;
        f->track = track % ntracks;
        f->src_port = htons((uint16_t)sport);
        f->dst.sin_family = AF_INET;
        f->dst.sin_port = htons((uint16_t)dport);
        f->dst.sin_addr.s_addr = htonl(0x7f000001);
        f->batch = batch_of(sfd);
        f->ring = calloc(RING, sizeof(slot_t));
    }
    if (nflows == 0) { fprintf(stderr, "no flows\n"); return 2; }
    int ep = epoll_create1(0);
    for (int i = 0; i < nflows; i++) { /* each receiving socket once */
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = flows[i].recv_fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, flows[i].recv_fd, &ev) && errno != EEXIST) {
            perror("epoll_ctl");
            return 1;
        }
    }
    static struct mmsghdr msgs[BATCH];
    static struct iovec iov[BATCH];
    static struct sockaddr_in from[BATCH];
    static unsigned char rbuf[BATCH][2048];
    for (int j = 0; j < BATCH; j++) {
        iov[j].iov_base = rbuf[j];
        iov[j].iov_len = sizeof rbuf[j];
        msgs[j].msg_hdr.msg_iov = &iov[j];
        msgs[j].msg_hdr.msg_iovlen = 1;
    }
    struct epoll_event evs[MAX_SOCKETS];
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint32_t end = (uint32_t)(duration * 1e6), stop = end + 300000; /* 0.3 s drain */
    /* paced: the k-th send overall is flow k % n, due at (k / n) x interval, so the flows are
       spread evenly over each period */
    double per_tick_us = flood ? 0 : (double)param / nflows;
    long tick = 0;
    if (flood) {
        uint32_t t = now_us();
        for (long w = 0; w < param; w++)
            for (int i = 0; i < nflows; i++) queue(i, t);
        flush_all();
    }
    for (;;) {
        uint32_t t = now_us();
        if (t >= end && received_window < 0) received_window = received;
        if (t >= stop) break;
        long wait_us = 1000;
        if (!flood && t < end) {
            for (;;) {
                double due = tick * per_tick_us;
                if (due > t) {
                    wait_us = (long)(due - t) + 1;
                    break;
                }
                queue((int)(tick % nflows), t);
                tick++;
            }
            flush_all();
            if (wait_us < PACING_US) wait_us = PACING_US;
        }
        struct timespec timeout = {.tv_sec = 0, .tv_nsec = wait_us * 1000};
        int n = epoll_pwait2(ep, evs, MAX_SOCKETS, &timeout, NULL);
        int answering = flood && now_us() < end;
        for (int e = 0; e < n; e++) {
            int fd = evs[e].data.fd;
            for (;;) {
                for (int j = 0; j < BATCH; j++) {
                    msgs[j].msg_hdr.msg_name = &from[j];
                    msgs[j].msg_hdr.msg_namelen = sizeof from[j];
                }
                int got = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
                if (got <= 0) break;
                uint32_t arrived = now_us();
                for (int j = 0; j < got; j++) {
                    const unsigned char *p = rbuf[j];
                    uint32_t id;
                    memcpy(&id, p + 8, 4);
                    id = ntohl(id);
                    if (msgs[j].msg_len != PACKET || id >= (uint32_t)nflows ||
                        flows[id].recv_fd != fd || from[j].sin_port != flows[id].src_port) {
                        misrouted++;
                        continue;
                    }
                    flow_t *f = &flows[id];
                    uint16_t seq;
                    memcpy(&seq, p + 2, 2);
                    seq = ntohs(seq);
                    slot_t *s = &f->ring[seq % RING];
                    if (s->k1 == 0 || (uint16_t)(s->k1 - 1) != seq) {
                        stale++;
                    } else {
                        uint32_t b = (arrived - s->sent_us) / BUCKET_US;
                        hist[b < BUCKETS ? b : BUCKETS - 1]++;
                        s->k1 = 0;
                    }
                    received++;
                    if (answering) queue(f->reply, arrived);
                }
                if (answering) flush_all();
                if (got < BATCH) break;
            }
        }
    }
    printf("{\"sent\": %ld, \"send_failed\": %ld, \"received\": %ld, \"received_window\": %ld, "
           "\"misrouted\": %ld, \"stale\": %ld, \"bucket_us\": %d, \"hist\": [",
           sent, send_failed, received, received_window, misrouted, stale, BUCKET_US);
    int first = 1;
    for (long b = 0; b < BUCKETS; b++) {
        if (!hist[b]) continue;
        printf("%s[%ld, %ld]", first ? "" : ", ", b, hist[b]);
        first = 0;
    }
    printf("]}\n");
    return 0;
}
