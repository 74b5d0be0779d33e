/*
 * page.h - the dashboard's HTML page (page.c): one self-contained document.
 */
#ifndef HOSTCACHE_DASH_PAGE_H
#define HOSTCACHE_DASH_PAGE_H

#include <stddef.h>

extern const char dash_page_html[];	/* NUL-terminated */
extern const size_t dash_page_html_len; /* without the NUL */

#endif
