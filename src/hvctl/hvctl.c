/* hvctl's command line and commands. A command is one entry in `commands`;
 * its name may be several words ("disk add"), and only commands that talk
 * to a running VM need --api. */
#include "hvctl/hvctl.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "api/client.h"
#include "api/http.h"
#include "block/block.h"
#include "storvsp/storvsp.h"
#include "util/parse.h"

struct hvctl {
	const char *api_socket; /* --api, or NULL */
	unsigned timeout_ms;
	FILE *out, *err;
};

struct hvctl_command;

/* Run a command; argv[0] is the last word of its name. Returns an exit
 * status. */
typedef int hvctl_command_fn(const struct hvctl *h, const struct hvctl_command *cmd, int argc,
			     char **argv);

struct hvctl_command {
	const char *name;    /* words to match: "status", "disk add" */
	const char *args;    /* synopsis of what follows the name; "" if nothing */
	const char *summary;
	bool needs_api;
	hvctl_command_fn *run;
};

static hvctl_command_fn cmd_status, cmd_shutdown, cmd_stop, cmd_disk_list, cmd_disk_add,
	cmd_disk_remove, cmd_disk_resize;
/* Disk image tools, in vhd.c. */
hvctl_command_fn hvctl_vhd_help, hvctl_vhd_new, hvctl_vhd_info, hvctl_vhd_check,
	hvctl_vhd_convert, hvctl_vhd_resize, hvctl_vhd_merge, hvctl_vhd_compact;

static const struct hvctl_command commands[] = {
	{ "status", "", "print the VM's state as JSON", true, cmd_status },
	{ "shutdown", "", "ask the guest to shut down cleanly", true, cmd_shutdown },
	{ "stop", "[--force]", "stop the VM; --force powers it off at once", true, cmd_stop },
	{ "disk list", "", "list the VM's disks and SCSI controllers", true, cmd_disk_list },
	{ "disk add", "PATH[,ro][,format=F][,lun=N][,controller=N]",
	  "hot-add a disk (the --disk syntax of hvmm run)", true, cmd_disk_add },
	{ "disk remove", "LUN [--controller N]", "hot-remove a disk", true, cmd_disk_remove },
	{ "disk resize", "LUN --size SIZE [--controller N]",
	  "grow a disk while the guest runs", true, cmd_disk_resize },
	{ "vhd", "", "disk image tools (VHDX, VHD, raw): `hvctl vhd` describes them", false,
	  hvctl_vhd_help },
	{ "vhd new", "PATH --size SIZE [--fixed|--parent P] [OPTIONS]",
	  "create a disk image (dynamic by default; `hvctl vhd` lists the options)", false,
	  hvctl_vhd_new },
	{ "vhd info", "PATH [--json]", "describe a disk image", false, hvctl_vhd_info },
	{ "vhd check", "PATH [--repair]",
	  "check a disk image; exit 0 clean, 1 check failed, 2 corrupt, 3 leaks only", false,
	  hvctl_vhd_check },
	{ "vhd convert", "SRC DST [--format raw|vhd|vhdx] [OPTIONS]",
	  "copy a disk into a new image (format from DST's extension)", false, hvctl_vhd_convert },
	{ "vhd resize", "PATH --size SIZE", "grow (raw, VHD: or safely shrink) a disk image", false,
	  hvctl_vhd_resize },
	{ "vhd merge", "CHILD", "merge a differencing disk into its parent, then remove it", false,
	  hvctl_vhd_merge },
	{ "vhd compact", "PATH", "give back a disk image's unused space", false, hvctl_vhd_compact },
};
#define NR_COMMANDS (sizeof(commands) / sizeof(commands[0]))

/* ---- usage ---- */

static void print_usage(FILE *f)
{
	char synopsis[96];

	fputs("usage: hvctl [--api SOCKET] [--timeout SECONDS] COMMAND [ARGS...]\n"
	      "\n"
	      "Commands:\n",
	      f);
	for (size_t i = 0; i < NR_COMMANDS; i++) {
		snprintf(synopsis, sizeof(synopsis), "%s%s%s", commands[i].name,
			 *commands[i].args ? " " : "", commands[i].args);
		/* A long synopsis gets a line of its own. */
		fprintf(f, "  %-22s%s%s%s\n", synopsis,
			strlen(synopsis) > 22 ? "\n                         " : " ",
			commands[i].summary, commands[i].needs_api ? " (needs --api)" : "");
	}
	fprintf(f,
		"\n"
		"Options:\n"
		"  --api SOCKET           the management socket of a VM started with\n"
		"                         `hvmm run --api SOCKET`\n"
		"  --timeout SECONDS      how long to wait for the API (default %d)\n"
		"  -h, --help             print this help; `hvctl COMMAND --help` for one command\n"
		"\n"
		"Exit status: 0 success; 1 the API returned an error or could not be\n"
		"reached; 2 bad command line.\n",
		HVCTL_DEFAULT_TIMEOUT_S);
}

