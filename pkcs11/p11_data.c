/*
 * p11_data.c - small values the token keeps for the daemon: private token
 * data objects (CKO_DATA), found by label.
 *
 * A value is replaced by creating a new object and then destroying the
 * others of its label, never by C_SetAttributeValue: PKCS#11 says nothing of
 * what a token leaves behind when it loses power while it rewrites an
 * object (SoftHSM rewrites the object's file in place), but a token creates
 * or destroys an object whole.  A crash between the two steps leaves both
 * values, never none, and p11_data_read returns every one of them: the
 * caller, who knows what the bytes mean, picks.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kw_error.h"
#include "p11_int.h"

#define APPLICATION "keywarden"
#define MAX_VALUES 8             /* objects of one label read at most */

static int
label_ok(const char *label)
{
	size_t n = label != NULL ? strlen(label) : 0;

	return n > 0 && n < 128;
}

/* p11_find_each over the private token data objects labelled label. */
static int
find_values(p11_ctx *ctx, struct p11_sess *s, const char *label,
    int (*fn)(p11_ctx *, struct p11_sess *, CK_OBJECT_HANDLE, void *), void *arg)
{
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_LABEL, (void *)label, strlen(label) },
	};

	return p11_find_each(ctx, s, t, sizeof(t) / sizeof(t[0]), "data objects", fn, arg);
}

struct read_arg {
	const char *label;
	struct p11_data *v;
	size_t n;
};

static int
read_one(p11_ctx *ctx, struct p11_sess *s, CK_OBJECT_HANDLE h, void *arg)
{
	struct read_arg *a = arg;
	CK_ATTRIBUTE t = { CKA_VALUE, NULL, 0 };
	CK_RV rv;
	uint8_t *buf;

	if (a->n == MAX_VALUES)
		return kw_fail(KW_E_P11, "token '%s' holds more than %d data objects "
		    "labelled '%s': remove the extra ones (pkcs11-tool --list-objects "
		    "--type data)", TOKNAME(ctx), MAX_VALUES, a->label);
	if ((rv = ctx->f->C_GetAttributeValue(s->h, h, &t, 1)) != CKR_OK)
		return p11_sfail(s, "C_GetAttributeValue", rv, "cannot read the size "
		    "of data object '%s' in token '%s'", a->label, TOKNAME(ctx));
	if (t.ulValueLen == CK_UNAVAILABLE_INFORMATION || t.ulValueLen > P11_DATA_MAX)
		return kw_fail(KW_E_FORMAT, "data object '%s' in token '%s' holds "
		    "%lu bytes, more than the %d keywarden writes", a->label,
		    TOKNAME(ctx), (unsigned long)t.ulValueLen, P11_DATA_MAX);
	if ((buf = malloc(t.ulValueLen + 1)) == NULL)
		return -ENOMEM;
	t.pValue = buf;
	if ((rv = ctx->f->C_GetAttributeValue(s->h, h, &t, 1)) != CKR_OK) {
		free(buf);
		return p11_sfail(s, "C_GetAttributeValue", rv, "cannot read data "
		    "object '%s' in token '%s'", a->label, TOKNAME(ctx));
	}
	buf[t.ulValueLen] = '\0';
	a->v[a->n].value = buf;
	a->v[a->n].len = t.ulValueLen;
	a->n++;
	return 0;
}

static int
op_read(p11_ctx *ctx, struct p11_sess *s, void *arg)
{
	struct read_arg *a = arg;

	/* A retry after a reopen starts afresh. */
	p11_data_free(a->v, a->n);
	a->v = NULL;
	a->n = 0;
	if ((a->v = calloc(MAX_VALUES, sizeof(*a->v))) == NULL)
		return -ENOMEM;
	return find_values(ctx, s, a->label, read_one, a);
}

int
p11_data_read(p11_ctx *ctx, const char *label, struct p11_data **out, size_t *n)
{
	struct read_arg a = { label, NULL, 0 };
	int r;

	*out = NULL;
	*n = 0;
	if (!label_ok(label))
		return kw_fail(-EINVAL, "a data object's label must be 1 to 127 bytes");
	if ((r = p11_run_keylocked(ctx, op_read, &a)) != 0) {
		p11_data_free(a.v, a.n);
		return r;
	}
	if (a.n == 0) {
		free(a.v);
		a.v = NULL;
	}
	*out = a.v;
	*n = a.n;
	return 0;
}

void
p11_data_free(struct p11_data *v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i].value);
	free(v);
}

struct write_arg {
	const char *label;
	const void *value;
	size_t len;
	CK_OBJECT_HANDLE keep;
	CK_OBJECT_HANDLE old[MAX_VALUES + 1];   /* the older values found */
	size_t nold;
};

static int
collect_old(p11_ctx *ctx, struct p11_sess *s, CK_OBJECT_HANDLE h, void *arg)
{
	struct write_arg *a = arg;

	(void)ctx;
	(void)s;
	if (h != a->keep && a->nold < sizeof(a->old) / sizeof(a->old[0]))
		a->old[a->nold++] = h;
	return 0;
}

static int
op_write(p11_ctx *ctx, struct p11_sess *s, void *arg)
{
	struct write_arg *a = arg;
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE nt[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_MODIFIABLE, &yes, sizeof(yes) },
		{ CKA_LABEL, (void *)a->label, strlen(a->label) },
		{ CKA_APPLICATION, (void *)APPLICATION, strlen(APPLICATION) },
		{ CKA_VALUE, (void *)a->value, a->len },
	};
	CK_RV rv;
	int r;

	if ((r = p11_sess_logged_in(ctx, s)) != 0)
		return r;
	if ((rv = ctx->f->C_CreateObject(s->h, nt, sizeof(nt) / sizeof(nt[0]),
	    &a->keep)) != CKR_OK)
		return p11_sfail(s, "C_CreateObject", rv, "cannot write data object "
		    "'%s' to token '%s'", a->label, TOKNAME(ctx));
	/* Then the older values: found first, destroyed after the search,
	 * since a token may not let objects go while one is active. */
	a->nold = 0;
	if ((r = find_values(ctx, s, a->label, collect_old, a)) != 0)
		return r;
	for (size_t i = 0; i < a->nold; i++)
		if ((rv = ctx->f->C_DestroyObject(s->h, a->old[i])) != CKR_OK &&
		    rv != CKR_OBJECT_HANDLE_INVALID)
			return p11_sfail(s, "C_DestroyObject", rv, "wrote data object "
			    "'%s' to token '%s' but cannot remove its older value",
			    a->label, TOKNAME(ctx));
	return 0;
}

int
p11_data_write(p11_ctx *ctx, const char *label, const void *value, size_t len)
{
	struct write_arg a = { .label = label, .value = value, .len = len, .keep = CK_INVALID_HANDLE };

	if (!label_ok(label))
		return kw_fail(-EINVAL, "a data object's label must be 1 to 127 bytes");
	if (len == 0 || len > P11_DATA_MAX)
		return kw_fail(-EINVAL, "a data object holds 1 to %d bytes", P11_DATA_MAX);
	return p11_run_keylocked(ctx, op_write, &a);
}
