/* minidock-monitor: what stays alive for a detached container (the role of podman's conmon,
 * of Docker's containerd-shim).
 *
 * The Python side (minidock/engine/containers/monitor.py) forks a process M that creates and starts
 * the container in-process, as its subreaper, then execs this program in place: the pid, the
 * child-subreaper attribute, the container's init (our child) and the fds listed below stay;
 * the Python interpreter's memory goes away. What is left is a poll() loop of a few pages.
 *
 *   minidock-monitor -p PID -l LOCK_FD -L LOG_FD -x EXIT_FILE
 *                    [-o STDOUT_FD] [-e STDERR_FD] [-t PTY_MASTER_FD] [-i STDIN_FD]
 *                    [-a ATTACH_LISTEN_FD] -- CLEANUP_ARGV...
 *
 *   -p  the container's init, our child: waitpid()ed, its status becomes the exit code
 *   -l  <run>/locks/<id>.monitor, flock()ed by M: "someone watches this container". Never
 *       touched here: it stays open across both execs, so the lock is released only when
 *       the cleanup command (the last program this pid runs) exits.
 *   -L  containers/<id>/<id>-json.log, opened O_APPEND: Docker's json-file lines
 *   -x  where the exit is written (JSON, atomically: tmp + rename) before the cleanup runs
 *   -o -e  the read ends of the container's stdout and stderr pipes (without -t)
 *   -t  the pty master (with -t): its output is logged as "stdout", and an attach client
 *       on the -a socket is relayed both ways, one client at a time; the client's first
 *       byte comes with the master fd itself, for window size changes
 *   -i  the write end of the container's stdin pipe (-i without -t): held, so the
 *       container's stdin stays open as under Docker; what an attach client on the -a
 *       socket sends is written to it (its output, the client follows in the log)
 *
 * Lifetime:
 *
 *   poll(signalfd(SIGCHLD), stdout, stderr | pty, attach socket, attach client)
 *     output       -> split at newlines (or 16 KiB) -> one json-file line each
 *     SIGCHLD      -> waitpid(-1, WNOHANG) until none left: no zombie of ours stays
 *     init reaped  -> drain the output until EOF (all writers gone) or 250 ms of silence
 *   write EXIT_FILE {"ExitCode":N,"FinishedAt":"..."}     N = status or 128+signal
 *   execv(CLEANUP_ARGV)   `python -m minidock ... container cleanup <id>`: records the exit,
 *                         releases mount, cgroup, bundle; honours --rm; then exits, which
 *                         releases the monitor lock.
 *
 * Mechanism only; the policy (paths, what cleanup does) is the engine's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 16384 /* Docker's copier buffer: a longer line is split */
#define DRAIN_MS 250

struct stream {
    int fd;
    const char *name;
    size_t len;
    char buf[LINE_MAX_BYTES];
};

/* Worst case: every byte becomes \u00XX (6 bytes), plus the keys and the time. */
static char line_out[LINE_MAX_BYTES * 6 + 128];
static int log_fd = -1;

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* a full disk loses log lines, never the container */
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Go's time.RFC3339Nano in UTC, as Docker writes it: trailing zeros of the fraction cut. */
static size_t rfc3339nano(char *out, size_t size, const struct timespec *ts, int trim)
{
    struct tm tm;
    char frac[16];
    size_t n;
    int i;

    gmtime_r(&ts->tv_sec, &tm);
    n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(frac, sizeof frac, ".%09ld", ts->tv_nsec);
    for (i = 9; trim && i > 0 && frac[i] == '0'; i--)
        frac[i] = '\0';
    if (trim && i == 0)
        frac[0] = '\0';
    n += (size_t)snprintf(out + n, size - n, "%sZ", frac);
    return n;
}

/* Length of a valid UTF-8 sequence at p (as Go's utf8.DecodeRune accepts it), else 0. */
static size_t utf8_len(const unsigned char *p, size_t avail, unsigned *cp)
{
    unsigned c = p[0], min;
    size_t n, i;

    if (c >= 0xC2 && c <= 0xDF) { n = 2; *cp = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; *cp = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; *cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (avail < n)
        return 0;
    for (i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        *cp = (*cp << 6) | (p[i] & 0x3F);
    }
    if (*cp < min || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF))
        return 0;
    return n;
}

/* JSON string body, escaped as moby's jsonlog (ffjsonWriteJSONBytesAsString): \" \\ \n \r,
 * other control characters and < > & as \u00XX, invalid UTF-8 as \ufffd, U+2028/9 escaped;
 * valid UTF-8 is kept as it is. */
