/* hvctl: control a running hvmm through its management API socket. */
#include <stdio.h>

#include "hvctl/hvctl.h"

int main(int argc, char **argv)
{
	return hvctl_main(argc, argv, stdout, stderr);
}
