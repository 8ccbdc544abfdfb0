/*
 * kw_grow.h - room for one more element in a malloc'd array.
 */
#ifndef KW_GROW_H
#define KW_GROW_H

#include <errno.h>
#include <stdlib.h>

/* Make room for element n of *arr (*cap elements of size bytes), doubling
 * the capacity from 16.  0, or -ENOMEM with *arr unchanged. */
static inline int
kw_grow(void **arr, size_t *cap, size_t n, size_t size)
{
	void *p;
	size_t ncap;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 16;
	if ((p = reallocarray(*arr, ncap, size)) == NULL)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

#endif