static size_t json_escape(char *out, const unsigned char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, i = 0, n;
    unsigned cp;

    while (i < len) {
        unsigned char b = s[i];
        if (b < 0x80) {
            if (b >= 0x20 && b != '\\' && b != '"' && b != '<' && b != '>' && b != '&') {
                out[o++] = (char)b;
            } else if (b == '\\' || b == '"') {
                out[o++] = '\\';
                out[o++] = (char)b;
            } else if (b == '\n') {
                out[o++] = '\\';
                out[o++] = 'n';
            } else if (b == '\r') {
                out[o++] = '\\';
                out[o++] = 'r';
            } else {
                memcpy(out + o, "\\u00", 4);
                out[o + 4] = hex[b >> 4];
                out[o + 5] = hex[b & 0xF];
                o += 6;
            }
            i++;
            continue;
        }
        n = utf8_len(s + i, len - i, &cp);
        if (n == 0) {
            memcpy(out + o, "\\ufffd", 6);
            o += 6;
            i++;
        } else if (cp == 0x2028 || cp == 0x2029) {
            memcpy(out + o, "\\u202", 5);
            out[o + 5] = hex[cp & 0xF];
            o += 6;
            i += n;
        } else {
            memcpy(out + o, s + i, n);
            o += n;
            i += n;
        }
    }
    return o;
}

/* {"log":"...","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}\n */
static void log_line(const char *stream, const char *p, size_t n)
{
    struct timespec ts;
    size_t o;

    if (n == 0 || log_fd < 0)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    memcpy(line_out, "{\"log\":\"", 8);
    o = 8;
    o += json_escape(line_out + o, (const unsigned char *)p, n);
    o += (size_t)snprintf(line_out + o, sizeof line_out - o, "\",\"stream\":\"%s\",\"time\":\"",
                          stream);
    o += rfc3339nano(line_out + o, sizeof line_out - o, &ts, 1);
    memcpy(line_out + o, "\"}\n", 3);
    write_all(log_fd, line_out, o + 3);
}

/* Emit every complete line; a full buffer without a newline goes out as a partial line. */
static void stream_emit(struct stream *s, int final)
{
    size_t start = 0, i;

    for (i = 0; i < s->len; i++) {
        if (s->buf[i] == '\n') {
            log_line(s->name, s->buf + start, i + 1 - start);
            start = i + 1;
        }
    }
    if (start < s->len && (final || (start == 0 && s->len == sizeof s->buf))) {
        log_line(s->name, s->buf + start, s->len - start);
        start = s->len;
    }
    memmove(s->buf, s->buf + start, s->len - start);
    s->len -= start;
}

/* Read what is there; returns the bytes read, 0 at EOF (or EIO: a pty without a slave). */
static ssize_t stream_read(struct stream *s, int client)
{
    ssize_t n;

    do
        n = read(s->fd, s->buf + s->len, sizeof s->buf - s->len);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN)
        return -1;
    if (n <= 0) {
        stream_emit(s, 1);
        close(s->fd);
        s->fd = -1;
        return 0;
    }
    /* An attach client gets the bytes as they come; one that cannot keep up loses them
       (MSG_DONTWAIT) rather than stalling the container's output. */
    if (client >= 0)
        send(client, s->buf + s->len, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
    s->len += (size_t)n;
    stream_emit(s, 0);
    return n;
}

/* What an attach client sent for the container's stdin and the pipe did not take yet. */
static char in_buf[4096];
static size_t in_off, in_len;

static void stdin_flush(int *in_fd)
{
    while (in_len > 0) {
        ssize_t w = write(*in_fd, in_buf + in_off, in_len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return; /* full: POLLOUT tells us when to go on */
            close(*in_fd); /* EPIPE: nobody in the container reads its stdin any more */
            *in_fd = -1;
            in_len = 0;
            return;
        }
        in_off += (size_t)w;
        in_len -= (size_t)w;
    }
}

/* A -t client's first byte carries the pty master (SCM_RIGHTS): the client sets the
   window size on it (TIOCSWINSZ) when its own terminal is resized. */
static void send_master(int client, int master)
{
    char byte = 0, ctl[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                         .msg_controllen = sizeof ctl};
    struct cmsghdr *cm;

    memset(ctl, 0, sizeof ctl);
    cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &master, sizeof(int));
    sendmsg(client, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static int write_exit_file(const char *path, int code, const struct timespec *finished)
{
    char tmp[4096], doc[256], when[64];
    int fd, n;

    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return -1;
    rfc3339nano(when, sizeof when, finished, 0);
    n = snprintf(doc, sizeof doc, "{\"ExitCode\":%d,\"FinishedAt\":\"%s\"}\n", code, when);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    write_all(fd, doc, (size_t)n);
    fsync(fd);
    close(fd);
    return rename(tmp, path);
}

static int parse_fd(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0 || v > 65535) {
        fprintf(stderr, "minidock-monitor: bad fd %s\n", s);
        exit(2);
    }
    return (int)v;
}

static int reap(pid_t init, int *status)
{
    int st, found = 0;
    pid_t p;

    while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
        if (p == init) {
            *status = st;
            found = 1;
        }
    }
    return found;
}

