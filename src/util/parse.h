/* Parsing of command-line and API values. */
#ifndef HVMM_PARSE_H
#define HVMM_PARSE_H

#include <stdbool.h>
#include <stdint.h>

/* "512M", "2G", "1GiB", "65536" (bytes), "4k": binary multiples of K, M, G, T.
 * Returns 0 or -EINVAL (not a size) / -ERANGE (does not fit in 64 bits). */
int parse_size(const char *s, uint64_t *out);

/* A decimal unsigned integer in [min, max]. -EINVAL or -ERANGE otherwise. */
int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Is s well-formed UTF-8 (no overlong forms, surrogates or code points
 * past U+10FFFF)? Paths go into JSON strings, which must be. */
bool utf8_valid(const char *s);

#endif
