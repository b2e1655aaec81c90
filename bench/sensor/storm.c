/*
 * Syscall storms for the sensor benchmark. Runs inside a container; prints the elapsed wall
 * time of the storm alone and the CPU time (user + system, children included) it used, both in
 * nanoseconds, so container start-up is not measured. CPU time includes the BPF programs that
 * run in the storm's syscalls and is less disturbed by other load on the machine.
 *
 *   storm exec N      fork + exec /bin/true, N times
 *   storm connect N   N TCP connects (and accepts) to a listener on 127.0.0.1
 *   storm open N      N open(O_RDONLY) + close of one file
 *   storm getppid N   N getppid(): a syscall the sensor does not report (the hook's own cost)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long cpu_ns(void)
{
	struct rusage self, kids;
	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &kids);
	long long us = 0;
	us += self.ru_utime.tv_sec * 1000000LL + self.ru_utime.tv_usec;
	us += self.ru_stime.tv_sec * 1000000LL + self.ru_stime.tv_usec;
	us += kids.ru_utime.tv_sec * 1000000LL + kids.ru_utime.tv_usec;
	us += kids.ru_stime.tv_sec * 1000000LL + kids.ru_stime.tv_usec;
	return us * 1000;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s exec|connect|open N\n", argv[0]);
		return 2;
	}
	long n = atol(argv[2]);
	long long start, end, cpu_start;
	if (strcmp(argv[1], "exec") == 0) {
		cpu_start = cpu_ns();
		start = now_ns();
		for (long i = 0; i < n; i++) {
			pid_t pid = fork();
			if (pid < 0)
				die("fork");
			if (pid == 0) {
				execl("/bin/true", "true", (char *)NULL);
				_exit(127);
			}
			int st;
			if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
				die("child");
		}
		end = now_ns();
	} else if (strcmp(argv[1], "connect") == 0) {
		int l = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		socklen_t al = sizeof(a);
		int one = 1;
		setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1024) ||
		    getsockname(l, (struct sockaddr *)&a, &al))
			die("listen");
		cpu_start = cpu_ns();
		start = now_ns();
		for (long i = 0; i < n; i++) {
			int c = socket(AF_INET, SOCK_STREAM, 0);
			if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)))
				die("connect");
			int s = accept(l, NULL, NULL);
			if (s < 0)
				die("accept");
			/* RST instead of TIME_WAIT, so 20,000 connects do not exhaust ports */
			struct linger lg = {.l_onoff = 1, .l_linger = 0};
			setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			close(c);
			close(s);
		}
		end = now_ns();
	} else if (strcmp(argv[1], "open") == 0) {
		const char *path = "/tmp/storm-file";
		int fd = open(path, O_CREAT | O_WRONLY, 0644);
		if (fd < 0)
			die("create");
		close(fd);
		cpu_start = cpu_ns();
		start = now_ns();
		for (long i = 0; i < n; i++) {
			fd = open(path, O_RDONLY);
			if (fd < 0)
				die("open");
			close(fd);
		}
		end = now_ns();
	} else if (strcmp(argv[1], "getppid") == 0) {
		cpu_start = cpu_ns();
		start = now_ns();
		for (long i = 0; i < n; i++)
			getppid();
		end = now_ns();
	} else {
		fprintf(stderr, "unknown storm %s\n", argv[1]);
		return 2;
	}
	printf("%lld %lld\n", end - start, cpu_ns() - cpu_start);
	return 0;
}
