/*
 * pkcs11/ on a throwaway SoftHSM token: opening and its errors, recovery
 * through the interposer module (tests/shim), master keys, every wrap
 * mechanism, threads, the audit key.
 *
 * Suites run in order: "errors" and "recovery" with no other context open
 * (login is per process in PKCS#11, so a wrong PIN is only seen while
 * nobody is logged in), then "keys" with one context kept open.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "kw_error.h"
#include "kw_secmem.h"
#include "pkcs11/p11.h"
#include "pkcs11/p11_int.h"
#include "tests/lib/kwtest.h"
#include "tests/lib/kwt_cunit.h"

#define LABEL "kwp11"

static struct kwt_token tok;
static char shim[600];
static p11_ctx *ctx;            /* the "keys" suite's context */

static void
opts(struct p11_options *o, const char *module, const char *token,
    enum p11_wrap_mech wrap)
{
	memset(o, 0, sizeof(*o));
	o->module = module;
	o->token = token;
	o->pin_file = tok.pin_file;
	o->wrap = wrap;
}

static int
open_with(const char *module, const char *token, enum p11_wrap_mech wrap,
    p11_ctx **out)
{
	struct p11_options o;

	opts(&o, module, token, wrap);
	return p11_open(&o, out);
}

static int
contains(const char *hay, const char *needle)
{
	if (strstr(hay, needle) != NULL)
		return 1;
	fprintf(stderr, "\n  detail \"%s\" lacks \"%s\"\n", hay, needle);
	return 0;
}

/* ---- errors ------------------------------------------------------------- */

static void
test_open_ok_by_label_serial_uri(void)
{
	char uri[128];
	const char *specs[3];
	struct p11_token_info ti;
	p11_ctx *c = NULL;
	size_t i;
	int r;

	snprintf(uri, sizeof(uri), "pkcs11:token=%s", LABEL);
	specs[0] = LABEL;
	specs[1] = tok.serial;
	specs[2] = uri;
	for (i = 0; i < 3; i++) {
		r = open_with(tok.module, specs[i], P11_WRAP_AUTO, &c);
		CU_ASSERT_EQUAL_FATAL(r, 0);
		CU_ASSERT_EQUAL(p11_token_info(c, &ti), 0);
		CU_ASSERT_STRING_EQUAL(ti.label, LABEL);
		CU_ASSERT_STRING_EQUAL(ti.serial, tok.serial);
		CU_ASSERT_EQUAL(ti.wrap, P11_WRAP_AES_GCM);
		CU_ASSERT_EQUAL(ti.sessions, 4);
		CU_ASSERT_EQUAL(p11_ping(c), 0);
		p11_close(c);
		c = NULL;
	}
}

static void
test_wrong_pin(void)
{
	char path[400];
	p11_ctx *c = NULL;
	int r;

	snprintf(path, sizeof(path), "%s/wrongpin", tok.dir);
	CU_ASSERT_FATAL(kwt_write_file(path, "9999\n", 0600) == 0);
	{
		struct p11_options o;

		opts(&o, tok.module, LABEL, P11_WRAP_AUTO);
		o.pin_file = path;
		r = p11_open(&o, &c);
	}
	CU_ASSERT_EQUAL(r, KW_E_PIN);
	CU_ASSERT_PTR_NULL(c);
	CU_ASSERT(contains(kw_errdetail(r), "C_Login"));
	CU_ASSERT(contains(kw_errdetail(r), "CKR_PIN_INCORRECT"));
	CU_ASSERT(contains(kw_errdetail(r), path));
	CU_ASSERT(strstr(kw_errdetail(r), "9999") == NULL);
}

static void
test_pin_file_mode(void)
{
	char path[400];
	p11_ctx *c = NULL;
	struct p11_options o;
	int r;

	snprintf(path, sizeof(path), "%s/loosepin", tok.dir);
	CU_ASSERT_FATAL(kwt_write_file(path, KWT_USER_PIN "\n", 0644) == 0);
	chmod(path, 0644);
	opts(&o, tok.module, LABEL, P11_WRAP_AUTO);
	o.pin_file = path;
	r = p11_open(&o, &c);
	CU_ASSERT_EQUAL(r, KW_E_PIN);
	CU_ASSERT_PTR_NULL(c);
	CU_ASSERT(contains(kw_errdetail(r), "0644"));
	CU_ASSERT(contains(kw_errdetail(r), "chmod 600"));

	o.pin_file = "/nonexistent/pin";
	r = p11_open(&o, &c);
	CU_ASSERT_EQUAL(r, KW_E_PIN);
	CU_ASSERT(contains(kw_errdetail(r), "/nonexistent/pin"));
}

static void
test_pin_read(void)
{
	char path[400], *pin = NULL;
	size_t len = 0;

	snprintf(path, sizeof(path), "%s/pin2", tok.dir);
	CU_ASSERT_FATAL(kwt_write_file(path, "abcd\r\n", 0600) == 0);
	CU_ASSERT_EQUAL_FATAL(p11_pin_read(path, &pin, &len), 0);
	CU_ASSERT_EQUAL(len, 4);
	CU_ASSERT(memcmp(pin, "abcd", 5) == 0);
	kw_secfree(pin);
	CU_ASSERT_FATAL(kwt_write_file(path, "\n", 0600) == 0);
	CU_ASSERT_EQUAL(p11_pin_read(path, &pin, &len), KW_E_PIN);
	CU_ASSERT(contains(kw_errdetail(KW_E_PIN), "empty"));
	CU_ASSERT_EQUAL(p11_pin_read(tok.dir, &pin, &len), KW_E_PIN);
}

/* The PIN file has one name, in a directory that only the daemon's user
 * or root may write (or whose sticky bit keeps each user to their own
 * files), owned by one of them.  (The test of another user's directory
 * needs root to make one; CI runs as root.) */
