/*
 * policy-bench - how long one decision takes against a large policy.
 *
 *   policy/policy-bench [-w] [-r RULES] [-v VAULTS] [-n DECISIONS] [-g GROUPS]
 *
 * Writes a policy of RULES rules (default 1000) spread over VAULTS vaults
 * (default 20; 1 puts every rule on the same vault, the worst case for the
 * index), loads it, and times DECISIONS decisions (default 200000) one by
 * one with CLOCK_MONOTONIC.  -w starts every name pattern with a wildcard
 * segment, which the name index cannot use: the worst case, a scan.  The
 * caller is in GROUPS supplementary groups (default 8, at most 65536): the
 * one its team's rule names, and GROUPS - 1 that no rule names, all in
 * ascending order as the kernel reports them.  Prints the load time and the
 * median, 90th and 99th percentile of a decision, for a mix of allowed and
 * denied requests.  Run by hand; not part of make check.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "policy/policy.h"

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void
usage(void)
{
	fprintf(stderr, "usage: policy-bench [-w] [-r rules] [-v vaults] [-n decisions] [-g groups]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	int nrules = 1000, nvaults = 20, ndec = 200000, ngroups = 8, c, allowed = 0, rc = 1,
	    wild = 0;
	const char *pre;
	char path[] = "/tmp/policy-bench.XXXXXX";
	struct policy *p = NULL;
	struct policy_errors *e = NULL;
	uint64_t *t = NULL, t0, load_ns;
	gid_t *groups = NULL;
	FILE *f;
	int fd;

	while ((c = getopt(argc, argv, "wr:v:n:g:")) != -1) {
		switch (c) {
		case 'r': nrules = atoi(optarg); break;
		case 'v': nvaults = atoi(optarg); break;
		case 'n': ndec = atoi(optarg); break;
		case 'g': ngroups = atoi(optarg); break;
		case 'w': wild = 1; break;
		default: usage();
		}
	}
	if (nrules < 1 || nvaults < 1 || ndec < 1 || ngroups < 1 || ngroups > 65536)
		usage();
	if ((fd = mkstemp(path)) < 0 || (f = fdopen(fd, "w")) == NULL) {
		perror("policy-bench: mkstemp");
		return 1;
	}
	/* Rules like a real host's: one per service and secret folder, some
	 * by group, some by executable, a few denies, a few for every vault. */
	pre = wild ? "*/" : "";
	fprintf(f, "version: 1\nrules:\n");
	for (int i = 0; i < nrules; i++) {
		if (i % 100 == 99)
			fprintf(f, "  - name: deny-%d\n    who: '*'\n    deny: secret.purge\n"
			    "    vault: v%d\n    names: ['%ssvc%d/**']\n", i, i % nvaults, pre, i);
		else if (i % 100 == 50)
			fprintf(f, "  - name: ops-%d\n    who: {group: %d}\n    allow: auditor\n"
			    "    vault: '*'\n", i, 50000 + i);
		else if (i % 3 == 0)
			fprintf(f, "  - name: svc-%d\n    who: {user: %d, exe: /usr/lib/svc%d/server}\n"
			    "    allow: secrets-reader\n    vault: v%d\n    names: ['%ssvc%d/*']\n",
			    i, 10000 + i, i, i % nvaults, pre, i);
		else
			fprintf(f, "  - name: team-%d\n    who: {group: %d}\n    allow: secrets-user\n"
			    "    vault: v%d\n    names: ['%ssvc%d/**', 'shared/svc%d']\n",
			    i, 20000 + i, i % nvaults, pre, i, i);
	}
	fclose(f);

	t0 = now_ns();
	if (policy_load(path, NULL, &p, &e) != 0) {
		char line[1024];

		for (size_t i = 0; e != NULL && i < e->n && i < 10; i++) {
			policy_error_format(&e->v[i], line, sizeof(line));
			fprintf(stderr, "%s\n", line);
		}
		goto out;
	}
	load_ns = now_ns() - t0;
	if ((t = calloc((size_t)ndec, sizeof(*t))) == NULL ||
	    (groups = calloc((size_t)ngroups, sizeof(*groups))) == NULL)
		goto out;
	/* groups[0] is the team's (20000 + i, set per decision); the others
	 * are above every gid the rules name, so that the array stays in
	 * ascending order. */
	for (int g = 1; g < ngroups; g++)
		groups[g] = (gid_t)(100000 + g);

	for (int k = 0; k < ndec; k++) {
		int i = (int)(((unsigned)k * 2654435761u) % (unsigned)nrules);
		struct policy_identity id;
		struct policy_decision d;
		char vault[16], name[64];

		memset(&id, 0, sizeof(id));
		id.known = POLICY_ID_UID | POLICY_ID_GID | POLICY_ID_GROUPS | POLICY_ID_PID |
		    POLICY_ID_EXE;
		id.uid = (uid_t)(10000 + i);
		id.gid = 100;
		groups[0] = (gid_t)(20000 + i);
		id.ngroups = (size_t)ngroups;
		id.groups = groups;
		id.exe = "/usr/lib/svc0/server";
		snprintf(vault, sizeof(vault), "v%d", (k & 1) ? i % nvaults : (i + 1) % nvaults);
		snprintf(name, sizeof(name), "%ssvc%d/db/password", wild ? "team/" : "", i);
		t0 = now_ns();
		policy_decide(p, &id, (k & 2) ? POLICY_A_SECRET_GET : POLICY_A_SECRET_LIST,
		    vault, name, &d);
		t[k] = now_ns() - t0;
		allowed += d.allow;
	}
	qsort(t, (size_t)ndec, sizeof(*t), cmp_u64);
	printf("policy-bench: %d rules over %d vaults%s, a caller in %d group%s\n", nrules, nvaults,
	    wild ? ", every pattern starting with a wildcard" : "", ngroups, ngroups == 1 ? "" : "s");
	printf("  load+compile: %.2f ms\n", (double)load_ns / 1e6);
	printf("  %d decisions (%d allowed): median %.3f us, p90 %.3f us, p99 %.3f us, max %.3f us\n",
	    ndec, allowed, (double)t[ndec / 2] / 1e3, (double)t[ndec * 9 / 10] / 1e3,
	    (double)t[ndec * 99 / 100] / 1e3, (double)t[ndec - 1] / 1e3);
	rc = 0;
out:
	free(groups);
	free(t);
	policy_free(p);
	policy_errors_free(e);
	unlink(path);
	return rc;
}
