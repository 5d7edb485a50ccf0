#include "api/api_error.h"

#include <stdarg.h>
#include <stdio.h>

int api_error_set(struct api_error *err, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return status;
}