static void
test_pin_file_place(void)
{
	char dir[400], path[450], other[450], *pin = NULL;
	size_t len = 0;
	int r;

	snprintf(dir, sizeof(dir), "%s/pindir", tok.dir);
	snprintf(path, sizeof(path), "%s/pin", dir);
	snprintf(other, sizeof(other), "%s/pin.bak", dir);
	CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0700), 0);
	CU_ASSERT_FATAL(kwt_write_file(path, "abcd\n", 0600) == 0);
	CU_ASSERT_EQUAL_FATAL(p11_pin_read(path, &pin, &len), 0);
	kw_secfree(pin);

	/* a second name */
	CU_ASSERT_EQUAL_FATAL(link(path, other), 0);
	r = p11_pin_read(path, &pin, &len);
	CU_ASSERT_EQUAL(r, KW_E_PIN);
	CU_ASSERT(contains(kw_errdetail(r), path));
	CU_ASSERT(contains(kw_errdetail(r), "has 2 hard links"));
	CU_ASSERT_EQUAL(unlink(other), 0);
	CU_ASSERT_EQUAL(p11_pin_read(path, &pin, &len), 0);
	kw_secfree(pin);

	/* a directory others may write */
	CU_ASSERT_EQUAL_FATAL(chmod(dir, 0770), 0);
	r = p11_pin_read(path, &pin, &len);
	CU_ASSERT_EQUAL(r, KW_E_PIN);
	CU_ASSERT(contains(kw_errdetail(r), dir));
	CU_ASSERT(contains(kw_errdetail(r), "writable by its group (mode 0770) without "
	    "the sticky bit"));
	CU_ASSERT_EQUAL_FATAL(chmod(dir, 0703), 0);
	r = p11_pin_read(path, &pin, &len);
	CU_ASSERT_EQUAL(r, KW_E_PIN);
	CU_ASSERT(contains(kw_errdetail(r), "writable by every user (mode 0703)"));
	/* ... unless its sticky bit keeps them to their own files */
	CU_ASSERT_EQUAL_FATAL(chmod(dir, 01777), 0);
	CU_ASSERT_EQUAL(p11_pin_read(path, &pin, &len), 0);
	kw_secfree(pin);
	CU_ASSERT_EQUAL_FATAL(chmod(dir, 0700), 0);

	/* another user's directory */
	if (geteuid() == 0) {
		CU_ASSERT_EQUAL_FATAL(chown(dir, 4321, 4321), 0);
		r = p11_pin_read(path, &pin, &len);
		CU_ASSERT_EQUAL(r, KW_E_PIN);
		CU_ASSERT(contains(kw_errdetail(r), "its directory"));
		CU_ASSERT(contains(kw_errdetail(r), "is owned by uid 4321, neither the "
		    "daemon's user (uid 0) nor root"));
		CU_ASSERT_EQUAL_FATAL(chown(dir, 0, 0), 0);
		CU_ASSERT_EQUAL(p11_pin_read(path, &pin, &len), 0);
		kw_secfree(pin);

		/* Checked for a daemon that will run as that user (keywardend
		 * --check-config run as root): its file and directory pass,
		 * and a third user's are refused naming it. */
		CU_ASSERT_EQUAL_FATAL(chown(path, 4321, 4321), 0);
		r = p11_pin_read(path, &pin, &len);
		CU_ASSERT_EQUAL(r, KW_E_PIN);
		CU_ASSERT(contains(kw_errdetail(r), "is owned by uid 4321, neither the "
		    "daemon's user (uid 0) nor root"));
		CU_ASSERT_EQUAL(p11_pin_check(path, 4321), 0);
		CU_ASSERT_EQUAL_FATAL(chown(dir, 4321, 4321), 0);
		CU_ASSERT_EQUAL(p11_pin_check(path, 4321), 0);
		r = p11_pin_check(path, 5555);
		CU_ASSERT_EQUAL(r, KW_E_PIN);
		CU_ASSERT(contains(kw_errdetail(r), "its directory"));
		CU_ASSERT(contains(kw_errdetail(r), "(uid 5555)"));
		CU_ASSERT_EQUAL_FATAL(chown(dir, 0, 0), 0);
		r = p11_pin_check(path, 5555);
		CU_ASSERT_EQUAL(r, KW_E_PIN);
		CU_ASSERT(contains(kw_errdetail(r), "is owned by uid 4321, neither the "
		    "daemon's user (uid 5555) nor root"));
		/* ... and its mode is checked as for the daemon */
		CU_ASSERT_EQUAL_FATAL(chmod(path, 0640), 0);
		r = p11_pin_check(path, 4321);
		CU_ASSERT_EQUAL(r, KW_E_PIN);
		CU_ASSERT(contains(kw_errdetail(r), "has mode 0640"));
		CU_ASSERT_EQUAL_FATAL(chmod(path, 0600), 0);
		CU_ASSERT_EQUAL_FATAL(chown(path, 0, 0), 0);
		/* A file of root's passes for root, but not for a daemon
		 * that runs as another user: it could not open it. */
		CU_ASSERT_EQUAL(p11_pin_check(path, 0), 0);
		r = p11_pin_check(path, 4321);
		CU_ASSERT_EQUAL(r, KW_E_PIN);
		CU_ASSERT(contains(kw_errdetail(r), "belongs to root (mode 0600): the daemon's "
		    "user (uid 4321) cannot read it"));
	} else {
		fprintf(stderr, "\n  not root: another user's directory not tried\n");
	}
	unlink(path);
	rmdir(dir);
}

static void
test_missing_module(void)
{
	p11_ctx *c = NULL;
	int r;

	r = open_with("/nonexistent/libnope.so", LABEL, P11_WRAP_AUTO, &c);
	CU_ASSERT_EQUAL(r, KW_E_P11);
	CU_ASSERT_PTR_NULL(c);
	CU_ASSERT(contains(kw_errdetail(r), "dlopen"));
	CU_ASSERT(contains(kw_errdetail(r), "/nonexistent/libnope.so"));
	r = open_with(NULL, LABEL, P11_WRAP_AUTO, &c);
	CU_ASSERT_EQUAL(r, KW_E_CONFIG);
}

static void
test_absent_token(void)
{
	p11_ctx *c = NULL;
	int r;

	r = open_with(tok.module, "nosuchtoken", P11_WRAP_AUTO, &c);
	CU_ASSERT_EQUAL(r, KW_E_TOKEN);
	CU_ASSERT_PTR_NULL(c);
	CU_ASSERT(contains(kw_errdetail(r), "'nosuchtoken' not found"));
	CU_ASSERT(contains(kw_errdetail(r), "SOFTHSM2_CONF"));
	r = open_with(tok.module, "pkcs11:token=nosuchtoken", P11_WRAP_AUTO, &c);
	CU_ASSERT_EQUAL(r, KW_E_TOKEN);
	r = open_with(tok.module, "pkcs11:token=%zz", P11_WRAP_AUTO, &c);
	CU_ASSERT_EQUAL(r, KW_E_CONFIG);
	CU_ASSERT(contains(kw_errdetail(r), "RFC 7512"));
}

static void
test_missing_mechanisms(void)
{
	p11_ctx *c = NULL;
	struct p11_token_info ti;
	int r;

	setenv("KW_SHIM_HIDE_MECHS", "gcm,kwp,ecb", 1);
	r = open_with(shim, LABEL, P11_WRAP_AUTO, &c);
	CU_ASSERT_EQUAL(r, KW_E_MECHANISM);
	CU_ASSERT_PTR_NULL(c);
	CU_ASSERT(contains(kw_errdetail(r), "CKM_AES_GCM (missing)"));
	CU_ASSERT(contains(kw_errdetail(r), "CKM_AES_KEY_WRAP_PAD (missing)"));
	CU_ASSERT(contains(kw_errdetail(r), "CKM_AES_ECB (missing)"));

	setenv("KW_SHIM_HIDE_MECHS", "gcm", 1);
	r = open_with(shim, LABEL, P11_WRAP_AES_GCM, &c);
	CU_ASSERT_EQUAL(r, KW_E_MECHANISM);
	CU_ASSERT(contains(kw_errdetail(r), "lacks CKM_AES_GCM"));

	setenv("KW_SHIM_HIDE_MECHS", "aesgen", 1);
	r = open_with(shim, LABEL, P11_WRAP_AUTO, &c);
	CU_ASSERT_EQUAL(r, KW_E_MECHANISM);
	CU_ASSERT(contains(kw_errdetail(r), "CKM_AES_KEY_GEN"));

	setenv("KW_SHIM_HIDE_MECHS", "gcm,kwp", 1);
	r = open_with(shim, LABEL, P11_WRAP_AUTO, &c);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	CU_ASSERT_EQUAL(p11_token_info(c, &ti), 0);
	CU_ASSERT_EQUAL(ti.wrap, P11_WRAP_ECB_HMAC);
	p11_close(c);
	c = NULL;

	setenv("KW_SHIM_HIDE_MECHS", "gcm", 1);
	r = open_with(shim, LABEL, P11_WRAP_AUTO, &c);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	CU_ASSERT_EQUAL(p11_token_info(c, &ti), 0);
	CU_ASSERT_EQUAL(ti.wrap, P11_WRAP_AES_KWP);
	p11_close(c);
	unsetenv("KW_SHIM_HIDE_MECHS");
}

