/* cli.h - what the parts of the keywarden command share. */
#ifndef KW_CLI_H
#define KW_CLI_H
#include "keywarden.h"
extern int opt_json;
int exit_code(int r);
int fail(kw_client *c, int r);
/* Shared by the commands (keywarden.c). */
int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int sys_fail(const char *what, const char *path);
int parse_u64(const char *s, uint64_t *v, int allow_zero);
int print_json(const json_t *j);
void print_table(const json_t *arr, const char *const *cols, const char *const *heads);
int show(const json_t *reply);
int write_all(int fd, const void *p, size_t n);
void cli_cmd_help(void);
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
int cli_signkey_rotate(kw_client *c, int argc, char **argv);
int cli_signkey_list(kw_client *c, int argc, char **argv);
int cli_signkey_public(kw_client *c, int argc, char **argv);
int cli_sign(kw_client *c, int argc, char **argv);
int cli_verify(kw_client *c, int argc, char **argv);
int cli_file_crypt(kw_client *c, int argc, char **argv);
#endif