static void print_command_usage(FILE *f, const struct hvctl_command *cmd)
{
	fprintf(f, "usage: hvctl%s %s%s%s\n\n%c%s.\n", cmd->needs_api ? " --api SOCKET" : "",
		cmd->name, *cmd->args ? " " : "", cmd->args,
		toupper((unsigned char)cmd->summary[0]), cmd->summary + 1);
}

static int __attribute__((format(printf, 2, 3)))
usage_error(const struct hvctl *h, const char *fmt, ...)
{
	va_list ap;

	fputs("hvctl: ", h->err);
	va_start(ap, fmt);
	vfprintf(h->err, fmt, ap);
	va_end(ap);
	fputs(" (see hvctl --help)\n", h->err);
	return HVCTL_EXIT_USAGE;
}

/* ---- talking to the API ---- */

static int print_json(const struct hvctl *h, const json_t *value)
{
	if (json_dumpf(value, h->out, JSON_INDENT(2) | JSON_ENCODE_ANY) < 0 ||
	    fputc('\n', h->out) == EOF || fflush(h->out) == EOF) {
		fprintf(h->err, "hvctl: cannot write the output\n");
		return HVCTL_EXIT_FAILED;
	}
	return HVCTL_EXIT_OK;
}

/* Send one request; print the reply body, if any, or report the failure. */
static int call_api(const struct hvctl *h, const char *method, const char *path, const json_t *body)
{
	struct api_response resp;
	struct api_error err;
	const char *message;
	int ret;

	ret = api_client_request(h->api_socket, method, path, body, h->timeout_ms, &resp, &err);
	if (ret < 0) {
		fprintf(h->err, "hvctl: %s: %s %s: %s\n", h->api_socket, method, path, err.message);
		return HVCTL_EXIT_FAILED;
	}
	if (resp.status >= 300) {
		message = api_response_error(&resp);
		fprintf(h->err, "hvctl: %s: %s %s: %d %s%s%s\n", h->api_socket, method, path,
			resp.status, http_reason(resp.status), message ? ": " : "",
			message ? message : "");
		api_response_release(&resp);
		return HVCTL_EXIT_FAILED;
	}
	ret = resp.body ? print_json(h, resp.body) : HVCTL_EXIT_OK;
	api_response_release(&resp);
	return ret;
}

/* For commands whose arguments are all flags: seen[i] tells whether
 * flags[i] was given. Returns -1 to go on, or an exit status. */
static int parse_flags(const struct hvctl *h, const struct hvctl_command *cmd, int argc,
		       char **argv, const char *const *flags, bool *seen)
{
	for (int i = 1; i < argc; i++) {
		size_t f = 0;

		while (flags && flags[f] && strcmp(argv[i], flags[f]))
			f++;
		if (!flags || !flags[f])
			return usage_error(h, "%s: unexpected argument '%s'", cmd->name, argv[i]);
		seen[f] = true;
	}
	return -1;
}

/* ---- commands ---- */

static int cmd_status(const struct hvctl *h, const struct hvctl_command *cmd, int argc,
		       char **argv)
{
	int ret = parse_flags(h, cmd, argc, argv, NULL, NULL);

	return ret >= 0 ? ret : call_api(h, "GET", "/v1/status", NULL);
}

static int cmd_shutdown(const struct hvctl *h, const struct hvctl_command *cmd, int argc,
			 char **argv)
{
	int ret = parse_flags(h, cmd, argc, argv, NULL, NULL);

	return ret >= 0 ? ret : call_api(h, "PUT", "/v1/actions/shutdown", NULL);
}

