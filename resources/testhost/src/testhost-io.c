/*
 * testhost-io: the command channel between `resources/testhost/run` and the test host.
 *
 * One byte stream (a virtio-serial port inside, a pair of FIFOs behind QEMU's pipe chardev outside)
 * carries frames: an 8-byte header (u32 type, u32 length, little endian) and `length` bytes.
 *   guest -> host: STARTED (the command is about to run), STDOUT / STDERR (data), EXIT (u32 status),
 *   host -> guest: ACK (the host has every byte up to EXIT; the guest may power off).
 * The ACK makes the output complete: the host has consumed all of it before the VM goes away.
 *
 *   testhost-io guest PORT CTLDIR    (inside) run the command in CTLDIR/argv (NUL-separated) with the
 *                                    extra environment in CTLDIR/env (NUL-separated NAME=VALUE),
 *                                    stdin /dev/null, cwd $HOME or /; exits 0 once the host acknowledged.
 *   testhost-io host OUT IN STATUS T0 (outside) read frames from FIFO OUT, write the data to fd 1 and 2,
 *                                    on EXIT write the status to file STATUS and ACK on FIFO IN; T0 is
 *                                    the start time of `run` (seconds since the epoch) for the timing line.
 *                                    Exits 0 after EXIT, 3 if the stream ends without one, 5 if
 *                                    stdout is a broken pipe (its reader went away).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { F_STARTED = 1, F_STDOUT = 2, F_STDERR = 3, F_EXIT = 4, F_ACK = 0x81 };
#define BUFSZ (64 * 1024)

static void die(const char *what) {
    fprintf(stderr, "testhost-io: %s: %s\n", what, strerror(errno));
    exit(125);
}

/* Writes all of buf; waits on EAGAIN (fds inherited in non-blocking mode). */
static int write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                poll(&pfd, 1, 1000);
                continue;
            }
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void put_le32(unsigned char *p, uint32_t v) {
    p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24;
}
static uint32_t get_le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int send_frame(int fd, uint32_t type, const void *data, uint32_t len) {
    unsigned char h[8];
    put_le32(h, type);
    put_le32(h + 4, len);
    if (write_all(fd, h, 8) < 0) return -1;
    return len ? write_all(fd, data, len) : 0;
}

/* Reads a whole small file; returns its size, or -1 if it does not exist. */
static ssize_t read_file(const char *path, char **out) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t cap = 4096, len = 0;
    char *b = malloc(cap + 1);
    for (;;) {
        if (len == cap) b = realloc(b, (cap *= 2) + 1);
        ssize_t r = read(fd, b + len, cap - len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        len += (size_t)r;
    }
    close(fd);
    b[len] = 0;
    *out = b;
    return (ssize_t)len;
}

/* Splits a NUL-separated buffer into a NULL-terminated vector. */
static char **split0(char *b, size_t len) {
    size_t n = 0, i;
    for (i = 0; i < len; i++) if (b[i] == 0) n++;
    if (len && b[len - 1] != 0) n++;
    char **v = calloc(n + 1, sizeof(char *));
    size_t k = 0;
    for (i = 0; i < len && k < n; k++) {
        v[k] = b + i;
        i += strlen(b + i) + 1;
    }
    return v;
}

static int sigpipe_w = -1;
static void on_sigchld(int sig) {
    (void)sig;
    int e = errno;
    if (write(sigpipe_w, "c", 1) < 0) { /* pipe full: a wakeup is already pending */ }
    errno = e;
}

/* Forwards what is readable on *fd (at most 16 reads, so one busy stream cannot starve the other)
 * as frames of type t; closes it at EOF. */
static void pump(int port, int *fd, uint32_t t, char *buf) {
    for (int i = 0; i < 16; i++) {
        ssize_t r = read(*fd, buf, BUFSZ);
        if (r > 0) {
            if (send_frame(port, t, buf, (uint32_t)r) < 0) die("write to the host");
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN) return;
        close(*fd);
        *fd = -1;
        return;
    }
}

