/*
 * pkcs11/ through p11-kit's remoting: `p11-kit server` serves a throwaway
 * SoftHSM token on a socket in the temporary directory and the layer loads
 * p11-kit's client module.  The remoting carries AES-ECB, AES key
 * generation and HMAC but neither AES-GCM nor AES key wrap, so the layer
 * must choose its ECB+HMAC wrap; the blobs it makes then unwrap with the
 * token loaded directly.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "kw_error.h"
#include "kw_secmem.h"
#include "pkcs11/p11.h"
#include "tests/lib/kwtest.h"
#include "tests/lib/kwt_cunit.h"

#define LABEL "kwremote"

static struct kwt_token tok;
static char sock[400];
static pid_t server = -1;
static const char *client_module;
static uint8_t blob[P11_WRAPPED_MAX];
static size_t bloblen;
static uint8_t dek[32];
static const char *aad = "prod/api-key/1";

static int
server_start(void)
{
	const char *p11kit = kwt_require("P11_KIT");
	const char *softhsm = kwt_require("SOFTHSM2_MODULE");
	char uri[64], addr[420];
	struct stat st;
	int i, fd;

	snprintf(sock, sizeof(sock), "%s/p11kit.sock", tok.dir);
	snprintf(uri, sizeof(uri), "pkcs11:token=%s", LABEL);
	if ((server = fork()) == -1)
		return -1;
	if (server == 0) {
		if ((fd = open("/dev/null", O_WRONLY)) != -1)
			dup2(fd, STDOUT_FILENO);
		execl(p11kit, p11kit, "server", "-f", "-n", sock, "--provider",
		    softhsm, uri, (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 100; i++) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };

		if (stat(sock, &st) == 0 && S_ISSOCK(st.st_mode))
			break;
		nanosleep(&ts, NULL);
	}
	if (i == 100) {
		fprintf(stderr, "p11-kit server made no socket %s\n", sock);
		return -1;
	}
	snprintf(addr, sizeof(addr), "unix:path=%s", sock);
	setenv("P11_KIT_SERVER_ADDRESS", addr, 1);
	return 0;
}

static void
server_stop(void)
{
	int st;

	if (server > 0) {
		kill(server, SIGTERM);
		waitpid(server, &st, 0);
		server = -1;
	}
}

static int
open_with(const char *module, enum p11_wrap_mech wrap, p11_ctx **out)
{
	struct p11_options o;

	memset(&o, 0, sizeof(o));
	o.module = module;
	o.token = LABEL;
	o.pin_file = tok.pin_file;
	o.wrap = wrap;
	return p11_open(&o, out);
}

static void
test_remote_wrap(void)
{
	p11_ctx *c = NULL;
	struct p11_token_info ti;
	uint8_t *out = kw_secalloc(P11_DEK_MAX), bad[P11_WRAPPED_MAX];
	uint8_t mac[P11_MAC_LEN];
	size_t olen, pos;
	int r, nbad = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	r = open_with(client_module, P11_WRAP_AUTO, &c);
	if (r != 0)
		fprintf(stderr, "\n  %s\n", kw_errdetail(r));
	CU_ASSERT_EQUAL_FATAL(r, 0);
	CU_ASSERT_EQUAL(p11_token_info(c, &ti), 0);
	CU_ASSERT_STRING_EQUAL(ti.label, LABEL);
	CU_ASSERT_EQUAL(ti.wrap, P11_WRAP_ECB_HMAC);
	CU_ASSERT_EQUAL(p11_ping(c), 0);

	CU_ASSERT_EQUAL_FATAL(p11_mkey_create(c, "rem", 1, NULL), 0);
	CU_ASSERT_EQUAL(p11_random(c, dek, sizeof(dek)), 0);
	CU_ASSERT_EQUAL_FATAL(p11_wrap(c, "rem", 1, dek, sizeof(dek), aad,
	    strlen(aad), blob, &bloblen), 0);
	CU_ASSERT_EQUAL(p11_unwrap(c, "rem", blob, bloblen, aad, strlen(aad),
	    out, &olen), 0);
	CU_ASSERT(olen == 32 && memcmp(out, dek, 32) == 0);
	CU_ASSERT_EQUAL(p11_unwrap(c, "rem", blob, bloblen, "prod/api-key/2",
	    14, out, &olen), KW_E_AUTH);
	for (pos = 0; pos < bloblen; pos++) {
		memcpy(bad, blob, bloblen);
		bad[pos] ^= 0x40;
		r = p11_unwrap(c, "rem", bad, bloblen, aad, strlen(aad), out, &olen);
		if (r != KW_E_AUTH && r != KW_E_FORMAT && r != KW_E_KEY_NOT_FOUND)
			nbad++;
	}
	CU_ASSERT_EQUAL(nbad, 0);

	CU_ASSERT_EQUAL(p11_audit_key_ensure(c), 0);
	CU_ASSERT_EQUAL(p11_audit_hmac(c, "e", 1, mac), 0);
	CU_ASSERT_EQUAL(p11_audit_hmac_verify(c, "e", 1, mac), 0);
	CU_ASSERT_EQUAL(p11_audit_hmac_verify(c, "f", 1, mac), KW_E_AUTH);
	p11_close(c);
	c = NULL;

	/* Asking the remoting for what it does not carry is refused clearly. */
	r = open_with(client_module, P11_WRAP_AES_GCM, &c);
	CU_ASSERT_EQUAL(r, KW_E_MECHANISM);
	CU_ASSERT(strstr(kw_errdetail(r), "CKM_AES_GCM") != NULL);
	r = open_with(client_module, P11_WRAP_AES_KWP, &c);
	CU_ASSERT_EQUAL(r, KW_E_MECHANISM);
	CU_ASSERT(strstr(kw_errdetail(r), "CKM_AES_KEY_WRAP_PAD") != NULL);
	kw_secfree(out);
}

