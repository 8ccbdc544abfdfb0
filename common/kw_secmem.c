#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "kw_secmem.h"

/*
 * Layout: every block is preceded by a 16-byte header holding its size
 * class (or, for a large block, the length of its own mapping).  Small blocks
 * are carved from 64 KiB locked slabs and recycled through free lists; a slab
 * is never returned to the system, so the locked footprint stays bounded by
 * the peak of concurrent secrets.
 */
#define KW_SLAB_SIZE (64 * 1024)
#define KW_HDR 16
static const size_t kw_classes[] = { 64, 256, 1024, 4096 };
#define KW_NCLASSES (sizeof(kw_classes) / sizeof(kw_classes[0]))
#define KW_LARGE ((uint32_t)0xffffffff)

struct kw_hdr {
	uint32_t cls;      /* index into kw_classes, or KW_LARGE */
	uint32_t magic;
	uint64_t maplen;   /* for KW_LARGE: length of the mapping */
};
#define KW_MAGIC 0x6b77736dU

struct kw_free {
	struct kw_free *next;
};

static pthread_mutex_t kw_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kw_free *kw_freelist[KW_NCLASSES];
static uint8_t *kw_slab_cur;
static size_t kw_slab_left;

void
kw_wipe(void *p, size_t n)
{
	if (p != NULL && n > 0)
		OPENSSL_cleanse(p, n);
}

int
kw_memeq_ct(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0 ? 0 : 1;
}

static void *
kw_map_locked(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	(void)madvise(p, len, MADV_DONTDUMP);
	/* Locking is best effort: an unprivileged process may have a small
	 * RLIMIT_MEMLOCK.  The pages are still kept out of core dumps. */
	(void)mlock(p, len);
	return p;
}

int
kw_secmem_harden_process(void)
{
	struct rlimit rl = { 0, 0 };

	if (setrlimit(RLIMIT_CORE, &rl) != 0)
		return -errno;
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		return -errno;
	return 0;
}

void *
kw_secalloc(size_t n)
{
	struct kw_hdr *h;
	size_t c;

	if (n == 0)
		n = 1;
	for (c = 0; c < KW_NCLASSES; c++)
		if (n <= kw_classes[c])
			break;
	if (c == KW_NCLASSES) {
		long pg = sysconf(_SC_PAGESIZE);
		size_t len;
		if (n > SIZE_MAX - KW_HDR - (size_t)pg) {
			errno = ENOMEM;
			return NULL;
		}
		len = (n + KW_HDR + (size_t)pg - 1) & ~((size_t)pg - 1);
		h = kw_map_locked(len);
		if (h == NULL)
			return NULL;
		h->cls = KW_LARGE;
		h->magic = KW_MAGIC;
		h->maplen = len;
		return (uint8_t *)h + KW_HDR;
	}

	pthread_mutex_lock(&kw_lock);
	if (kw_freelist[c] != NULL) {
		struct kw_free *f = kw_freelist[c];
		kw_freelist[c] = f->next;
		h = (struct kw_hdr *)((uint8_t *)f - KW_HDR);
	} else {
		size_t need = kw_classes[c] + KW_HDR;
		if (kw_slab_left < need) {
			/* The tail of the old slab is abandoned: it is at
			 * most one block of the largest class. */
			uint8_t *s = kw_map_locked(KW_SLAB_SIZE);
			if (s == NULL) {
				pthread_mutex_unlock(&kw_lock);
				return NULL;
			}
			kw_slab_cur = s;
			kw_slab_left = KW_SLAB_SIZE;
		}
		h = (struct kw_hdr *)kw_slab_cur;
		kw_slab_cur += need;
		kw_slab_left -= need;
	}
	pthread_mutex_unlock(&kw_lock);
	h->cls = (uint32_t)c;
	h->magic = KW_MAGIC;
	h->maplen = 0;
	memset((uint8_t *)h + KW_HDR, 0, kw_classes[c]);
	return (uint8_t *)h + KW_HDR;
}

size_t
kw_secsize(const void *p)
{
	const struct kw_hdr *h = (const struct kw_hdr *)((const uint8_t *)p - KW_HDR);

	if (h->cls == KW_LARGE)
		return (size_t)h->maplen - KW_HDR;
	return kw_classes[h->cls];
}

void
kw_secfree(void *p)
{
	struct kw_hdr *h;
	struct kw_free *f;
	uint32_t c;

	if (p == NULL)
		return;
	h = (struct kw_hdr *)((uint8_t *)p - KW_HDR);
	if (h->magic != KW_MAGIC)
		abort();   /* not ours, or a double free: never continue */
	kw_wipe(p, kw_secsize(p));
	if (h->cls == KW_LARGE) {
		size_t len = (size_t)h->maplen;
		h->magic = 0;
		munlock(h, len);
		munmap(h, len);
		return;
	}
	c = h->cls;
	h->magic = 0x66726565U;
	f = p;
	pthread_mutex_lock(&kw_lock);
	f->next = kw_freelist[c];
	kw_freelist[c] = f;
	pthread_mutex_unlock(&kw_lock);
}

int
kw_secret_alloc(kw_secret *s, size_t len)
{
	uint8_t *d = kw_secalloc(len ? len : 1);

	if (d == NULL)
		return -ENOMEM;
	s->data = d;
	s->len = len;
	return 0;
}

int
kw_secret_dup(kw_secret *s, const void *src, size_t len)
{
	int r = kw_secret_alloc(s, len);

	if (r == 0 && len > 0)
		memcpy(s->data, src, len);
	return r;
}

void
kw_secret_clear(kw_secret *s)
{
	if (s == NULL)
		return;
	kw_secfree(s->data);
	s->data = NULL;
	s->len = 0;
}
