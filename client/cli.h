/* cli.h - what the parts of the keywarden command share. */
#ifndef KW_CLI_H
#define KW_CLI_H
#include "keywarden.h"
extern int opt_json;
int exit_code(int r);
int fail(kw_client *c, int r);
int cli_policy_check(kw_client *c, int argc, char **argv);
int cli_policy_explain(kw_client *c, int argc, char **argv);
int cli_policy_who_can(kw_client *c, int argc, char **argv);
int cli_policy_reload(kw_client *c, int argc, char **argv);
int cli_audit_verify(kw_client *c, int argc, char **argv);
int cli_audit_tail(kw_client *c, int argc, char **argv);
int cli_audit_query(kw_client *c, int argc, char **argv);
#endif
