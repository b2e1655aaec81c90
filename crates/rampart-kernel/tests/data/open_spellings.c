/*
 * Opens the files DIR/.ssh/via-* through every spelling of "open" an attacker can choose, one
 * file per spelling, read-only (creat excepted), so the sensor test can tell which spelling it
 * saw. Exits non-zero naming the spelling that failed, so a spelling the kernel refused is not
 * mistaken for one the sensor missed.
 *
 *   open_spellings DIR
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static char dir[4096];

static const char *file(const char *name)
{
	static char p[8192];
	snprintf(p, sizeof(p), "%s/.ssh/%s", dir, name);
	return p;
}

static void check(long fd, const char *how)
{
	if (fd < 0) {
		fprintf(stderr, "%s failed: %ld\n", how, fd);
		exit(1);
	}
	close((int)fd);
}

/* An ia32 syscall through int 0x80 from this 64-bit process. */
static long int80(long nr, long a, long b, long c, long d)
{
	long ret;
	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d)
			 : "memory", "r8", "r9", "r10", "r11");
	return ret;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	snprintf(dir, sizeof(dir), "%s", argv[1]);

	check(openat(AT_FDCWD, file("via-openat"), O_RDONLY), "openat");
	check(syscall(SYS_open, file("via-open"), O_RDONLY), "open");
	check(syscall(SYS_creat, file("via-creat"), 0600), "creat");
	struct open_how how = {.flags = O_RDONLY};
	check(syscall(SYS_openat2, AT_FDCWD, file("via-openat2"), &how, sizeof(how)), "openat2");

	/* relative to a directory descriptor */
	int d = open(file(""), O_RDONLY | O_DIRECTORY);
	if (d < 0) {
		perror("open dir");
		return 1;
	}
	check(openat(d, "via-dirfd", O_RDONLY), "openat dirfd");
	close(d);

	/* By handle: no path at all in the syscall (CAP_DAC_READ_SEARCH). */
	struct file_handle *fh = malloc(sizeof(*fh) + MAX_HANDLE_SZ);
	fh->handle_bytes = MAX_HANDLE_SZ;
	int mount_id;
	if (name_to_handle_at(AT_FDCWD, file("via-handle"), fh, &mount_id, 0) != 0) {
		perror("name_to_handle_at");
		return 1;
	}
	int mfd = open(dir, O_RDONLY | O_DIRECTORY);
	check(syscall(SYS_open_by_handle_at, mfd, fh, O_RDONLY), "open_by_handle_at");
	close(mfd);

	/* ia32 entry from a 64-bit process: the arguments must live below 4 GiB. */
	char *low = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	if (low == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	strcpy(low, file("via-int80-open"));
	long r = int80(5 /* ia32 open */, (long)low, O_RDONLY, 0, 0);
	if (r == -38 /* ENOSYS: ia32 emulation off (ia32_emulation=0) */) {
		printf("no-ia32\n");
		return 0;
	}
	check(r, "int80 open");
	strcpy(low, file("via-int80-openat"));
	check(int80(295 /* ia32 openat */, AT_FDCWD, (long)low, O_RDONLY, 0), "int80 openat");
	strcpy(low, file("via-int80-openat2"));
	struct open_how *lhow = (void *)(low + 8192);
	memset(lhow, 0, sizeof(*lhow));
	lhow->flags = O_RDONLY;
	check(int80(437 /* ia32 openat2 */, AT_FDCWD, (long)low, (long)lhow, sizeof(*lhow)), "int80 openat2");
	return 0;
}
