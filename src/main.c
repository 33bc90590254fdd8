/*
 * adplatform: one binary, git-style subcommands. `serve` runs a node (src/app); the others
 * are tools and API clients (src/cli).
 */
#include <stdio.h>
#include <string.h>

#include "app/ap_app.h"
#include "cli/ap_cli.h"
#include "cli/ap_cmd_admin.h"
#include "cli/ap_cmd_demo.h"
#include "cli/ap_cmd_events.h"
#include "cli/ap_cmd_keys.h"

static void usage(FILE *out)
{
    fprintf(out, "Usage: adplatform <command> [options]\n\n"
                 "Commands:\n"
                 "  serve      run a node: data plane and control plane (see serve --help)\n"
                 "  admin      admin create --data-dir DIR --email E: bootstrap an administrator\n"
                 "  demo       demo --data-dir DIR: load demo advertisers, ads and placements\n"
                 "  events     events dump --data-dir DIR: print the event log as JSON lines\n"
                 "  keys       keys rotate|list --data-dir DIR: token signing keys\n"
                 "  version    print the version\n"
                 "  help       this text\n");
    ap_cli_usage(out);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "serve"))
        return ap_app_serve(argc - 2, argv + 2);
    if (!strcmp(cmd, "admin"))
        return ap_cmd_admin(argc - 2, argv + 2);
    if (!strcmp(cmd, "demo"))
        return ap_cmd_demo(argc - 2, argv + 2);
    if (!strcmp(cmd, "events"))
        return ap_cmd_events(argc - 2, argv + 2);
    if (!strcmp(cmd, "keys"))
        return ap_cmd_keys(argc - 2, argv + 2);
    if (ap_cli_is_command(cmd))
        return ap_cli_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("adplatform %s\n", AP_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "adplatform: unknown command \"%s\"\n\n", cmd);
    usage(stderr);
    return 2;
}
