/*
 * fuzz_main.c - a main() for the fuzzing harnesses, so that each is also an
 * ordinary program (built by any C compiler, without libFuzzer).
 *
 *   fuzz_NAME [FILE|DIR]...
 *
 * runs LLVMFuzzerTestOneInput once over each FILE and over each regular
 * file of each DIR (not recursively, in name order), as libFuzzer does
 * with files it is given.  Without arguments it runs over the target's
 * seed corpus, $KW_TOP_SRCDIR/tests/fuzz/corpus/NAME (make check).  Each
 * input's name is printed before it runs, so that a crash names the input.
 * Exits 0 when every input ran; 1 when an argument cannot be read or holds
 * no input at all (a corpus that is not there must not pass as tested);
 * a broken contract aborts.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz.h"

/* libFuzzer calls it, when a target defines it, before the first input. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* Run the target over one file.  0, or -1 when it cannot be read. */
static int
run_file(const char *path)
{
	FILE *f;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int rc = -1;

	if ((f = fopen(path, "rb")) == NULL) {
		fprintf(stderr, "fuzz: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (;;) {
		size_t n;

		if (len == cap) {
			char *nb;

			cap = cap ? cap * 2 : 4096;
			if ((nb = realloc(buf, cap)) == NULL) {
				fprintf(stderr, "fuzz: out of memory reading %s\n", path);
				goto out;
			}
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		fprintf(stderr, "fuzz: cannot read %s\n", path);
		goto out;
	}
	printf("%s (%zu bytes)\n", path, len);
	fflush(stdout);
	{
		/* Exactly len bytes, so that a read past the end is seen. */
		char *exact = kwf_dup_exact(buf, len);

		LLVMFuzzerTestOneInput((const uint8_t *)exact, len);
		free(exact);
	}
	rc = 0;
out:
	free(buf);
	fclose(f);
	return rc;
}

static int
cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Run the target over path (a file, or a directory of files); *count gets
 * the number of inputs run.  0 or -1. */
static int
run_path(const char *path, size_t *count)
{
	struct stat st;
	DIR *d;
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;
	int rc = -1;

	if (stat(path, &st) != 0) {
		fprintf(stderr, "fuzz: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		if (run_file(path) != 0)
			return -1;
		(*count)++;
		return 0;
	}
	if ((d = opendir(path)) == NULL) {
		fprintf(stderr, "fuzz: cannot list %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		char *full;

		if (de->d_name[0] == '.')
			continue;
		if (asprintf(&full, "%s/%s", path, de->d_name) < 0)
			goto out;
		if (stat(full, &st) != 0 || !S_ISREG(st.st_mode)) {
			free(full);
			continue;
		}
		if (n == cap) {
			char **nn;

			cap = cap ? cap * 2 : 64;
			if ((nn = realloc(names, cap * sizeof(*names))) == NULL) {
				free(full);
				goto out;
			}
			names = nn;
		}
		names[n++] = full;
	}
	qsort(names, n, sizeof(*names), cmp_name);
	for (size_t i = 0; i < n; i++) {
		if (run_file(names[i]) != 0)
			goto out;
		(*count)++;
	}
	rc = 0;
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return rc;
}

int
main(int argc, char **argv)
{
	char dflt[1024];
	char *dflt_argv[] = { argv[0], dflt, NULL };
	size_t count = 0;

	if (argc < 2) {
		const char *top = getenv("KW_TOP_SRCDIR");

		snprintf(dflt, sizeof(dflt), "%s/tests/fuzz/corpus/%s", top != NULL ? top : "..",
		    kwf_corpus);
		argc = 2;
		argv = dflt_argv;
	}
	if (LLVMFuzzerInitialize != NULL)
		LLVMFuzzerInitialize(&argc, &argv);
	for (int i = 1; i < argc; i++) {
		size_t before = count;

		if (run_path(argv[i], &count) != 0)
			return 1;
		if (count == before) {
			fprintf(stderr, "fuzz: %s holds no input\n", argv[i]);
			return 1;
		}
	}
	printf("%s: %zu inputs ran\n", kwf_corpus, count);
	return 0;
}