static void
test_names(void)
{
	uint8_t b[8] = { 1, 1, 0, 0, 0, 1, 32, 0 };

	CU_ASSERT_STRING_EQUAL(p11_rv_name(CKR_PIN_INCORRECT), "CKR_PIN_INCORRECT");
	CU_ASSERT_STRING_EQUAL(p11_rv_name(CKR_OK), "CKR_OK");
	CU_ASSERT_STRING_EQUAL(p11_rv_name(CKR_FUNCTION_REJECTED),
	    "CKR_FUNCTION_REJECTED");
	CU_ASSERT_STRING_EQUAL(p11_rv_name(CKR_VENDOR_DEFINED | 5),
	    "CKR_VENDOR_DEFINED");
	CU_ASSERT_STRING_EQUAL(p11_rv_name(0x7777), "CKR_(unknown)");
	CU_ASSERT_STRING_EQUAL(p11_wrap_mech_name(P11_WRAP_AES_GCM), "aes-gcm");
	CU_ASSERT_STRING_EQUAL(p11_wrap_mech_name(P11_WRAP_AES_KWP), "aes-kwp");
	CU_ASSERT_STRING_EQUAL(p11_wrap_mech_name(P11_WRAP_ECB_HMAC),
	    "aes-ecb-hmac");
	/* a header alone is not a blob: lengths must agree */
	CU_ASSERT_EQUAL(p11_blob_info(b, sizeof(b), NULL, NULL), KW_E_FORMAT);
	CU_ASSERT_EQUAL(p11_blob_info(NULL, 0, NULL, NULL), KW_E_FORMAT);
	p11_close(NULL);
}

/* ---- recovery ------------------------------------------------------------ */