static int cmd_stop(const struct hvctl *h, const struct hvctl_command *cmd, int argc,
		     char **argv)
{
	static const char *const flags[] = { "--force", NULL };
	bool force = false;
	json_t *body;
	int ret = parse_flags(h, cmd, argc, argv, flags, &force);

	if (ret >= 0)
		return ret;
	body = json_pack("{s:b}", "force", force);
	if (!body) {
		fprintf(h->err, "hvctl: out of memory\n");
		return HVCTL_EXIT_FAILED;
	}
	ret = call_api(h, "PUT", "/v1/actions/stop", body);
	json_decref(body);
	return ret;
}

static int call_api_with(const struct hvctl *h, const char *path, json_t *body)
{
	int ret;

	if (!body) {
		fprintf(h->err, "hvctl: out of memory\n");
		return HVCTL_EXIT_FAILED;
	}
	ret = call_api(h, "PUT", path, body);
	json_decref(body);
	return ret;
}

static int cmd_disk_list(const struct hvctl *h, const struct hvctl_command *cmd, int argc,
			  char **argv)
{
	int ret = parse_flags(h, cmd, argc, argv, NULL, NULL);

	return ret >= 0 ? ret : call_api(h, "GET", "/v1/disks", NULL);
}

static int cmd_disk_add(const struct hvctl *h, const struct hvctl_command *cmd, int argc,
			 char **argv)
{
	struct storvsp_disk_config dc;
	char err[512], *abs;
	json_t *body;

	if (argc != 2)
		return usage_error(h, "%s: expected one disk, "
				   "PATH[,ro][,format=F][,lun=N][,controller=N]", cmd->name);
	if (storvsp_parse_disk_arg(argv[1], &dc, err, sizeof(err)))
		return usage_error(h, "%s: %s", cmd->name, err);
	/* hvmm resolves nothing against its own directory: send where the
	 * file is, as seen from here. */
	abs = realpath(dc.path, NULL);
	if (!abs) {
		fprintf(h->err, "hvctl: %s: %s\n", dc.path, strerror(errno));
		return HVCTL_EXIT_FAILED;
	}
	body = json_pack("{s:s, s:b, s:i}", "path", abs, "read_only", dc.read_only, "controller",
			 (int)dc.controller);
	free(abs);
	if (body && dc.format != BLK_FMT_AUTO)
		json_object_set_new(body, "format", json_string(blk_format_name(dc.format)));
	if (body && dc.lun >= 0)
		json_object_set_new(body, "lun", json_integer(dc.lun));
	return call_api_with(h, "/v1/disks/add", body);
}

/* LUN [--controller N] [--size SIZE]: the arguments of remove and resize.
 * Returns -1 to go on, or an exit status. */
static int parse_lun_args(const struct hvctl *h, const struct hvctl_command *cmd, int argc,
			  char **argv, uint64_t *ctrl, uint64_t *lun, uint64_t *size)
{
	bool have_lun = false;

	*ctrl = 0;
	for (int i = 1; i < argc; i++) {
		bool is_ctrl = !strcmp(argv[i], "--controller");
		bool is_size = size && !strcmp(argv[i], "--size");

		if ((is_ctrl || is_size) && i + 1 >= argc)
			return usage_error(h, "%s: %s needs a value", cmd->name, argv[i]);
		if (is_ctrl) {
			if (parse_uint(argv[++i], 0, STORVSP_MAX_CONTROLLERS - 1, ctrl))
				return usage_error(h, "%s: --controller must be 0..%u", cmd->name,
						   STORVSP_MAX_CONTROLLERS - 1);
		} else if (is_size) {
			if (parse_size(argv[++i], size) || !*size)
				return usage_error(h, "%s: --size '%s' is not a size (try 20G)",
						   cmd->name, argv[i]);
		} else if (!have_lun && argv[i][0] != '-') {
			if (parse_uint(argv[i], 0, STORVSP_MAX_LUNS - 1, lun))
				return usage_error(h, "%s: LUN '%s' must be 0..%u", cmd->name,
						   argv[i], STORVSP_MAX_LUNS - 1);
			have_lun = true;
		} else {
			return usage_error(h, "%s: unexpected argument '%s'", cmd->name, argv[i]);
		}
	}
	if (!have_lun)
		return usage_error(h, "%s: which LUN?", cmd->name);
	if (size && !*size)
		return usage_error(h, "%s: --size is required", cmd->name);
	return -1;
}

static int cmd_disk_remove(const struct hvctl *h, const struct hvctl_command *cmd, int argc,
			    char **argv)
{
	uint64_t ctrl, lun;
	int ret = parse_lun_args(h, cmd, argc, argv, &ctrl, &lun, NULL);

	if (ret >= 0)
		return ret;
	return call_api_with(h, "/v1/disks/remove",
			     json_pack("{s:i, s:i}", "controller", (int)ctrl, "lun", (int)lun));
}

