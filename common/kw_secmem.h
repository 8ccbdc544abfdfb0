/*
 * kw_secmem.h - memory for secrets: PINs, data keys, plaintext values.
 *
 * Blocks come from pages that are locked in RAM (never swapped, where the
 * process may lock memory) and excluded from core dumps (MADV_DONTDUMP).
 * They are zeroed when handed out and wiped when freed.  Safe from any
 * thread.  The allocator keeps small blocks on per-size free lists, so the
 * request path pays no system call for them.
 */
#ifndef KW_SECMEM_H
#define KW_SECMEM_H

#include <stddef.h>
#include <stdint.h>

/* Harden the process: no core dumps, not dumpable (no ptrace by peers of the
 * same uid, no /proc/PID/mem).  Returns 0 or -errno. */
int kw_secmem_harden_process(void);

/* A zeroed block of n bytes (n > 0) or NULL with errno set.  Free with
 * kw_secfree(), which wipes it. */
void *kw_secalloc(size_t n);

/* Wipe and release a block from kw_secalloc().  Accepts NULL. */
void kw_secfree(void *p);

/* The usable size of a block from kw_secalloc(). */
size_t kw_secsize(const void *p);

/* Wipe n bytes that the compiler may not optimise away. */
void kw_wipe(void *p, size_t n);

/* Constant-time comparison: 0 when equal. */
int kw_memeq_ct(const void *a, const void *b, size_t n);

/* A secret with its length, for passing values around. */
typedef struct kw_secret {
	uint8_t *data;  /* from kw_secalloc, owned */
	size_t len;
} kw_secret;

/* Allocate s->data for len bytes (len may be 0: one byte is reserved).
 * Returns 0 or -ENOMEM. */
int kw_secret_alloc(kw_secret *s, size_t len);

/* Copy len bytes into a fresh secret. */
int kw_secret_dup(kw_secret *s, const void *src, size_t len);

/* Wipe and free; leaves s empty.  Accepts NULL and an empty secret. */
void kw_secret_clear(kw_secret *s);

#endif
