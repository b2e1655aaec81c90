/* Opens PATH through an io_uring ring (IORING_OP_OPENAT) and reads from it, the way a tool
 * that wants to stay out of sight of syscall sensors does: no open/openat syscall is made.
 * Raw syscalls, no liburing, so it builds static from linux-libc-dev alone.
 * The ring is set up with 8 entries and IORING_SETUP_CLAMP; the tests look for those. Then a
 * second ring, 4 entries, through the ia32 entry (int 0x80, where io_uring_setup is 425 as on
 * x86_64) from this 64-bit process: "no-ia32" is printed when the kernel has no ia32 emulation. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/io_uring.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* io_uring_setup through int 0x80: the arguments are truncated to 32 bits, so the params live
 * below 4 GiB (MAP_32BIT). Returns the syscall's result, -38 (ENOSYS) without ia32 emulation. */
static long ia32_ring(unsigned entries)
{
	struct io_uring_params *p = mmap(0, 4096, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	memset(p, 0, sizeof(*p));
	p->flags = IORING_SETUP_CLAMP;
	long ret;
	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(425L), "b"((long)entries), "c"((long)p)
			 : "memory", "r8", "r9", "r10", "r11");
	return ret;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s PATH\n", argv[0]);
		return 2;
	}
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_CLAMP;
	int ring = syscall(__NR_io_uring_setup, 8, &p);
	if (ring < 0) {
		perror("io_uring_setup");
		return 1;
	}
	size_t sq_sz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	size_t cq_sz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	int single = p.features & IORING_FEAT_SINGLE_MMAP;
	if (single) {
		if (cq_sz > sq_sz)
			sq_sz = cq_sz;
		cq_sz = sq_sz;
	}
	char *sq = mmap(0, sq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQ_RING);
	char *cq = single ? sq
			  : mmap(0, cq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_CQ_RING);
	struct io_uring_sqe *sqes = mmap(0, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
					 MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	unsigned *sq_tail = (unsigned *)(sq + p.sq_off.tail);
	unsigned *sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
	unsigned *sq_array = (unsigned *)(sq + p.sq_off.array);
	unsigned tail = *sq_tail;
	unsigned idx = tail & *sq_mask;
	struct io_uring_sqe *sqe = &sqes[idx];
	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = IORING_OP_OPENAT;
	sqe->fd = AT_FDCWD;
	sqe->addr = (unsigned long)argv[1];
	sqe->open_flags = O_RDONLY;
	sq_array[idx] = idx;
	__atomic_store_n(sq_tail, tail + 1, __ATOMIC_RELEASE);
	if (syscall(__NR_io_uring_enter, ring, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0) {
		perror("io_uring_enter");
		return 1;
	}
	unsigned *cq_head = (unsigned *)(cq + p.cq_off.head);
	unsigned *cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
	struct io_uring_cqe *cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
	struct io_uring_cqe *cqe = &cqes[__atomic_load_n(cq_head, __ATOMIC_ACQUIRE) & *cq_mask];
	if (cqe->res < 0) {
		fprintf(stderr, "openat through the ring: %s\n", strerror(-cqe->res));
		return 1;
	}
	char buf[64];
	ssize_t r = read(cqe->res, buf, sizeof(buf));
	printf("ring %d opened fd %d read %zd\n", ring, cqe->res, r);
	long r32 = ia32_ring(4);
	if (r32 == -38) {
		printf("no-ia32\n");
	} else if (r32 < 0) {
		fprintf(stderr, "ia32 io_uring_setup: %s\n", strerror((int)-r32));
		return 1;
	} else {
		printf("ia32 ring %ld\n", r32);
	}
	return 0;
}
