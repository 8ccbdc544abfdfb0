/*
 * config.h - keywardend's configuration file (YAML).
 *
 * config_load() reads and validates the whole file and collects every error
 * as "file:line:col: path: message" (people count lines and columns from
 * one).  String values may name environment variables as ${NAME}; an unset
 * one is an error.  Unknown keys are errors.  See keywarden.conf(5).
 */
#ifndef KW_CONFIG_H
#define KW_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CONFIG_VAULT_MAX 64

struct config_vault {
	char name[CONFIG_VAULT_MAX + 1];
	int purge_protection;
	unsigned retention_days;
	unsigned rotation_days;      /* 0: no schedule */
	int line;                    /* where it was declared */
};

struct config {
	char *path;

	char *socket_path;
	mode_t socket_mode;
	char *socket_group;          /* NULL: leave the group as created */

	char *token_module;
	char *token;                 /* label, serial, or pkcs11: URI */
	char *pin_file;
	unsigned token_sessions;
	char *wrap;                  /* "auto", "aes-gcm", "aes-kwp", "aes-ecb-hmac" */
	int session_copies;          /* use keys through session copies (default 1) */

	char *state_dir;
	char *store_url;             /* default sqlite:<state_dir>/keywarden.db */

	char *audit_dir;             /* default <state_dir>/audit */
	uint64_t audit_segment_bytes;
	uint64_t audit_segment_seconds;
	unsigned audit_timeout_ms;
	int audit_group_commit_us;   /* linger for a group commit; -1 never, 0 default */
	int audit_syslog;
	int audit_preallocate;       /* zero-fill the active segment ahead of its data */
	uint64_t audit_anchor_seconds;   /* copy the last seal into the token this often */
	int audit_reanchor;          /* from the command line (--audit-reanchor), not the file */
	int adopt_keys;              /* from the command line (--adopt-keys), not the file */
	unsigned audit_stream_max_lag;   /* events a stream client may fall behind before it is cut off */

	char *policy_file;           /* NULL: only root and the daemon's uid */

	struct config_vault *vaults;
	size_t nvaults;

	unsigned workers;            /* reads and key operations; 0 in the file: the CPU count */
	unsigned write_workers;      /* writes, which wait for disks */
	unsigned identity_workers;   /* new callers' identity checks, which wait for servers */
	unsigned event_loops;        /* HTTP event loops; 0 in the file: the CPU count, at most 8 */
	uint64_t max_body;           /* bytes of a request body */
	uint64_t max_value;          /* bytes of a secret value */
	unsigned max_connections;
	unsigned header_timeout_s;   /* idle/slow client cut-off */
	unsigned request_timeout_ms; /* a request that waits longer fails 503 */

	int log_level;
	int log_syslog;
};

/* Errors collected while loading: a NUL-separated list is awkward, so an
 * array of lines.  Free with config_errors_free(). */
struct config_errors {
	char **lines;
	size_t n;
};

/* Load and validate path.  On success *out is set (free with config_free)
 * and 0 returned; on failure KW_E_CONFIG and *errs lists every problem.
 * The file must be owned by root or by this process's effective uid (the
 * daemon's user). */
int config_load(const char *path, struct config **out, struct config_errors *errs);
/* The same for a daemon that will run as daemon_uid: the file may be owned
 * by root or by daemon_uid (keywardend --check-config run as root). */
int config_load_as(const char *path, uid_t daemon_uid, struct config **out,
    struct config_errors *errs);
void config_free(struct config *c);
void config_errors_free(struct config_errors *e);

const struct config_vault *config_vault_find(const struct config *c,
    const char *name);

/* Parse "64MiB", "1024", "1k" (bytes) and "30s", "5m", "2h", "7d". */
int config_parse_size(const char *s, uint64_t *out);
int config_parse_duration(const char *s, uint64_t *seconds);

#endif