static int cmd_disk_resize(const struct hvctl *h, const struct hvctl_command *cmd, int argc,
			    char **argv)
{
	uint64_t ctrl, lun, size = 0;
	int ret = parse_lun_args(h, cmd, argc, argv, &ctrl, &lun, &size);

	if (ret >= 0)
		return ret;
	if (size > INT64_MAX)
		return usage_error(h, "%s: --size is too large", cmd->name);
	return call_api_with(h, "/v1/disks/resize",
			     json_pack("{s:i, s:i, s:I}", "controller", (int)ctrl, "lun", (int)lun,
				       "size_bytes", (json_int_t)size));
}

/* ---- dispatch ---- */

/* How many leading words of argv spell cmd's name; 0 if they do not. */
static int match_words(const char *name, int argc, char **argv)
{
	int words = 0;

	while (*name) {
		size_t len = strcspn(name, " ");

		if (words >= argc || strlen(argv[words]) != len || strncmp(argv[words], name, len))
			return 0;
		words++;
		name += len;
		name += strspn(name, " ");
	}
	return words;
}

static const struct hvctl_command *find_command(int argc, char **argv, int *words)
{
	const struct hvctl_command *best = NULL;

	*words = 0;
	for (size_t i = 0; i < NR_COMMANDS; i++) {
		int n = match_words(commands[i].name, argc, argv);

		if (n > *words) {
			*words = n;
			best = &commands[i];
		}
	}
	return best;
}

static bool wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return true;
	return false;
}

/* "disk" alone (or "disk frob") names a group of commands: list them. */
static int unknown_command(const struct hvctl *h, const char *word)
{
	char subs[256] = "";
	size_t used = 0, wlen = strlen(word);

	for (size_t i = 0; i < NR_COMMANDS; i++) {
		const char *name = commands[i].name, *sub = name + wlen;

		if (strncmp(name, word, wlen) || *sub != ' ')
			continue;
		sub++;
		used += (size_t)snprintf(subs + used, used < sizeof(subs) ? sizeof(subs) - used : 0,
					 "%s%.*s", used ? ", " : "", (int)strcspn(sub, " "), sub);
	}
	if (used && used < sizeof(subs))
		return usage_error(h, "'%s' needs one of: %s", word, subs);
	return usage_error(h, "unknown command '%s'", word);
}

static int run_command(struct hvctl *h, int argc, char **argv)
{
	const struct hvctl_command *cmd;
	int words;

	if (argc < 1)
		return usage_error(h, "no command given");
	cmd = find_command(argc, argv, &words);
	if (!cmd)
		return unknown_command(h, argv[0]);
	/* The command sees its last word as argv[0]. */
	argc -= words - 1;
	argv += words - 1;
	if (wants_help(argc, argv)) {
		print_command_usage(h->out, cmd);
		return HVCTL_EXIT_OK;
	}
	if (cmd->needs_api && !h->api_socket)
		return usage_error(h, "%s needs --api SOCKET", cmd->name);
	return cmd->run(h, cmd, argc, argv);
}

int hvctl_main(int argc, char **argv, FILE *out, FILE *errout)
{
	static const struct option options[] = {
		{ "api", required_argument, NULL, 'a' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct hvctl h = {
		.timeout_ms = HVCTL_DEFAULT_TIMEOUT_S * 1000,
		.out = out,
		.err = errout,
	};
	uint64_t seconds;
	int opt;

	optind = 0; /* start afresh: glibc re-initializes getopt */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:h", options, NULL)) != -1) {
		switch (opt) {
		case 'a':
			h.api_socket = optarg;
			break;
		case 't':
			if (parse_uint(optarg, 1, 3600, &seconds))
				return usage_error(&h, "--timeout: not a number of seconds "
						       "from 1 to 3600: '%s'", optarg);
			h.timeout_ms = (unsigned)seconds * 1000;
			break;
		case 'h':
			print_usage(out);
			return HVCTL_EXIT_OK;
		case ':':
			return usage_error(&h, "%s needs a value", argv[optind - 1]);
		default:
			return usage_error(&h, "unknown option '%s'", argv[optind - 1]);
		}
	}
	return run_command(&h, argc - optind, argv + optind);
}