/* The same token loaded directly (after the server is gone) unwraps the
 * blob made through the remoting, though it prefers AES-GCM. */
static void
test_direct_unwraps_remote_blob(void)
{
	p11_ctx *c = NULL;
	struct p11_token_info ti;
	uint8_t *out = kw_secalloc(P11_DEK_MAX);
	size_t olen;

	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	server_stop();
	CU_ASSERT_FATAL(bloblen > 0);
	CU_ASSERT_EQUAL_FATAL(open_with(tok.module, P11_WRAP_AUTO, &c), 0);
	CU_ASSERT_EQUAL(p11_token_info(c, &ti), 0);
	CU_ASSERT_EQUAL(ti.wrap, P11_WRAP_AES_GCM);
	CU_ASSERT_EQUAL(p11_unwrap(c, "rem", blob, bloblen, aad, strlen(aad),
	    out, &olen), 0);
	CU_ASSERT(olen == 32 && memcmp(out, dek, 32) == 0);
	p11_close(c);
	kw_secfree(out);
}

int
main(void)
{
	static const struct kwt_case cases[] = {
		{ "ECB+HMAC wrap through p11-kit remoting", test_remote_wrap },
		{ "direct token unwraps the remote blob",
		    test_direct_unwraps_remote_blob },
		{ NULL, NULL }
	};
	int r;

	kwt_require("SOFTHSM2_MODULE");
	kwt_require("SOFTHSM2_UTIL");
	kwt_require("P11_KIT");
	client_module = kwt_require("P11KIT_CLIENT_MODULE");
	if (access(client_module, R_OK) != 0) {
		fprintf(stderr, "test_p11_remote: %s missing: install "
		    "p11-kit-modules\n", client_module);
		return 99;
	}
	if (kwt_token_new(&tok, LABEL) != 0)
		return 99;
	if (server_start() != 0) {
		server_stop();
		kwt_token_free(&tok);
		return 99;
	}
	r = kwt_cunit_main("p11_remote", NULL, NULL, cases);
	server_stop();
	kwt_token_free(&tok);
	return r;
}
