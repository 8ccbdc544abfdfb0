/*
 * kwfailalloc.c - preloaded into keywardend by a test (LD_PRELOAD): the
 * allocation of a request (calloc of one struct kwd_req, server_request)
 * fails while the file named by KW_FAILALLOC_FILE exists, so that a test
 * can take the daemon down its out-of-memory path for a request on demand.
 * Every other call goes to the next calloc (libc's, or ASan's in the
 * sanitizer build, which then needs verify_asan_link_order=0).
 */
#include "config.h"

#include <dlfcn.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#include "daemon/kwd.h"

void *calloc(size_t n, size_t size);

static void *(*next_calloc)(size_t, size_t);
static const char *trigger;
static __thread int resolving;

__attribute__((constructor)) static void
kwfailalloc_init(void)
{
	trigger = getenv("KW_FAILALLOC_FILE");
}

void *
calloc(size_t n, size_t size)
{
	void *(*next)(size_t, size_t) = __atomic_load_n(&next_calloc, __ATOMIC_ACQUIRE);

	if (next == NULL) {
		/* glibc's dlsym allocates only when it fails; a call from
		 * inside it is refused rather than recursed into. */
		if (resolving)
			return NULL;
		resolving = 1;
		next = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
		resolving = 0;
		if (next == NULL)
			abort();
		__atomic_store_n(&next_calloc, next, __ATOMIC_RELEASE);
	}
	if (n == 1 && size == sizeof(struct kwd_req) && trigger != NULL &&
	    access(trigger, F_OK) == 0)
		return NULL;
	return next(n, size);
}
