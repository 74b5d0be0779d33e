/*
 * error.c - text for every return code: the HC_E_* codes of the library
 * and the negative errno values of the system calls under it.
 */
#include <string.h>

#include "hostcache.h"

const char *hc_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case HC_E_NOTFOUND:
		return "key not found";
	case HC_E_TOOBIG:
		return "key or value larger than the cache accepts";
	case HC_E_TOOSMALL:
		return "buffer too small for the value";
	case HC_E_INVAL:
		return "invalid argument";
	case HC_E_BADMAGIC:
		return "not a hostcache segment (bad magic)";
	case HC_E_VERSION:
		return "segment was created by an incompatible hostcache version (ABI or layout)";
	case HC_E_CORRUPT:
		return "segment header is inconsistent (corrupt or truncated)";
	case HC_E_PERM:
		return "segment refused: owned by another user or accessible to others";
	case HC_E_NOSLOT:
		return "no free thread slot in the segment (raise max_threads)";
	case HC_E_NOSPACE:
		return "no memory can be reclaimed: a reader is stalled inside a read";
	case HC_E_FORKED:
		return "handle inherited across fork(); open the cache again";
	case HC_E_READONLY:
		return "handle is read-only";
	case HC_E_INIT:
		return "segment initialisation did not complete in time";
	case HC_E_EXISTS:
		return "segment already exists";
	case HC_E_FORMAT:
		return "malformed dump stream";
	case HC_E_AGAIN:
		return "not now: the agent could not take the request (absent or busy)";
	case HC_E_BUSY:
		return "another live agent serves this segment";
	}
	if (err < 0 && err > -4096) {
		/* strerror's buffer is static; the text for a valid errno is fixed */
		return strerror(-err);
	}
	return "unknown error";
}
