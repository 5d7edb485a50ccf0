/* hvctl: the command-line tool for hvmm. Kept apart from main() so tests
 * can run it in-process. */
#ifndef HVMM_HVCTL_H
#define HVMM_HVCTL_H

#include <stdio.h>

enum hvctl_exit {
	HVCTL_EXIT_OK = 0,
	HVCTL_EXIT_FAILED = 1,  /* the API returned an error or could not be reached */
	HVCTL_EXIT_USAGE = 2,   /* a bad command line */
};

#define HVCTL_DEFAULT_TIMEOUT_S 5

/* Run hvctl with argv (argv[0] is the program name), writing results to
 * `out` and messages to `errout`. Returns the exit status. */
int hvctl_main(int argc, char **argv, FILE *out, FILE *errout);

#endif
