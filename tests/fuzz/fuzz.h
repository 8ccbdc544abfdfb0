/*
 * fuzz.h - what keywarden's fuzzing harnesses share.
 *
 * Each tests/fuzz/fuzz_NAME.c defines LLVMFuzzerTestOneInput() and names
 * its seed corpus with KWF_CORPUS("NAME").  Linked with fuzz_main.c it is an
 * ordinary program that runs the function over files and directories
 * (make check runs it over tests/fuzz/corpus/NAME/); linked with
 * -fsanitize=fuzzer it is a libFuzzer target (configure --enable-fuzzers,
 * scripts/fuzz).  A broken contract calls kwf_fail(), which aborts: to a
 * fuzzer, a crash.
 */
#ifndef KW_FUZZ_H
#define KW_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The name of the target's directory under tests/fuzz/corpus/. */
extern const char kwf_corpus[];
#define KWF_CORPUS(name) const char kwf_corpus[] = name

/* Print "fuzz: <what> (file:line)" to stderr and abort(). */
void kwf_fail_at(const char *file, int line, const char *what)
	__attribute__((noreturn));
#define kwf_fail(what) kwf_fail_at(__FILE__, __LINE__, (what))
/* A contract: abort when cond does not hold. */
#define kwf_check(cond) do { if (!(cond)) kwf_fail("check failed: " #cond); } while (0)

/* A private directory for this process (mode 0700, under $TMPDIR or /tmp),
 * made at the first call and removed with what it holds at exit.  NULL
 * when it cannot be made (the caller aborts: a harness that cannot run
 * must not pass). */
const char *kwf_tmpdir(void);

/* Write data[0..size) to path, replacing it, with the given mode (the
 * mode is set even on an existing file).  0 or -1. */
int kwf_write_file(const char *path, const void *data, size_t size, int mode);

/* A copy of data[0..size) in a heap block of exactly size bytes (one byte
 * when size is 0), so that ASan sees a read past its end.  Aborts when out
 * of memory. */
char *kwf_dup_exact(const void *data, size_t size);

#endif
