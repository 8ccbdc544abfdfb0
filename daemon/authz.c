/*
 * authz.c - who may do what.  Until a policy file is configured, only root
 * and the daemon's own uid may do anything; everyone else is refused.
 * Never allow by default.
 */
#include "config.h"

#include <stdio.h>
#include <unistd.h>

#include "daemon/kwd.h"

void
kwd_authorize(struct kwd *d, const struct kwd_req *r, struct kwd_decision *out)
{
	(void)d;
	if (r->who.uid == 0 || r->who.uid == geteuid()) {
		out->allow = 1;
		snprintf(out->reason, sizeof(out->reason),
		    "allowed: no policy is configured and the caller is %s",
		    r->who.uid == 0 ? "root" : "the daemon's own user");
		return;
	}
	out->allow = 0;
	snprintf(out->reason, sizeof(out->reason),
	    "denied: no policy is configured, so only root and the daemon's user are allowed");
}