int main(int argc, char **argv)
{
    struct stream out = {.fd = -1, .name = "stdout"}, err = {.fd = -1, .name = "stderr"};
    int opt, sfd, listen_fd = -1, client = -1, in_fd = -1, tty = 0, status = 0, exited = 0;
    int code;
    pid_t init = 0;
    const char *exit_file = NULL;
    struct timespec finished = {0, 0};
    sigset_t mask;

    while ((opt = getopt(argc, argv, "p:l:L:x:o:e:t:i:a:")) != -1) {
        switch (opt) {
        case 'p': init = (pid_t)atoi(optarg); break;
        case 'l': (void)parse_fd(optarg); break; /* held, see above */
        case 'L': log_fd = parse_fd(optarg); break;
        case 'x': exit_file = optarg; break;
        case 'o': out.fd = parse_fd(optarg); break;
        case 'e': err.fd = parse_fd(optarg); break;
        case 't': out.fd = parse_fd(optarg); tty = 1; break;
        case 'i': in_fd = parse_fd(optarg); break;
        case 'a': listen_fd = parse_fd(optarg); break;
        default: return 2;
        }
    }
    if (init <= 0 || exit_file == NULL || optind >= argc) {
        fprintf(stderr, "usage: minidock-monitor -p PID -l FD -L FD -x FILE [-o FD -e FD "
                        "[-i FD] | -t FD] [-a FD] -- CLEANUP...\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (out.fd >= 0)
        fcntl(out.fd, F_SETFL, fcntl(out.fd, F_GETFL) | O_NONBLOCK);
    if (err.fd >= 0)
        fcntl(err.fd, F_SETFL, fcntl(err.fd, F_GETFL) | O_NONBLOCK);
    if (in_fd >= 0)
        fcntl(in_fd, F_SETFL, fcntl(in_fd, F_GETFL) | O_NONBLOCK);

    /* The init may have exited before SIGCHLD was blocked: its SIGCHLD is gone, not its
       zombie, so look once before waiting. */
    if (reap(init, &status)) {
        exited = 1;
        clock_gettime(CLOCK_REALTIME, &finished);
    }
    for (;;) {
        struct pollfd p[6];
        int np = 0, i_sig, i_out = -1, i_err = -1, i_lis = -1, i_cli = -1, i_in = -1, r;

        if (exited && out.fd < 0 && err.fd < 0)
            break;
        i_sig = np;
        p[np++] = (struct pollfd){.fd = sfd, .events = POLLIN};
        if (out.fd >= 0) { i_out = np; p[np++] = (struct pollfd){.fd = out.fd, .events = POLLIN}; }
        if (err.fd >= 0) { i_err = np; p[np++] = (struct pollfd){.fd = err.fd, .events = POLLIN}; }
        if (listen_fd >= 0 && !exited) {
            i_lis = np;
            p[np++] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
        }
        /* stdin bytes wait in in_buf until the pipe takes them; meanwhile the client is
           not read, so a container that does not read its stdin slows the client down,
           never the monitor (its output keeps flowing to the log) */
        if (client >= 0 && in_len == 0) {
            i_cli = np;
            p[np++] = (struct pollfd){.fd = client, .events = POLLIN};
        }
        if (in_len > 0) { i_in = np; p[np++] = (struct pollfd){.fd = in_fd, .events = POLLOUT}; }
        r = poll(p, (nfds_t)np, exited ? DRAIN_MS : -1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (r == 0)
            break; /* init gone and its output silent: someone else holds the write end */
        if (p[i_sig].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0)
                ;
            if (reap(init, &status) && !exited) {
                exited = 1;
                clock_gettime(CLOCK_REALTIME, &finished);
            }
        }
        if (i_out >= 0 && p[i_out].revents)
            stream_read(&out, tty ? client : -1);
        if (i_err >= 0 && p[i_err].revents)
            stream_read(&err, -1);
        if (i_lis >= 0 && (p[i_lis].revents & POLLIN)) {
            int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (c >= 0 && client >= 0) {
                close(c); /* one client at a time */
            } else if (c >= 0) {
                client = c;
                if (tty)
                    send_master(client, out.fd);
            }
        }
        if (i_in >= 0 && p[i_in].revents)
            stdin_flush(&in_fd);
        if (i_cli >= 0 && p[i_cli].revents) {
            char buf[4096];
            ssize_t n = read(client, buf, sizeof buf);
            if (n > 0) {
                if (tty && out.fd >= 0) { /* -t: keys into the pty */
                    write_all(out.fd, buf, (size_t)n);
                } else if (!tty && in_fd >= 0) { /* -i: bytes into the stdin pipe */
                    memcpy(in_buf, buf, (size_t)n);
                    in_off = 0;
                    in_len = (size_t)n;
                    stdin_flush(&in_fd);
                }
            } else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                close(client);
                client = -1;
            }
        }
    }
    if (out.fd >= 0)
        stream_emit(&out, 1);
    if (err.fd >= 0)
        stream_emit(&err, 1);
    if (!exited) {
        /* Output ended first (or poll failed): the init is still ours to wait for. */
        while (waitpid(init, &status, 0) < 0 && errno == EINTR)
            ;
        clock_gettime(CLOCK_REALTIME, &finished);
    }
    reap(init, &status);
    if (client >= 0)
        close(client);
    code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
    write_exit_file(exit_file, code, &finished);
    sigprocmask(SIG_UNBLOCK, &mask, NULL);
    execv(argv[optind], argv + optind);
    fprintf(stderr, "minidock-monitor: exec %s: %s\n", argv[optind], strerror(errno));
    return 127;
}
