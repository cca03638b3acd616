/* bench-run: runs one command and reports its whole-process wall time and peak RSS, with nothing
 * else in between (no shell, no /usr/bin/time, no timeout process around the measured command).
 *
 *   bench-run TIMEOUT_S OUTFILE -- COMMAND [ARG...]
 *
 * COMMAND gets stdin from /dev/null and stdout+stderr into OUTFILE, in a process group of its own.
 * Prints one line: "<wall ms> <exit code, 128+N for signal N, 124 on timeout> <peak RSS KiB>".
 * The clock starts before fork() and stops when wait4() returns. On timeout the whole process group
 * is killed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
	if (argc < 5 || strcmp(argv[3], "--") != 0) {
		fprintf(stderr, "usage: bench-run TIMEOUT_S OUTFILE -- COMMAND [ARG...]\n");
		return 2;
	}
	double timeout_s = atof(argv[1]);
	const char *outfile = argv[2];
	char **cmd = argv + 4;
	int out = open(outfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (out < 0 || null < 0) {
		fprintf(stderr, "bench-run: cannot open %s or /dev/null: %s\n", outfile, strerror(errno));
		return 2;
	}
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);

	double t0 = now_ms();
	pid_t pid = fork();
	if (pid < 0) {
		perror("bench-run: fork");
		return 2;
	}
	if (pid == 0) {
		sigprocmask(SIG_UNBLOCK, &chld, NULL);
		setpgid(0, 0);
		dup2(null, 0);
		dup2(out, 1);
		dup2(out, 2);
		execvp(cmd[0], cmd);
		fprintf(stderr, "bench-run: cannot run %s: %s\n", cmd[0], strerror(errno));
		_exit(127);
	}
	setpgid(pid, pid);
	int timed_out = 0;
	struct timespec left = { (time_t)timeout_s, (long)((timeout_s - (time_t)timeout_s) * 1e9) };
	for (;;) {
		int sig = sigtimedwait(&chld, NULL, &left);
		if (sig == SIGCHLD)
			break;
		if (sig < 0 && errno == EINTR)
			continue;
		timed_out = 1; /* EAGAIN: the time is up (retries after EINTR restart the full wait) */
		kill(-pid, SIGKILL);
		break;
	}
	int status;
	struct rusage ru;
	while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR)
		;
	double ms = now_ms() - t0;
	kill(-pid, SIGKILL); /* anything the command left behind in its group */
	int code = timed_out ? 124 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	printf("%.3f %d %ld\n", ms, code, ru.ru_maxrss);
	return 0;
}