static int guest(const char *portpath, const char *ctldir) {
    char path[4096], *argvbuf, *envbuf;
    int port = open(portpath, O_RDWR | O_CLOEXEC);
    if (port < 0) die(portpath);
    snprintf(path, sizeof path, "%s/argv", ctldir);
    ssize_t an = read_file(path, &argvbuf);
    if (an <= 0) { errno = ENOENT; die(path); }
    char **av = split0(argvbuf, (size_t)an);
    snprintf(path, sizeof path, "%s/env", ctldir);
    ssize_t en = read_file(path, &envbuf);
    if (en > 0)
        for (char **e = split0(envbuf, (size_t)en); *e; e++)
            if (strchr(*e, '=')) putenv(*e);

    int po[2], pe[2], sp[2];
    if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC) || pipe2(sp, O_CLOEXEC | O_NONBLOCK)) die("pipe");
    sigpipe_w = sp[1];
    struct sigaction sa = {.sa_handler = on_sigchld, .sa_flags = SA_RESTART | SA_NOCLDSTOP};
    sigaction(SIGCHLD, &sa, NULL);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    if (send_frame(port, F_STARTED, NULL, 0) < 0) die("write to the host");

    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        signal(SIGCHLD, SIG_DFL);
        int nul = open("/dev/null", O_RDONLY);
        if (nul < 0 || dup2(nul, 0) < 0 || dup2(po[1], 1) < 0 || dup2(pe[1], 2) < 0) _exit(125);
        const char *home = getenv("HOME");
        if (!home || chdir(home) != 0) { if (chdir("/")) {} }
        execvp(av[0], av);
        int e = errno;
        fprintf(stderr, "testhost: cannot run '%s': %s\n", av[0], strerror(e));
        _exit(e == ENOENT ? 127 : 126);
    }
    close(po[1]);
    close(pe[1]);
    fcntl(po[0], F_SETFL, O_NONBLOCK);
    fcntl(pe[0], F_SETFL, O_NONBLOCK);

    char *buf = malloc(BUFSZ);
    int status = -1, fo = po[0], fe = pe[0];
    while (status < 0) {
        struct pollfd p[3] = {{.fd = sp[0], .events = POLLIN}, {.fd = fo, .events = POLLIN},
                              {.fd = fe, .events = POLLIN}};
        if (poll(p, 3, -1) < 0 && errno != EINTR) die("poll");
        if (fo >= 0 && p[1].revents) pump(port, &fo, F_STDOUT, buf);
        if (fe >= 0 && p[2].revents) pump(port, &fe, F_STDERR, buf);
        if (p[0].revents) {
            char c[64];
            while (read(sp[0], c, sizeof c) > 0) {}
        }
        int ws;
        pid_t w;
        while ((w = waitpid(-1, &ws, WNOHANG)) > 0)   /* also reaps orphans (we are a subreaper) */
            if (w == pid) status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    }
    /* The command is done: forward what it left in the pipes (background processes that still hold
     * them do not keep us waiting), then report. */
    if (fo >= 0) pump(port, &fo, F_STDOUT, buf);
    if (fe >= 0) pump(port, &fe, F_STDERR, buf);
    unsigned char st[4];
    put_le32(st, (uint32_t)status);
    if (send_frame(port, F_EXIT, st, 4) < 0) die("write to the host");

    /* Wait (at most 60 s) for the host's acknowledgement. */
    unsigned char h[8];
    size_t got = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        long left = 60000 - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
        if (left <= 0) break;
        struct pollfd p = {.fd = port, .events = POLLIN};
        int n = poll(&p, 1, (int)left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        ssize_t r = read(port, h + got, sizeof h - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { usleep(10000); continue; }   /* host not connected yet */
        got += (size_t)r;
        if (got == sizeof h) {
            if (get_le32(h) == F_ACK) return 0;
            got = 0;
        }
    }
    fprintf(stderr, "testhost-io: no acknowledgement from the host\n");
    return 1;
}

static double now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec + tv.tv_usec / 1e6;
}

static int host(const char *outfifo, const char *infifo, const char *statusfile, double t0) {
    signal(SIGPIPE, SIG_IGN);
    int in = open(outfifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (in < 0) die(outfifo);
    int out_ok[3] = {0, 1, 1};   /* after an error on stderr, keep reading but drop its data */
    size_t cap = BUFSZ + 8, len = 0;
    unsigned char *b = malloc(cap);
    for (;;) {
        /* Parse the complete frames in the buffer. */
        size_t off = 0;
        while (len - off >= 8) {
            uint32_t type = get_le32(b + off), n = get_le32(b + off + 4);
            if (n > 16 * 1024 * 1024) {
                fprintf(stderr, "testhost: corrupt frame from the test host (type %u, length %u)\n", type, n);
                return 4;
            }
            if (len - off < 8 + (size_t)n) {
                if (cap < 8 + (size_t)n) b = realloc(b, cap = 8 + (size_t)n);
                break;
            }
            unsigned char *d = b + off + 8;
            if (type == F_STDOUT || type == F_STDERR) {
                int fd = type == F_STDOUT ? 1 : 2;
                if (out_ok[fd] && write_all(fd, d, n) < 0) {
                    if (fd == 1 && errno == EPIPE) return 5;   /* the reader of stdout is gone */
                    out_ok[fd] = 0;
                }
            } else if (type == F_STARTED) {
                if (t0 > 0)
                    fprintf(stderr, "testhost: command started %.2f s after run started\n", now() - t0);
            } else if (type == F_EXIT && n == 4) {
                FILE *f = fopen(statusfile, "w");
                if (!f) die(statusfile);
                fprintf(f, "%u\n", get_le32(d));
                fclose(f);
                int ack = open(infifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
                if (ack < 0) die(infifo);
                send_frame(ack, F_ACK, NULL, 0);
                close(ack);
                return 0;
            }
            off += 8 + (size_t)n;
        }
        memmove(b, b + off, len - off);
        len -= off;
        struct pollfd p = {.fd = in, .events = POLLIN};
        if (poll(&p, 1, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        ssize_t r = read(in, b + len, cap - len);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r < 0) die("read");
        if (r == 0) return 3;   /* QEMU went away without an EXIT frame */
        len += (size_t)r;
    }
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "guest")) return guest(argv[2], argv[3]);
    if (argc == 6 && !strcmp(argv[1], "host")) return host(argv[2], argv[3], argv[4], atof(argv[5]));
    fprintf(stderr, "usage: testhost-io guest PORT CTLDIR | testhost-io host OUT IN STATUS T0\n");
    return 2;
}
