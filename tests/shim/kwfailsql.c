/*
 * kwfailsql.c - preloaded into keywardend by a test (LD_PRELOAD): while the
 * file named by KW_FAILSQL_FILE exists, a statement whose SQL contains the
 * text KW_FAILSQL_MATCH fails in sqlite3_step with SQLITE_IOERR, as a read
 * on a failing disk would, so that a test can make one kind of store read
 * fail on demand while the others go on.  Every other call goes to the
 * real sqlite3_step.  (In the sanitizer build the daemon then needs
 * ASAN_OPTIONS=verify_asan_link_order=0.)
 */
#include "config.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

static int (*next_step)(sqlite3_stmt *);
static const char *(*next_sql)(sqlite3_stmt *);
static const char *trigger, *match;

__attribute__((constructor)) static void
kwfailsql_init(void)
{
	trigger = getenv("KW_FAILSQL_FILE");
	match = getenv("KW_FAILSQL_MATCH");
	*(void **)&next_step = dlsym(RTLD_NEXT, "sqlite3_step");
	*(void **)&next_sql = dlsym(RTLD_NEXT, "sqlite3_sql");
}

int
sqlite3_step(sqlite3_stmt *st)
{
	const char *sql;

	if (next_step == NULL)
		abort();
	if (trigger != NULL && match != NULL && *match != '\0' && next_sql != NULL &&
	    access(trigger, F_OK) == 0 && (sql = next_sql(st)) != NULL &&
	    strstr(sql, match) != NULL)
		return SQLITE_IOERR;
	return next_step(st);
}