static void
test_recovery(void)
{
	static const char *const faults[] = {
		"C_EncryptInit:1:CKR_DEVICE_REMOVED",
		"C_DecryptInit:1:CKR_USER_NOT_LOGGED_IN",
		"C_GetSessionInfo:1:CKR_SESSION_HANDLE_INVALID",
		"C_SignInit:1:CKR_SESSION_CLOSED",
		"C_GenerateRandom:1:CKR_DEVICE_ERROR",
		"C_FindObjectsInit:1:CKR_TOKEN_NOT_PRESENT",
		"C_GetSessionInfo:1:CKR_USER_NOT_LOGGED_IN",
		/* a cached key handle gone stale (its session copy went
		 * with a session the token dropped): found again */
		"C_DecryptInit:1:0x60",     /* CKR_KEY_HANDLE_INVALID */
		"C_EncryptInit:1:0x82",     /* CKR_OBJECT_HANDLE_INVALID */
	};
	p11_ctx *c = NULL;
	uint8_t dek[32], blob[P11_WRAPPED_MAX], out[P11_DEK_MAX], mac[32];
	size_t blen, olen, i;
	int r;

	memset(dek, 0x5a, sizeof(dek));
	CU_ASSERT_EQUAL_FATAL(open_with(shim, LABEL, P11_WRAP_AUTO, &c), 0);
	CU_ASSERT_EQUAL_FATAL(p11_mkey_create(c, "rec", 1, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(p11_audit_key_ensure(c), 0);
	for (i = 0; i < sizeof(faults) / sizeof(faults[0]); i++) {
		setenv("KW_SHIM_FAIL", faults[i], 1);
		r = p11_wrap(c, "rec", 1, dek, sizeof(dek), "a", 1, blob, &blen);
		if (r == 0)
			r = p11_unwrap(c, "rec", blob, blen, "a", 1, out, &olen);
		if (r == 0 && (olen != 32 || memcmp(out, dek, 32) != 0))
			r = KW_E_INTERNAL;
		if (r == 0)
			r = p11_ping(c);
		if (r == 0)
			r = p11_audit_hmac(c, "x", 1, mac);
		if (r == 0)
			r = p11_random(c, out, 16);
		if (r == 0) {
			/* a listing after the fault: whole, not empty */
			struct p11_mkey *ks = NULL;
			size_t nk = 0;
			r = p11_mkey_list(c, "rec", &ks, &nk);
			if (r == 0 && nk != 1)
				r = KW_E_INTERNAL;
			free(ks);
		}
		if (r != 0)
			fprintf(stderr, "\n  %s: %s\n", faults[i], kw_errdetail(r));
		CU_ASSERT_EQUAL(r, 0);
		unsetenv("KW_SHIM_FAIL");
	}
	/* Two failures in a row: the one retry fails, the next call works. */
	setenv("KW_SHIM_FAIL", "C_EncryptInit:2:CKR_DEVICE_REMOVED", 1);
	r = p11_wrap(c, "rec", 1, dek, sizeof(dek), NULL, 0, blob, &blen);
	CU_ASSERT_EQUAL(r, KW_E_TOKEN);
	CU_ASSERT(contains(kw_errdetail(r), "C_EncryptInit"));
	CU_ASSERT(contains(kw_errdetail(r), "CKR_DEVICE_REMOVED"));
	r = p11_wrap(c, "rec", 1, dek, sizeof(dek), NULL, 0, blob, &blen);
	CU_ASSERT_EQUAL(r, 0);
	CU_ASSERT_EQUAL(p11_unwrap(c, "rec", blob, blen, NULL, 0, out, &olen), 0);
	CU_ASSERT(olen == 32 && memcmp(out, dek, 32) == 0);
	unsetenv("KW_SHIM_FAIL");
	/* A failure that no reopen cures is not retried. */
	setenv("KW_SHIM_FAIL", "C_EncryptInit:1:CKR_GENERAL_ERROR", 1);
	r = p11_wrap(c, "rec", 1, dek, sizeof(dek), NULL, 0, blob, &blen);
	CU_ASSERT_EQUAL(r, KW_E_P11);
	CU_ASSERT(contains(kw_errdetail(r), "CKR_GENERAL_ERROR"));
	unsetenv("KW_SHIM_FAIL");
	CU_ASSERT_EQUAL(p11_mkey_destroy(c, "rec", 1), 0);
	p11_close(c);
}

/* A C_Decrypt (AES-GCM) or C_UnwrapKey (AES-KWP) that fails with
 * CKR_GENERAL_ERROR or CKR_FUNCTION_FAILED, which is how SoftHSM answers a
 * blob that does not authenticate and how any token answers when it fails,
 * is a token fault when the token does not open a canary of its own under
 * the same key either: KW_E_P11 (503, retried by a rotation), never
 * KW_E_AUTH (an integrity alarm, a record a rotation leaves behind).  A
 * changed blob on a working token stays KW_E_AUTH. */
static void
test_fault_not_tampering(void)
{
	static const struct {
		enum p11_wrap_mech mech;
		const char *vault, *general, *failed, *once, *once2;
	} cases[] = {
		{ P11_WRAP_AES_GCM, "amb-gcm", "C_Decrypt:100000:CKR_GENERAL_ERROR",
		    "C_Decrypt:100000:CKR_FUNCTION_FAILED",
		    "C_Decrypt:1:CKR_GENERAL_ERROR", "C_Decrypt:1:CKR_FUNCTION_FAILED" },
		{ P11_WRAP_AES_KWP, "amb-kwp", "C_UnwrapKey:100000:CKR_GENERAL_ERROR",
		    "C_UnwrapKey:100000:CKR_FUNCTION_FAILED",
		    "C_UnwrapKey:1:CKR_FUNCTION_FAILED",
		    "C_UnwrapKey:1:CKR_GENERAL_ERROR" },
	};
	uint8_t dek[32], blob[P11_WRAPPED_MAX], bad[P11_WRAPPED_MAX];
	uint8_t *out = kw_secalloc(P11_DEK_MAX);
	size_t blen, olen, i;
	p11_ctx *c;
	int r;

	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	memset(dek, 0x3c, sizeof(dek));
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		c = NULL;
		CU_ASSERT_EQUAL_FATAL(open_with(shim, LABEL, cases[i].mech, &c), 0);
		CU_ASSERT_EQUAL_FATAL(p11_mkey_create(c, cases[i].vault, 1, NULL), 0);
		CU_ASSERT_EQUAL_FATAL(p11_wrap(c, cases[i].vault, 1, dek, sizeof(dek),
		    "a", 1, blob, &blen), 0);
		memcpy(bad, blob, blen);
		bad[blen - 1] ^= 0x01;          /* the tag, or the last block */

		/* The token fails every decryption: first before any canary
		 * was kept (it is made now and does not open), then with one
		 * kept (the good blob below made it). */
		setenv("KW_SHIM_FAIL", cases[i].general, 1);
		r = p11_unwrap(c, cases[i].vault, blob, blen, "a", 1, out, &olen);
		CU_ASSERT_EQUAL(r, KW_E_P11);
		CU_ASSERT(contains(kw_errdetail(r), "CKR_GENERAL_ERROR"));
		CU_ASSERT(contains(kw_errdetail(r), "the token is at fault"));
		r = p11_unwrap(c, cases[i].vault, bad, blen, "a", 1, out, &olen);
		CU_ASSERT_EQUAL(r, KW_E_P11);
		unsetenv("KW_SHIM_FAIL");

		/* A working token: the changed blob is tampering, the good one
		 * opens. */
		r = p11_unwrap(c, cases[i].vault, bad, blen, "a", 1, out, &olen);
		CU_ASSERT_EQUAL(r, KW_E_AUTH);
		CU_ASSERT(contains(kw_errdetail(r), "does not authenticate"));
		r = p11_unwrap(c, cases[i].vault, blob, blen, "a", 1, out, &olen);
		CU_ASSERT_EQUAL(r, 0);
		CU_ASSERT(olen == sizeof(dek) && memcmp(out, dek, sizeof(dek)) == 0);

		setenv("KW_SHIM_FAIL", cases[i].failed, 1);
		r = p11_unwrap(c, cases[i].vault, blob, blen, "a", 1, out, &olen);
		CU_ASSERT_EQUAL(r, KW_E_P11);
		CU_ASSERT(contains(kw_errdetail(r), "CKR_FUNCTION_FAILED"));
		setenv("KW_SHIM_FAIL", cases[i].general, 1);
		r = p11_unwrap(c, cases[i].vault, bad, blen, "a", 1, out, &olen);
		CU_ASSERT_EQUAL(r, KW_E_P11);
		unsetenv("KW_SHIM_FAIL");

		CU_ASSERT_EQUAL(p11_unwrap(c, cases[i].vault, bad, blen, "a", 1, out,
		    &olen), KW_E_AUTH);
		CU_ASSERT_EQUAL(p11_unwrap(c, cases[i].vault, blob, blen, "a", 1, out,
		    &olen), 0);

		/* A fault that clears before the canary's turn: the good blob
		 * fails once, the canary opens, and the blob's second try
		 * opens too.  Before, that read as tampering.  A changed blob
		 * under the same one-call fault still is. */
		setenv("KW_SHIM_FAIL", cases[i].once, 1);
		memset(out, 0, P11_DEK_MAX);
		r = p11_unwrap(c, cases[i].vault, blob, blen, "a", 1, out, &olen);
		CU_ASSERT_EQUAL(r, 0);
		CU_ASSERT(olen == sizeof(dek) && memcmp(out, dek, sizeof(dek)) == 0);
		unsetenv("KW_SHIM_FAIL");
		setenv("KW_SHIM_FAIL", cases[i].once2, 1);
		r = p11_unwrap(c, cases[i].vault, bad, blen, "a", 1, out, &olen);
		CU_ASSERT_EQUAL(r, KW_E_AUTH);
		CU_ASSERT(contains(kw_errdetail(r), "does not authenticate"));
		unsetenv("KW_SHIM_FAIL");
		CU_ASSERT_EQUAL(p11_mkey_destroy(c, cases[i].vault, 1), 0);
		p11_close(c);
	}
	kw_secfree(out);
}

/* A reopen whose login the token refuses is not tried again with the same
 * PIN file: each refusal counts towards locking the PIN.  It is tried again
 * once the file changes. */
static void
test_refused_pin_not_retried(void)
{
	char path[400], good[64];
	p11_ctx *c = NULL;
	struct p11_options o;
	uint8_t out[16];
	FILE *f;
	size_t n;
	int r;

	snprintf(path, sizeof(path), "%s/changing-pin", tok.dir);
	CU_ASSERT_FATAL((f = fopen(tok.pin_file, "r")) != NULL);
	n = fread(good, 1, sizeof(good) - 1, f);
	fclose(f);
	good[n] = '\0';
	CU_ASSERT_FATAL(kwt_write_file(path, good, 0600) == 0);
	opts(&o, shim, LABEL, P11_WRAP_AUTO);
	o.pin_file = path;
	CU_ASSERT_EQUAL_FATAL(p11_open(&o, &c), 0);
	CU_ASSERT_FATAL(kwt_write_file(path, "99999999\n", 0600) == 0);
	/* the device drops out: the reopen's login is refused */
	setenv("KW_SHIM_FAIL", "C_GenerateRandom:1:CKR_DEVICE_REMOVED", 1);
	r = p11_random(c, out, sizeof(out));
	unsetenv("KW_SHIM_FAIL");
	CU_ASSERT_EQUAL(r, KW_E_PIN);
	CU_ASSERT(contains(kw_errdetail(r), "CKR_PIN_INCORRECT"));
	/* the next calls do not offer the same PIN again */
	for (int i = 0; i < 3; i++) {
		r = p11_ping(c);       /* needs the login */
		CU_ASSERT_EQUAL(r, KW_E_PIN);
		CU_ASSERT(contains(kw_errdetail(r), "not tried again until the file changes"));
	}
	/* the operator puts the right PIN back: it is tried, and works */
	usleep(20 * 1000);
	CU_ASSERT_FATAL(kwt_write_file(path, good, 0600) == 0);
	CU_ASSERT_EQUAL(p11_ping(c), 0);
	p11_close(c);
}

/* ---- keys ---------------------------------------------------------------- */

static int
keys_init(void)
{
	if (open_with(tok.module, LABEL, P11_WRAP_AUTO, &ctx) != 0) {
		fprintf(stderr, "p11_open: %s\n", kw_errdetail(KW_E_P11));
		return -1;
	}
	return 0;
}

static int
keys_clean(void)
{
	p11_close(ctx);
	ctx = NULL;
	return 0;
}

static void
test_random(void)
{
	uint8_t a[32], b[32], z[32];

	memset(z, 0, sizeof(z));
	CU_ASSERT_EQUAL(p11_random(ctx, a, sizeof(a)), 0);
	CU_ASSERT_EQUAL(p11_random(ctx, b, sizeof(b)), 0);
	CU_ASSERT(memcmp(a, b, 32) != 0);
	CU_ASSERT(memcmp(a, z, 32) != 0);
	CU_ASSERT_EQUAL(p11_random(ctx, a, 0), 0);
}

static void
test_mkey_sensitive(void)
{
	struct p11_mkey mk;
	char cmd[1200], out[65536];
	char *argv[16];
	uint8_t zero[P11_ID_LEN];
	int sens = 0, extr = 1, st;
	const char *tool = kwt_require("PKCS11_TOOL");
	const char *pin_env[] = { "KWT_PIN", KWT_USER_PIN, NULL };

	CU_ASSERT_EQUAL_FATAL(p11_mkey_create(ctx, "sens", 1, &mk), 0);
	CU_ASSERT_EQUAL(mk.version, 1);
	CU_ASSERT_STRING_EQUAL(mk.label, "keywarden/sens/v1");
	memset(zero, 0, sizeof(zero));
	CU_ASSERT(memcmp(mk.id, zero, P11_ID_LEN) != 0);
	CU_ASSERT_EQUAL(p11_mkey_create(ctx, "sens", 1, &mk), KW_E_KEY_EXISTS);
	CU_ASSERT(contains(kw_errdetail(KW_E_KEY_EXISTS), "keywarden/sens/v1"));
	CU_ASSERT_EQUAL(p11_mkey_create(ctx, "bad/name", 1, &mk), -EINVAL);
	CU_ASSERT_EQUAL(p11_mkey_create(ctx, "sens", 0, &mk), -EINVAL);

	CU_ASSERT_EQUAL(p11_test_read_value(ctx, "keywarden/sens/v1", &sens,
	    &extr), CKR_ATTRIBUTE_SENSITIVE);
	CU_ASSERT_EQUAL(sens, 1);
	CU_ASSERT_EQUAL(extr, 0);
	sens = 0;
	extr = 1;
	CU_ASSERT_EQUAL(p11_test_read_value(ctx, "keywarden/sens/v1/mac", &sens,
	    &extr), CKR_ATTRIBUTE_SENSITIVE);
	CU_ASSERT_EQUAL(sens, 1);
	CU_ASSERT_EQUAL(extr, 0);

	/* OpenSC's pkcs11-tool, another process, agrees. */
	argv[0] = (char *)tool;
	argv[1] = "--module";
	argv[2] = tok.module;
	argv[3] = "--token-label";
	argv[4] = LABEL;
	argv[5] = "--login";
	argv[6] = "--pin";
	argv[7] = "env:KWT_PIN";   /* never the PIN itself on a command line */
	argv[8] = "--list-objects";
	argv[9] = "--type";
	argv[10] = "secrkey";
	argv[11] = NULL;
	st = kwt_run_env(argv, pin_env, out, sizeof(out));
	CU_ASSERT_EQUAL(st, 0);
	{
		const char *p = strstr(out, "label:      keywarden/sens/v1\n");
		const char *acc = p != NULL ? strstr(p, "Access:") : NULL;
		const char *eol = acc != NULL ? strchr(acc, '\n') : NULL;

		CU_ASSERT_PTR_NOT_NULL(p);
		CU_ASSERT_PTR_NOT_NULL(acc);
		if (acc != NULL && eol != NULL) {
			snprintf(cmd, sizeof(cmd), "%.*s", (int)(eol - acc), acc);
			CU_ASSERT(contains(cmd, "sensitive"));
			CU_ASSERT(contains(cmd, "never extractable"));
		}
		CU_ASSERT(strstr(out, "AES length 32") != NULL);
	}
}

static const enum p11_wrap_mech all_mechs[] = {
	P11_WRAP_AES_GCM, P11_WRAP_AES_KWP, P11_WRAP_ECB_HMAC,
};

/* Blobs made under each mechanism, unwrapped later by ctx (GCM). */
static uint8_t saved[3][P11_WRAPPED_MAX];
static size_t savedlen[3];

static int
bad_ok(int r)
{
	return r == KW_E_AUTH || r == KW_E_KEY_NOT_FOUND || r == KW_E_FORMAT;
}

/* Round trips and tampering for mechanism m with context c. */
static void
wrap_checks(p11_ctx *c, enum p11_wrap_mech m, const char *vault, int idx)
{
	static const size_t sizes[] = { 1, 16, 31, 32, 33, 64 };
	uint8_t dek[P11_DEK_MAX], blob[P11_WRAPPED_MAX], bad[P11_WRAPPED_MAX];
	uint8_t *out, bigaad[2000];
	size_t blen, olen, i, pos;
	unsigned ver;
	enum p11_wrap_mech bm;
	int r, nbad = 0;
	const char *aad = "prod/db-password/3";

	out = kw_secalloc(P11_DEK_MAX);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	CU_ASSERT_EQUAL_FATAL(p11_mkey_create(c, vault, 1, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(p11_mkey_create(c, vault, 2, NULL), 0);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		CU_ASSERT_EQUAL(p11_random(c, dek, sizes[i]), 0);
		r = p11_wrap(c, vault, 2, dek, sizes[i], aad, strlen(aad), blob,
		    &blen);
		CU_ASSERT_EQUAL_FATAL(r, 0);
		CU_ASSERT(blen <= P11_WRAPPED_MAX);
		CU_ASSERT_EQUAL(p11_blob_info(blob, blen, &ver, &bm), 0);
		CU_ASSERT_EQUAL(ver, 2);
		CU_ASSERT_EQUAL(bm, m);
		r = p11_unwrap(c, vault, blob, blen, aad, strlen(aad), out, &olen);
		if (r != 0)
			fprintf(stderr, "\n  %s, %zu bytes: %s\n",
			    p11_wrap_mech_name(m), sizes[i], kw_errdetail(r));
		CU_ASSERT_EQUAL(r, 0);
		CU_ASSERT_EQUAL(olen, sizes[i]);
		CU_ASSERT(memcmp(out, dek, sizes[i]) == 0);
	}
	/* a long AAD, and none */
	memset(bigaad, 'A', sizeof(bigaad));
	CU_ASSERT_EQUAL(p11_wrap(c, vault, 1, dek, 32, bigaad, sizeof(bigaad),
	    blob, &blen), 0);
	CU_ASSERT_EQUAL(p11_unwrap(c, vault, blob, blen, bigaad, sizeof(bigaad),
	    out, &olen), 0);
	bigaad[1999] = 'B';
	CU_ASSERT_EQUAL(p11_unwrap(c, vault, blob, blen, bigaad, sizeof(bigaad),
	    out, &olen), KW_E_AUTH);
	CU_ASSERT_EQUAL(p11_wrap(c, vault, 1, dek, 32, NULL, 0, blob, &blen), 0);
	CU_ASSERT_EQUAL(p11_unwrap(c, vault, blob, blen, NULL, 0, out, &olen), 0);
	CU_ASSERT_EQUAL(p11_unwrap(c, vault, blob, blen, "x", 1, out, &olen),
	    KW_E_AUTH);

	/* One key wrapped 300 times: each blob new, so no IV or nonce twice
	 * (GCM and the CTR mode take theirs from a pool of the token's random
	 * bytes, refilled every few dozen wraps), and each unwraps.  AES-KWP
	 * is deterministic and has none. */
	if (m != P11_WRAP_AES_KWP) {
		enum { N = 300 };
		uint8_t (*many)[P11_WRAPPED_MAX] = calloc(N, P11_WRAPPED_MAX);
		size_t mlen = 0, k, j;
		int same = 0, bad_unwrap = 0;

		CU_ASSERT_PTR_NOT_NULL_FATAL(many);
		for (k = 0; k < N; k++) {
			CU_ASSERT_EQUAL_FATAL(p11_wrap(c, vault, 1, dek, 32, aad, strlen(aad),
			    many[k], &mlen), 0);
			if (p11_unwrap(c, vault, many[k], mlen, aad, strlen(aad), out, &olen) != 0 ||
			    olen != 32 || memcmp(out, dek, 32) != 0)
				bad_unwrap++;
		}
		for (k = 0; k < N; k++)
			for (j = k + 1; j < N; j++)
				same += memcmp(many[k], many[j], mlen) == 0;
		CU_ASSERT_EQUAL(same, 0);
		CU_ASSERT_EQUAL(bad_unwrap, 0);
		free(many);
	}

	/* the blob kept for later: 32 bytes under v1 with aad */
	CU_ASSERT_EQUAL(p11_wrap(c, vault, 1, dek, 32, aad, strlen(aad), blob,
	    &blen), 0);
	memcpy(saved[idx], blob, blen);
	savedlen[idx] = blen;

	/* changed AAD */
	r = p11_unwrap(c, vault, blob, blen, "prod/db-password/4", 18, out, &olen);
	CU_ASSERT_EQUAL(r, KW_E_AUTH);
	/* every byte position changed */
	for (pos = 0; pos < blen; pos++) {
		memcpy(bad, blob, blen);
		bad[pos] ^= 0x01;
		r = p11_unwrap(c, vault, bad, blen, aad, strlen(aad), out, &olen);
		if (!bad_ok(r)) {
			fprintf(stderr, "\n  %s byte %zu: %d %s\n",
			    p11_wrap_mech_name(m), pos, r, kw_errdetail(r));
			nbad++;
		}
	}
	CU_ASSERT_EQUAL(nbad, 0);
	/* truncated and extended */
	CU_ASSERT_EQUAL(p11_unwrap(c, vault, blob, blen - 1, aad, strlen(aad),
	    out, &olen), KW_E_FORMAT);
	CU_ASSERT_EQUAL(p11_unwrap(c, vault, blob, 3, aad, strlen(aad), out,
	    &olen), KW_E_FORMAT);
	/* another version: v2 exists but is another key */
	memcpy(bad, blob, blen);
	bad[5] = 2;
	CU_ASSERT_EQUAL(p11_unwrap(c, vault, bad, blen, aad, strlen(aad), out,
	    &olen), KW_E_AUTH);
	bad[5] = 9;
	CU_ASSERT_EQUAL(p11_unwrap(c, vault, bad, blen, aad, strlen(aad), out,
	    &olen), KW_E_KEY_NOT_FOUND);
	CU_ASSERT(contains(kw_errdetail(KW_E_KEY_NOT_FOUND), "v9"));
	/* another vault: absent, and present with its own v1 */
	CU_ASSERT_EQUAL(p11_unwrap(c, "novault", blob, blen, aad, strlen(aad),
	    out, &olen), KW_E_KEY_NOT_FOUND);
	CU_ASSERT_EQUAL(p11_unwrap(c, "sens", blob, blen, aad, strlen(aad), out,
	    &olen), KW_E_AUTH);
	/* wrapping under a version that does not exist */
	CU_ASSERT_EQUAL(p11_wrap(c, vault, 7, dek, 32, NULL, 0, blob, &blen),
	    KW_E_KEY_NOT_FOUND);
	CU_ASSERT_EQUAL(p11_wrap(c, vault, 1, dek, 0, NULL, 0, blob, &blen),
	    -EINVAL);
	CU_ASSERT_EQUAL(p11_wrap(c, vault, 1, dek, P11_DEK_MAX + 1, NULL, 0,
	    blob, &blen), -EINVAL);
	kw_wipe(dek, sizeof(dek));
	kw_secfree(out);
}

static void
test_wrap_every_mechanism(void)
{
	char vault[16];
	struct p11_token_info ti;
	p11_ctx *c;
	size_t i;

	for (i = 0; i < 3; i++) {
		c = NULL;
		CU_ASSERT_EQUAL_FATAL(open_with(tok.module, LABEL, all_mechs[i],
		    &c), 0);
		CU_ASSERT_EQUAL(p11_token_info(c, &ti), 0);
		CU_ASSERT_EQUAL(ti.wrap, all_mechs[i]);
		snprintf(vault, sizeof(vault), "w%d", (int)all_mechs[i]);
		wrap_checks(c, all_mechs[i], vault, (int)i);
		p11_close(c);
	}
}

/* Blobs of every mechanism still unwrap when the context prefers GCM. */
static void
test_old_mechanism_unwraps(void)
{
	uint8_t *out = kw_secalloc(P11_DEK_MAX);
	char vault[16];
	const char *aad = "prod/db-password/3";
	size_t i, olen;
	enum p11_wrap_mech bm;
	int r;

	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	for (i = 0; i < 3; i++) {
		CU_ASSERT_FATAL(savedlen[i] > 0);
		CU_ASSERT_EQUAL(p11_blob_info(saved[i], savedlen[i], NULL, &bm), 0);
		CU_ASSERT_EQUAL(bm, all_mechs[i]);
		snprintf(vault, sizeof(vault), "w%d", (int)all_mechs[i]);
		r = p11_unwrap(ctx, vault, saved[i], savedlen[i], aad, strlen(aad),
		    out, &olen);
		if (r != 0)
			fprintf(stderr, "\n  %s: %s\n", vault, kw_errdetail(r));
		CU_ASSERT_EQUAL(r, 0);
		CU_ASSERT_EQUAL(olen, 32);
	}
	kw_secfree(out);
}

#define NTHREADS 8
#define NITER 150

struct th {
	pthread_t t;
	int n;
	int fails;
};

static void *
thread_main(void *arg)
{
	struct th *t = arg;
	uint8_t dek[32], blob[P11_WRAPPED_MAX], out[P11_DEK_MAX];
	char aad[32];
	size_t blen, olen;
	int i;

	for (i = 0; i < NITER; i++) {
		snprintf(aad, sizeof(aad), "t%d/%d", t->n, i);
		memset(dek, t->n + i, sizeof(dek));
		if (p11_wrap(ctx, "thr", 1, dek, 32, aad, strlen(aad), blob,
		    &blen) != 0 ||
		    p11_unwrap(ctx, "thr", blob, blen, aad, strlen(aad), out,
		    &olen) != 0 || olen != 32 || memcmp(out, dek, 32) != 0) {
			fprintf(stderr, "thread %d, round %d: %s\n", t->n, i, kw_errdetail(KW_E_P11));
			t->fails++;
		}
		if (i % 50 == 0 && p11_audit_key_ensure(ctx) != 0) {
			fprintf(stderr, "thread %d, audit key: %s\n", t->n, kw_errdetail(KW_E_P11));
			t->fails++;
		}
	}
	kw_wipe(out, sizeof(out));
	return NULL;
}

static void
test_threads(void)
{
	struct th t[NTHREADS];
	int i, fails = 0;

	CU_ASSERT_EQUAL_FATAL(p11_mkey_create(ctx, "thr", 1, NULL), 0);
	for (i = 0; i < NTHREADS; i++) {
		t[i].n = i;
		t[i].fails = 0;
		CU_ASSERT_FATAL(pthread_create(&t[i].t, NULL, thread_main,
		    &t[i]) == 0);
	}
	for (i = 0; i < NTHREADS; i++) {
		pthread_join(t[i].t, NULL);
		fails += t[i].fails;
	}
	CU_ASSERT_EQUAL(fails, 0);
}

/* A device removal while eight threads work: one thread sees it, the pool
 * drains and reopens, every call still succeeds. */
static void
test_threads_recovery(void)
{
	struct th t[NTHREADS];
	p11_ctx *keep = ctx;
	int i, fails = 0;

	ctx = NULL;
	CU_ASSERT_EQUAL_FATAL(open_with(shim, LABEL, P11_WRAP_AUTO, &ctx), 0);
	setenv("KW_SHIM_FAIL", "C_DecryptInit:1:CKR_DEVICE_REMOVED", 1);
	for (i = 0; i < NTHREADS; i++) {
		t[i].n = i;
		t[i].fails = 0;
		CU_ASSERT_FATAL(pthread_create(&t[i].t, NULL, thread_main,
		    &t[i]) == 0);
	}
	for (i = 0; i < NTHREADS; i++) {
		pthread_join(t[i].t, NULL);
		fails += t[i].fails;
	}
	unsetenv("KW_SHIM_FAIL");
	CU_ASSERT_EQUAL(fails, 0);
	p11_close(ctx);
	ctx = keep;
}

/* Eight threads meet each new key version at once: all miss the cache,
 * search and copy together, and list the versions meanwhile.  A token may
 * show a copy under construction to a concurrent search (SoftHSM does);
 * the layer serializes that, so no search sees two objects and no list
 * shows a version twice. */
#define RACE_VERSIONS 20

struct race {
	pthread_t t;
	unsigned version;
	int fails;
	pthread_barrier_t *go;
};

static void *
race_main(void *arg)
{
	struct race *a = arg;
	uint8_t dek[32], blob[P11_WRAPPED_MAX], out[P11_DEK_MAX];
	struct p11_mkey *v = NULL;
	size_t n = 0, blen, olen;

	memset(dek, (int)a->version, sizeof(dek));
	pthread_barrier_wait(a->go);
	if (p11_wrap(ctx, "race", a->version, dek, 32, "r", 1, blob, &blen) != 0 ||
	    p11_unwrap(ctx, "race", blob, blen, "r", 1, out, &olen) != 0 ||
	    olen != 32 || memcmp(out, dek, 32) != 0) {
		fprintf(stderr, "\n  v%u: %s\n", a->version, kw_errdetail(KW_E_P11));
		a->fails++;
	}
	if (p11_mkey_list(ctx, "race", &v, &n) != 0 || n != a->version) {
		fprintf(stderr, "\n  v%u: listed %zu versions\n", a->version, n);
		a->fails++;
	}
	free(v);
	kw_wipe(out, sizeof(out));
	return NULL;
}

static void
test_copies_race(void)
{
	struct race t[NTHREADS];
	pthread_barrier_t go;
	int fails = 0;

	for (unsigned v = 1; v <= RACE_VERSIONS; v++) {
		CU_ASSERT_EQUAL_FATAL(p11_mkey_create(ctx, "race", v, NULL), 0);
		pthread_barrier_init(&go, NULL, NTHREADS);
		for (int i = 0; i < NTHREADS; i++) {
			t[i].version = v;
			t[i].fails = 0;
			t[i].go = &go;
			CU_ASSERT_FATAL(pthread_create(&t[i].t, NULL, race_main, &t[i]) == 0);
		}
		for (int i = 0; i < NTHREADS; i++) {
			pthread_join(t[i].t, NULL);
			fails += t[i].fails;
		}
		pthread_barrier_destroy(&go);
	}
	CU_ASSERT_EQUAL(fails, 0);
}

static void
test_list_destroy(void)
{
	struct p11_mkey *v = NULL;
	uint8_t dek[32], blob[P11_WRAPPED_MAX];
	size_t n = 99, blen;
	unsigned i;

	for (i = 1; i <= 3; i++)
		CU_ASSERT_EQUAL_FATAL(p11_mkey_create(ctx, "ld", i, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(p11_mkey_create(ctx, "l", 1, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(p11_mkey_create(ctx, "ld", 10, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(p11_mkey_list(ctx, "ld", &v, &n), 0);
	CU_ASSERT_EQUAL_FATAL(n, 4);
	CU_ASSERT_EQUAL(v[0].version, 1);
	CU_ASSERT_EQUAL(v[1].version, 2);
	CU_ASSERT_EQUAL(v[2].version, 3);
	CU_ASSERT_EQUAL(v[3].version, 10);
	CU_ASSERT_STRING_EQUAL(v[3].label, "keywarden/ld/v10");
	CU_ASSERT(memcmp(v[0].id, v[1].id, P11_ID_LEN) != 0);
	free(v);
	v = NULL;

	memset(dek, 7, sizeof(dek));
	CU_ASSERT_EQUAL(p11_wrap(ctx, "ld", 2, dek, 32, NULL, 0, blob, &blen), 0);
	CU_ASSERT_EQUAL(p11_mkey_destroy(ctx, "ld", 2), 0);
	CU_ASSERT_EQUAL(p11_mkey_destroy(ctx, "ld", 2), KW_E_KEY_NOT_FOUND);
	CU_ASSERT(contains(kw_errdetail(KW_E_KEY_NOT_FOUND), "v2"));
	/* the cached handle went with it */
	CU_ASSERT_EQUAL(p11_wrap(ctx, "ld", 2, dek, 32, NULL, 0, blob, &blen),
	    KW_E_KEY_NOT_FOUND);
	CU_ASSERT_EQUAL_FATAL(p11_mkey_list(ctx, "ld", &v, &n), 0);
	CU_ASSERT_EQUAL_FATAL(n, 3);
	CU_ASSERT_EQUAL(v[0].version, 1);
	CU_ASSERT_EQUAL(v[1].version, 3);
	free(v);
	v = NULL;
	CU_ASSERT_EQUAL_FATAL(p11_mkey_list(ctx, "empty", &v, &n), 0);
	CU_ASSERT_EQUAL(n, 0);
	free(v);
	/* recreate a destroyed version */
	CU_ASSERT_EQUAL(p11_mkey_create(ctx, "ld", 2, NULL), 0);
	CU_ASSERT_EQUAL(p11_wrap(ctx, "ld", 2, dek, 32, NULL, 0, blob, &blen), 0);
}

/* Keys are used through session copies: one per key, as sensitive and
 * unextractable as the token object, gone with the key; a context without
 * copies uses the same keys and makes them non-modifiable. */
static void
test_session_copies(void)
{
	struct p11_options o;
	struct p11_token_info ti;
	struct p11_test_obj to, so;
	p11_ctx *plain = NULL;
	uint8_t dek[32], out[P11_DEK_MAX], blob[P11_WRAPPED_MAX];
	size_t blen, olen;
	int i;

	CU_ASSERT_EQUAL_FATAL(p11_token_info(ctx, &ti), 0);
	/* SoftHSM copies only modifiable keys. */
	CU_ASSERT_EQUAL(ti.session_copies, 1);
	CU_ASSERT_EQUAL(ti.keys_modifiable, 1);

	CU_ASSERT_EQUAL_FATAL(p11_mkey_create(ctx, "sc", 1, NULL), 0);
	CU_ASSERT_EQUAL(p11_test_objects(ctx, "keywarden/sc/v1", 0, &so), 0);
	CU_ASSERT_EQUAL(so.count, 0);            /* no copy before first use */
	memset(dek, 0x5c, sizeof(dek));
	for (i = 0; i < 3; i++) {
		CU_ASSERT_EQUAL(p11_wrap(ctx, "sc", 1, dek, 32, "a", 1, blob, &blen), 0);
		CU_ASSERT_EQUAL(p11_unwrap(ctx, "sc", blob, blen, "a", 1, out, &olen), 0);
		CU_ASSERT(olen == 32 && memcmp(out, dek, 32) == 0);
	}
	CU_ASSERT_EQUAL(p11_test_objects(ctx, "keywarden/sc/v1", 1, &to), 0);
	CU_ASSERT_EQUAL(to.count, 1);
	CU_ASSERT_EQUAL(to.sensitive, 1);
	CU_ASSERT_EQUAL(to.extractable, 0);
	CU_ASSERT_EQUAL(p11_test_objects(ctx, "keywarden/sc/v1", 0, &so), 0);
	CU_ASSERT_EQUAL(so.count, 1);            /* one copy, however many uses */
	CU_ASSERT_EQUAL(so.sensitive, 1);
	CU_ASSERT_EQUAL(so.extractable, 0);
	CU_ASSERT_EQUAL(so.never_extractable, 1);

	/* The same key without copies: what one wraps the other unwraps. */
	opts(&o, tok.module, LABEL, P11_WRAP_AUTO);
	o.no_session_copies = 1;
	CU_ASSERT_EQUAL_FATAL(p11_open(&o, &plain), 0);
	CU_ASSERT_EQUAL(p11_token_info(plain, &ti), 0);
	CU_ASSERT_EQUAL(ti.session_copies, 0);
	CU_ASSERT_EQUAL(ti.keys_modifiable, 0);
	CU_ASSERT_EQUAL(p11_unwrap(plain, "sc", blob, blen, "a", 1, out, &olen), 0);
	CU_ASSERT(olen == 32 && memcmp(out, dek, 32) == 0);
	CU_ASSERT_EQUAL(p11_mkey_create(plain, "sc2", 1, NULL), 0);
	CU_ASSERT_EQUAL(p11_test_objects(plain, "keywarden/sc2/v1", 1, &to), 0);
	CU_ASSERT_EQUAL(to.count, 1);
	CU_ASSERT_EQUAL(to.modifiable, 0);
	CU_ASSERT_EQUAL(p11_wrap(plain, "sc2", 1, dek, 32, NULL, 0, blob, &blen), 0);
	CU_ASSERT_EQUAL(p11_test_objects(plain, "keywarden/sc2/v1", 0, &so), 0);
	CU_ASSERT_EQUAL(so.count, 0);
	/* A non-modifiable key still works with copies on: through itself. */
	CU_ASSERT_EQUAL(p11_unwrap(ctx, "sc2", blob, blen, NULL, 0, out, &olen), 0);
	CU_ASSERT(olen == 32 && memcmp(out, dek, 32) == 0);
	CU_ASSERT_EQUAL(p11_test_objects(ctx, "keywarden/sc2/v1", 0, &so), 0);
	CU_ASSERT_EQUAL(so.count, 0);
	p11_close(plain);

	/* Destroying the key destroys its copy. */
	CU_ASSERT_EQUAL(p11_mkey_destroy(ctx, "sc", 1), 0);
	CU_ASSERT_EQUAL(p11_test_objects(ctx, "keywarden/sc/v1", 0, &so), 0);
	CU_ASSERT_EQUAL(so.count, 0);
	CU_ASSERT_EQUAL(p11_test_objects(ctx, "keywarden/sc/v1", 1, &to), 0);
	CU_ASSERT_EQUAL(to.count, 0);
	CU_ASSERT_EQUAL(p11_unwrap(ctx, "sc", blob, blen, "a", 1, out, &olen),
	    KW_E_KEY_NOT_FOUND);
	kw_wipe(out, sizeof(out));
}

static void
test_audit_hmac(void)
{
	uint8_t m1[P11_MAC_LEN], m2[P11_MAC_LEN];
	const char *data = "event 1: alice read prod/db";
	int sens = 0, extr = 1;

	CU_ASSERT_EQUAL_FATAL(p11_audit_key_ensure(ctx), 0);
	CU_ASSERT_EQUAL(p11_audit_key_ensure(ctx), 0);
	CU_ASSERT_EQUAL(p11_test_read_value(ctx, "keywarden/audit", &sens, &extr),
	    CKR_ATTRIBUTE_SENSITIVE);
	CU_ASSERT_EQUAL(sens, 1);
	CU_ASSERT_EQUAL(extr, 0);
	CU_ASSERT_EQUAL(p11_audit_hmac(ctx, data, strlen(data), m1), 0);
	CU_ASSERT_EQUAL(p11_audit_hmac(ctx, data, strlen(data), m2), 0);
	CU_ASSERT(memcmp(m1, m2, P11_MAC_LEN) == 0);
	{
		/* The HMAC runs on one session copy of the audit key. */
		struct p11_test_obj so;

		CU_ASSERT_EQUAL(p11_test_objects(ctx, "keywarden/audit", 0, &so), 0);
		CU_ASSERT_EQUAL(so.count, 1);
		CU_ASSERT_EQUAL(so.sensitive, 1);
		CU_ASSERT_EQUAL(so.extractable, 0);
	}
	CU_ASSERT_EQUAL(p11_audit_hmac_verify(ctx, data, strlen(data), m1), 0);
	CU_ASSERT_EQUAL(p11_audit_hmac_verify(ctx, "event 1: alice read prod/dc",
	    strlen(data), m1), KW_E_AUTH);
	m1[31] ^= 0x80;
	CU_ASSERT_EQUAL(p11_audit_hmac_verify(ctx, data, strlen(data), m1),
	    KW_E_AUTH);
	CU_ASSERT(contains(kw_errdetail(KW_E_AUTH), "audit key"));
	CU_ASSERT_EQUAL(p11_audit_hmac(ctx, "", 0, m2), 0);
}

/* Data objects: written whole, one value per label, private. */
static void
test_data_objects(void)
{
	struct p11_data *v = NULL;
	size_t n = 9;
	char big[P11_DATA_MAX + 1];

	CU_ASSERT_EQUAL(p11_data_read(ctx, "kwtest/data", &v, &n), 0);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_PTR_NULL(v);
	CU_ASSERT_EQUAL_FATAL(p11_data_write(ctx, "kwtest/data", "first", 5), 0);
	CU_ASSERT_EQUAL_FATAL(p11_data_read(ctx, "kwtest/data", &v, &n), 0);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_EQUAL(v[0].len, 5);
	CU_ASSERT_STRING_EQUAL((const char *)v[0].value, "first");
	p11_data_free(v, n);
	/* Replaced: the older object is gone. */
	CU_ASSERT_EQUAL_FATAL(p11_data_write(ctx, "kwtest/data", "second value", 12), 0);
	CU_ASSERT_EQUAL_FATAL(p11_data_read(ctx, "kwtest/data", &v, &n), 0);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_STRING_EQUAL((const char *)v[0].value, "second value");
	p11_data_free(v, n);
	/* Another label is another value. */
	CU_ASSERT_EQUAL(p11_data_read(ctx, "kwtest/other", &v, &n), 0);
	CU_ASSERT_EQUAL(n, 0);
	/* Limits. */
	memset(big, 'x', sizeof(big));
	CU_ASSERT_EQUAL(p11_data_write(ctx, "kwtest/data", big, sizeof(big)), -EINVAL);
	CU_ASSERT_EQUAL(p11_data_write(ctx, "kwtest/data", big, 0), -EINVAL);
	CU_ASSERT_EQUAL(p11_data_write(ctx, "", "x", 1), -EINVAL);
	CU_ASSERT_EQUAL(p11_data_write(ctx, "kwtest/data", big, P11_DATA_MAX), 0);
	CU_ASSERT_EQUAL_FATAL(p11_data_read(ctx, "kwtest/data", &v, &n), 0);
	CU_ASSERT_EQUAL(n, 1);
	CU_ASSERT(n == 1 && v[0].len == P11_DATA_MAX);
	p11_data_free(v, n);
}

int
main(void)
{
	static const struct kwt_case error_tests[] = {
		{ "names and blob headers", test_names },
		{ "open by label, serial and URI", test_open_ok_by_label_serial_uri },
		{ "wrong PIN", test_wrong_pin },
		{ "PIN file mode 0644", test_pin_file_mode },
		{ "PIN file reading", test_pin_read },
		{ "PIN file links and directory", test_pin_file_place },
		{ "missing module", test_missing_module },
		{ "absent token", test_absent_token },
		{ "missing mechanisms (shim)", test_missing_mechanisms },
		{ NULL, NULL }
	};
	static const struct kwt_case recovery_tests[] = {
		{ "reopen after injected faults (shim)", test_recovery },
		{ "a token that fails to decrypt is not taken for tampering (shim)",
		    test_fault_not_tampering },
		{ "a refused PIN is not offered again until its file changes (shim)",
		    test_refused_pin_not_retried },
		{ NULL, NULL }
	};
	static const struct kwt_case key_tests[] = {
		{ "token RNG", test_random },
		{ "master keys sensitive, non-extractable", test_mkey_sensitive },
		{ "wrap/unwrap by every mechanism", test_wrap_every_mechanism },
		{ "old mechanisms still unwrap", test_old_mechanism_unwraps },
		{ "eight threads", test_threads },
		{ "eight threads and a device removal (shim)",
		    test_threads_recovery },
		{ "list and destroy versions", test_list_destroy },
		{ "eight threads meet each new version at once", test_copies_race },
		{ "audit HMAC", test_audit_hmac },
		{ "data objects", test_data_objects },
		{ "session copies", test_session_copies },
		{ NULL, NULL }
	};
	static const struct kwt_suite suites[] = {
		{ "p11_errors", NULL, NULL, error_tests },
		{ "p11_recovery", NULL, NULL, recovery_tests },
		{ "p11_keys", keys_init, keys_clean, key_tests },
		{ NULL, NULL, NULL, NULL }
	};
	int r;
	const char *top;

	kwt_require("SOFTHSM2_MODULE");
	kwt_require("SOFTHSM2_UTIL");
	kwt_require("PKCS11_TOOL");
	top = kwt_require("KW_TOP_BUILDDIR");
	snprintf(shim, sizeof(shim), "%s/tests/shim/.libs/libkwshim.so", top);
	if (access(shim, R_OK) != 0) {
		fprintf(stderr, "test_p11: %s missing: build tests/shim\n", shim);
		return 99;
	}
	if (kwt_token_new(&tok, LABEL) != 0)
		return 99;
	setenv("KW_SHIM_MODULE", tok.module, 1);
	r = kwt_cunit_main_suites(suites);
	kwt_token_free(&tok);
	return r;
}
