/* hvmm: command line, process set-up, and the reboot loop.
 *
 * Exit status: 0 the guest powered off; 1 a runtime failure (KVM missing or
 * failing, a vCPU error); 2 a bad command line; 3 the host stopped the VM
 * (SIGTERM, SIGINT, SIGHUP) before the guest powered off. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <pthread.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "core/control.h"
#include "core/disks.h"
#include "core/vm.h"
#include "hyperv/kvm_hv.h"
#include "util/log.h"
#include "util/parse.h"
#include "x86/boot.h"

enum {
	EXIT_POWEROFF = 0,
	EXIT_FAILURE_RUNTIME = 1,
	EXIT_USAGE = 2,
	EXIT_HOST_STOP = 3,
	EXIT_GUEST_RESET = 4, /* --no-reboot */
};

#define DEFAULT_CMDLINE "console=ttyS0"
#define DEFAULT_MEMORY (512ULL << 20)

static const char usage_text[] =
	"usage: hvmm run --kernel BZIMAGE [--initrd FILE] [--cmdline STR]\n"
	"                [--memory SIZE] [--cpus N] [--disk SPEC]... [--api SOCKET]\n"
	"                [--no-reboot] [--verbose]\n"
	"\n"
	"  --kernel BZIMAGE  Linux kernel (bzImage, boot protocol 2.12 or later)\n"
	"  --initrd FILE     initial RAM disk\n"
	"  --cmdline STR     kernel command line (default \"" DEFAULT_CMDLINE "\")\n"
	"  --memory SIZE     guest RAM, e.g. 512M or 2G (default 512M)\n"
	"  --cpus N          virtual CPUs, 1 to 64 (default 1)\n"
	"  --disk PATH[,ro][,format=raw|vhd|vhdx][,lun=N][,controller=N]\n"
	"                    a synthetic SCSI disk (repeatable; up to 64 LUNs on\n"
	"                    each of 4 controllers; the format is probed unless\n"
	"                    given; a comma in PATH is written \",,\")\n"
	"  --api SOCKET      serve the management API on this Unix socket\n"
	"  --no-reboot       exit (status 4) when the guest resets instead of\n"
	"                    restarting it: a reboot, a triple fault\n"
	"  --verbose         log debug messages\n"
	"\n"
	"The guest's COM1 is hvmm's standard input and output. SIGTERM asks the\n"
	"guest to shut down (a second one powers it off).\n"
	"Exit status: 0 guest powered off, 1 runtime error, 2 bad command line,\n"
	"3 stopped by a signal, 4 guest reset with --no-reboot.\n";

struct file_map {
	uint8_t *data;
	size_t size;
};

struct options {
	const char *kernel_path, *initrd_path, *cmdline, *api_path;
	uint64_t mem_size;
	unsigned nr_cpus;
	bool no_reboot;
	struct disk_set disks;
};

static __attribute__((noreturn, format(printf, 1, 2))) void usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("hvmm: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see hvmm --help)\n", stderr);
	exit(EXIT_USAGE);
}

static int map_file(const char *path, struct file_map *m)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
		close(fd);
		return S_ISREG(st.st_mode) ? -ENODATA : -EINVAL;
	}
	m->size = (size_t)st.st_size;
	m->data = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (m->data == MAP_FAILED)
		return -errno;
	return 0;
}

static const char *map_error(int err)
{
	if (err == -ENODATA)
		return "file is empty";
	if (err == -EINVAL)
		return "not a regular file";
	return strerror(-err);
}

static uint64_t host_memory(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);

	return pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : UINT64_MAX;
}

static void add_disk_arg(struct options *o, const char *arg)
{
	struct storvsp_disk_config dc;
	char err[512];

	if (storvsp_parse_disk_arg(arg, &dc, err, sizeof(err)))
		usage_error("--disk: %s", err);
	if (disk_set_add(&o->disks, &dc))
		usage_error("--disk: out of memory");
}

static void parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "kernel", required_argument, NULL, 'k' }, { "initrd", required_argument, NULL, 'i' },
		{ "cmdline", required_argument, NULL, 'c' }, { "memory", required_argument, NULL, 'm' },
		{ "cpus", required_argument, NULL, 'n' },   { "verbose", no_argument, NULL, 'v' },
		{ "api", required_argument, NULL, 'a' },     { "disk", required_argument, NULL, 'd' },
		{ "no-reboot", no_argument, NULL, 'r' },    { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c;

	*o = (struct options){ .cmdline = DEFAULT_CMDLINE, .mem_size = DEFAULT_MEMORY, .nr_cpus = 1 };
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'k': o->kernel_path = optarg; break;
		case 'i': o->initrd_path = optarg; break;
		case 'c': o->cmdline = optarg; break;
		case 'a': o->api_path = optarg; break;
		case 'v': log_threshold = LOG_DEBUG; break;
		case 'r': o->no_reboot = true; break;
		case 'd': add_disk_arg(o, optarg); break;
		case 'h': fputs(usage_text, stdout); exit(0);
		case 'm':
			if (parse_size(optarg, &v))
				usage_error("--memory '%s' is not a size (try 512M or 2G)", optarg);
			if (v < VM_MIN_MEMORY)
				usage_error("--memory %s is too small: at least 64M", optarg);
			if (v % (1 << 20))
				usage_error("--memory %s is not a whole number of megabytes", optarg);
			if (v > host_memory())
				usage_error("--memory %s is more than this host has (%llu MiB)", optarg,
					    (unsigned long long)(host_memory() >> 20));
			o->mem_size = v;
			break;
		case 'n':
			if (parse_uint(optarg, 1, VM_MAX_CPUS, &v))
				usage_error("--cpus '%s' must be a number from 1 to %d", optarg, VM_MAX_CPUS);
			o->nr_cpus = (unsigned)v;
			break;
		case ':':
			usage_error("%s needs a value", argv[optind - 1]);
		default:
			usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	if (!o->kernel_path)
		usage_error("--kernel is required");
}

