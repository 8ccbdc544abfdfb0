/*
 * kw_file.h - the layers under kw_file_encrypt/kw_file_decrypt: the header
 * of a keywarden encrypted file and its chunks (docs/file-format.md).
 *
 * Internal to libkeywarden (not installed, not exported: the names are kwf_)
 * and split out so that tests can run the chunk layer on a data key of
 * their own, without a daemon.
 */
#ifndef KW_FILE_H
#define KW_FILE_H

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "kw_secmem.h"

#define KWF_MAGIC "KWF1"
#define KWF_FORMAT 1
#define KWF_ALG_AES256GCM 1
#define KWF_CHUNK 65536u                /* what we write */
#define KWF_CHUNK_MAX (16u << 20)       /* what we read at most */
#define KWF_SALT 32
#define KWF_TAG 16
#define KWF_INFO "keywarden file v1"
#define KWF_CONTEXT_KEY "keywarden.file"  /* added to the wrapping context */
#define KWF_CONTEXT_VALUE "v1"

/* A parsed (or built) header.  raw holds its bytes as they are in the
 * file; the other fields point into it or are copies.  Free with
 * kwf_header_free. */
struct kwf_header {
	uint8_t *raw;
	size_t raw_len;
	uint32_t chunk_size;
	const uint8_t *salt;            /* into raw, KWF_SALT bytes */
	char vault[256];
	const uint8_t *wrapped;         /* into raw */
	size_t wrapped_len;
	json_t *context;                /* the caller's context (an object) */
};

/* Build a header with a fresh random salt.  context may be NULL ({}).
 * 0, -EINVAL (a name or length that does not fit), -ENOMEM, KW_E_INTERNAL. */
int kwf_header_build(struct kwf_header *h, const char *vault, const uint8_t *wrapped,
    size_t wrapped_len, const json_t *context, uint32_t chunk_size);

/* Read and check a header from in.  0, KW_E_FORMAT, -EIO, -ENOMEM. */
int kwf_header_read(FILE *in, struct kwf_header *h);

void kwf_header_free(struct kwf_header *h);

/* What kw_file_decrypt and kw_file_rewrap read before they ask the daemon
 * anything: the header from in (kwf_header_read), checked against the
 * caller's context (NULL: take the header's; another: KW_E_AUTH) and for
 * the reserved key KWF_CONTEXT_KEY (KW_E_FORMAT), and the context its data
 * key was wrapped with, the header's plus KWF_CONTEXT_KEY, into *wctx (the
 * caller's to json_decref).  h holds the header once it was read, even when
 * a later check fails: the caller frees it with kwf_header_free in any case;
 * *wctx is set only on success.  0, KW_E_FORMAT, KW_E_AUTH, -EIO, -ENOMEM. */
int kwf_header_open(const json_t *context, FILE *in, struct kwf_header *h, json_t **wctx);

/* The canonical form of a context (keys sorted, compact; "{}" for NULL),
 * malloc'd, or NULL. */
char *kwf_context_canonical(const json_t *context);

/* Write h's bytes and then in, chunked and sealed under the key derived from
 * dk, to out.  0, -EIO, -ENOMEM, KW_E_INTERNAL. */
int kwf_seal(const kw_secret *dk, const struct kwf_header *h, FILE *in, FILE *out);

/* Read the chunks that follow h in in, check each, write its plaintext to
 * out.  0, KW_E_AUTH (with "chunk N: ..." in kw_errdetail), -EIO, -ENOMEM. */
int kwf_open(const kw_secret *dk, const struct kwf_header *h, FILE *in, FILE *out);

/* Read the chunks that follow from in, check each, and write them to out
 * sealed under to: the header to's bytes, then the same chunks (same
 * plaintext, counters and final flag) under the key derived from dk and
 * to's salt.  The chunk sizes must agree.  The plaintext stays in secure
 * memory.  0, KW_E_AUTH as kwf_open, -EIO, -ENOMEM, KW_E_INTERNAL. */
int kwf_reseal(const kw_secret *dk, const struct kwf_header *from, FILE *in,
    const struct kwf_header *to, FILE *out);

#endif
