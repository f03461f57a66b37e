/* minidock-init: the container's PID 1 for `run --init` (what tini is for Docker's
 * docker-init): it starts the command as its only child, passes every signal it gets on to
 * it, reaps every zombie (orphans are re-parented to PID 1 and would otherwise pile up), and
 * exits as the command exited: its status, or 128 + the signal that killed it.
 *
 *     /sbin/docker-init -- CMD [ARG...]
 *
 * Statically linked: the image need not have a libc. Written for minidock; tini's behaviour
 * (signals forwarded, zombies reaped, the exit code passed on) is what it reproduces.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int first = 1;
    if (argc > 1 && strcmp(argv[1], "--") == 0)
        first = 2;
    if (first >= argc) {
        fprintf(stderr, "usage: %s -- COMMAND [ARG...]\n", argv[0]);
        return 2;
    }
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);  /* every signal waits for sigwaitinfo below */
    pid_t child = fork();
    if (child < 0) {
        perror("minidock-init: fork");
        return 1;
    }
    if (child == 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        /* its own process group: the terminal's ^C reaches it through us, and a shell
           started here gets job control, as under tini */
        setpgid(0, 0);
        if (isatty(0))
            tcsetpgrp(0, getpid());
        execvp(argv[first], argv + first);
        fprintf(stderr, "minidock-init: exec %s: %s\n", argv[first], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    int code = -1;
    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&all, &info);
        if (sig < 0)
            continue;
        if (sig != SIGCHLD) {
            if (sig == SIGTTIN || sig == SIGTTOU || sig == SIGTSTP)
                continue;  /* job-control stops are the child's, not ours */
            kill(child, sig);
            continue;
        }
        for (;;) {  /* reap everything that ended: the command, and any orphan */
            int status;
            pid_t pid = waitpid(-1, &status, WNOHANG);
            if (pid <= 0)
                break;
            if (pid == child)
                code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        if (code >= 0)
            return code;
    }
}