static int open_kvm(unsigned nr_cpus)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	int max;

	if (fd < 0) {
		fprintf(stderr, "hvmm: cannot open /dev/kvm: %s\n", strerror(errno));
		exit(EXIT_FAILURE_RUNTIME);
	}
	if (ioctl(fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		fprintf(stderr, "hvmm: /dev/kvm has an unsupported API version\n");
		exit(EXIT_FAILURE_RUNTIME);
	}
	max = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max <= 0)
		max = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (max > 0 && nr_cpus > (unsigned)max)
		usage_error("--cpus %u is more than KVM allows here (%d)", nr_cpus, max);
	if (hv_kvm_check(fd))
		exit(EXIT_FAILURE_RUNTIME);
	return fd;
}

/* The console: raw mode on a terminal, so keys reach the guest as typed;
 * ISIG stays on so ^C still stops hvmm. */
static struct termios saved_termios;
static bool termios_saved;

static void restore_terminal(void)
{
	if (termios_saved)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
}

static void setup_terminal(void)
{
	struct termios t;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_termios) < 0)
		return;
	termios_saved = true;
	atexit(restore_terminal);
	t = saved_termios;
	cfmakeraw(&t);
	t.c_lflag |= ISIG;
	t.c_oflag |= OPOST | ONLCR;
	tcsetattr(STDIN_FILENO, TCSANOW, &t);
}

/* Signals: the vCPU kick is unblocked in vCPU threads only; the stop
 * signals are read from a signalfd by the controller. Block them all before
 * any thread exists so every thread inherits the mask. */
static void block_signals(void)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static int run_command(int argc, char **argv)
{
	struct options o;
	struct file_map kernel_file, initrd_file = { 0 };
	struct bzimage kernel;
	struct control ctl;
	struct vm_config cfg;
	struct loop *loop;
	const char *why;
	char err[512];
	int kvm_fd, ret;

	parse_options(argc, argv, &o);
	ret = map_file(o.kernel_path, &kernel_file);
	if (ret)
		usage_error("kernel '%s': %s", o.kernel_path, map_error(ret));
	if (bzimage_parse(kernel_file.data, kernel_file.size, &kernel, &why))
		usage_error("kernel '%s': %s", o.kernel_path, why);
	if (o.initrd_path) {
		ret = map_file(o.initrd_path, &initrd_file);
		if (ret)
			usage_error("initrd '%s': %s", o.initrd_path, map_error(ret));
	}
	if (strlen(o.cmdline) >= BOOT_CMDLINE_MAX)
		usage_error("--cmdline is longer than %d bytes", BOOT_CMDLINE_MAX - 1);
	if (disk_set_check(&o.disks, err, sizeof(err)))
		usage_error("%s", err);
	kvm_fd = open_kvm(o.nr_cpus);

	cfg = (struct vm_config){
		.kernel = &kernel, .initrd = initrd_file.data, .initrd_size = initrd_file.size,
		.cmdline = o.cmdline, .mem_size = o.mem_size, .nr_cpus = o.nr_cpus,
		.console_in = STDIN_FILENO, .console_out = STDOUT_FILENO, .disks = &o.disks,
	};
	block_signals();
	loop = loop_new();
	if (!loop) {
		fprintf(stderr, "hvmm: cannot create the event loop: %s\n", strerror(errno));
		return EXIT_FAILURE_RUNTIME;
	}
	ret = control_init(&ctl, loop, o.api_path, &o.disks);
	if (ret) {
		fprintf(stderr, "hvmm: %s%s: %s\n", o.api_path ? "cannot serve the API on " : "control",
			o.api_path ? o.api_path : "", strerror(-ret));
		return ret == -EADDRINUSE || ret == -EEXIST ? EXIT_USAGE : EXIT_FAILURE_RUNTIME;
	}
	setup_terminal();

	for (;;) {
		struct vm *vm = NULL;
		enum vm_stop why_stopped;

		ret = vm_create(&vm, &cfg, loop, kvm_fd);
		if (ret) {
			vm_destroy(vm);
			control_fini(&ctl);
			return ret == -E2BIG || ret == -ENOMEM ? EXIT_USAGE : EXIT_FAILURE_RUNTIME;
		}
		/* The guest has its copy: let the files' pages go until a reboot
		 * needs them again, so they do not count against hvmm's memory. */
		madvise(kernel_file.data, kernel_file.size, MADV_DONTNEED);
		if (initrd_file.data)
			madvise(initrd_file.data, initrd_file.size, MADV_DONTNEED);
		control_attach(&ctl, vm);
		why_stopped = vm_run(vm);
		control_attach(&ctl, NULL);
		vm_destroy(vm);
		if (why_stopped == VM_STOP_REBOOT && !o.no_reboot) {
			log_info("guest reset: restarting the VM");
			continue;
		}
		control_fini(&ctl);
		if (why_stopped == VM_STOP_REBOOT) {
			log_info("guest reset: exiting (--no-reboot)");
			return EXIT_GUEST_RESET;
		}
		if (why_stopped == VM_STOP_POWEROFF)
			return EXIT_POWEROFF;
		return why_stopped == VM_STOP_HOST ? EXIT_HOST_STOP : EXIT_FAILURE_RUNTIME;
	}
}

int main(int argc, char **argv)
{
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (argc < 2)
		usage_error("missing command");
	if (strcmp(argv[1], "run"))
		usage_error("unknown command '%s'", argv[1]);
	return run_command(argc - 1, argv + 1);
}
