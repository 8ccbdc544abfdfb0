/* cli.h - what the parts of the keywarden command share. */
#ifndef KW_CLI_H
#define KW_CLI_H
#include <getopt.h>

#include "keywarden.h"
extern int opt_json;
int exit_code(int r);
int fail(kw_client *c, int r);
/* fail, the message after "what: " and followed by after (not NULL). */
int fail_on(kw_client *c, int r, const char *what, const char *after);
/* Shared by the commands (keywarden.c). */
int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int sys_fail(const char *what, const char *path);
int parse_u64(const char *s, uint64_t *v, int allow_zero);
int version_arg(const char *s, uint64_t *v);
int kv_arg(json_t **obj, const char *opt, const char *s);
/* The option parsing of the commands (keywarden.c): longopts gives --help
 * the letter 'h' and --json (if any) 'j'. */
typedef int cli_take_fn(void *o, int ch, const char *name, const char *allowed);
int cli_parse(int argc, char **argv, const struct option *longopts, const char *allowed,
    int npos, char **pos, int maxpos, int *got, cli_take_fn *take, void *o);
#define NPOS(a) ((int)(sizeof(a) / sizeof((a)[0])))
/* Parse the command's options into o with parse(), or return from the
 * command: its exit status, 0 after --help. */
#define CLI_PARSE(parse, free_opts, o, allowed, npos) do {                  \
	int pr_ = parse(argc, argv, allowed, npos, &(o));                   \
	if (pr_ != 0) {                                                     \
		free_opts(&(o));                                            \
		return pr_ < 0 ? 0 : pr_;                                   \
	}                                                                   \
} while (0)
int print_json(const json_t *j);
void print_table(const json_t *arr, const char *const *cols, const char *const *heads);
int show(const json_t *reply);
int show_result(kw_client *c, int r, const json_t *reply);
int show_list(kw_client *c, int r, const json_t *reply, const char *field,
    const char *const *cols, const char *const *heads);
int write_all(int fd, const void *p, size_t n);
int open_input(const char *path);
int open_output(const char *path);
int cli_policy_check(kw_client *c, int argc, char **argv);
int cli_policy_explain(kw_client *c, int argc, char **argv);
int cli_policy_who_can(kw_client *c, int argc, char **argv);
int cli_policy_reload(kw_client *c, int argc, char **argv);
int cli_audit_verify(kw_client *c, int argc, char **argv);
int cli_audit_tail(kw_client *c, int argc, char **argv);
int cli_audit_query(kw_client *c, int argc, char **argv);
/* cli_keys.c: master keys and rotation, data keys, signing keys, files. */
int cli_vault_rotate(kw_client *c, int argc, char **argv);
int cli_vault_rotation(kw_client *c, int argc, char **argv);
int cli_vault_keys(kw_client *c, int argc, char **argv);
int cli_vault_retire(kw_client *c, int argc, char **argv);
int cli_key_datakey(kw_client *c, int argc, char **argv);
int cli_key_unwrap(kw_client *c, int argc, char **argv);
int cli_key_crypt(kw_client *c, int argc, char **argv);
int cli_signkey_create(kw_client *c, int argc, char **argv);
int cli_signkey_destroy(kw_client *c, int argc, char **argv);
int cli_signkey_disable(kw_client *c, int argc, char **argv);
int cli_signkey_enable(kw_client *c, int argc, char **argv);
int cli_signkey_list(kw_client *c, int argc, char **argv);
int cli_signkey_public(kw_client *c, int argc, char **argv);
int cli_sign(kw_client *c, int argc, char **argv);
int cli_verify(kw_client *c, int argc, char **argv);
int cli_file_crypt(kw_client *c, int argc, char **argv);
int cli_file_rewrap(kw_client *c, int argc, char **argv);
#endif
