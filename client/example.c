/*
 * example.c - the smallest useful libkeywarden program: read one secret and
 * hand it to a function that uses it, then wipe it.
 *
 *   cc example.c $(pkg-config --cflags --libs keywarden)
 *   ./example prod db/password
 */
#include <stdio.h>
#include <string.h>

#include <keywarden.h>

/* Stand-in for the code that needs the secret (a database login, ...). */
static void
use_secret(const kw_secret *s)
{
	printf("got a value of %zu bytes\n", s->len);
}

int
main(int argc, char **argv)
{
	kw_client *c = NULL;
	kw_secret value = { NULL, 0 };
	json_t *meta = NULL;
	int r;

	if (argc != 3) {
		fprintf(stderr, "usage: example VAULT NAME\n");
		return 2;
	}
	/* NULL: $KEYWARDEN_SOCKET, else the default socket. */
	if ((r = kw_client_new(&c, NULL)) != 0) {
		fprintf(stderr, "example: %s\n", kw_errdetail(r));
		return 1;
	}
	if ((r = kw_secret_get(c, argv[1], argv[2], 0, &value, &meta)) != 0) {
		fprintf(stderr, "example: %s\n", kw_client_last_error(c));
		goto out;
	}
	printf("%s/%s version %lld\n", argv[1], argv[2],
	    (long long)json_integer_value(json_object_get(meta, "version")));
	use_secret(&value);
 out:
	kw_secret_clear(&value);   /* wipes */
	json_decref(meta);
	kw_client_free(c);
	return r == 0 ? 0 : 1;
}
