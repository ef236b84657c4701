/* Preloaded into Debian 12's crun 1.8.1 by the cgdev lab.
 *
 * Why: crun before 1.14 raises RLIMIT_MEMLOCK to infinity before loading a BPF program and gives
 * up when that fails.  It fails on hosts whose capability bounding set lacks CAP_SYS_RESOURCE,
 * although since Linux 5.11 BPF memory is charged to the memory cgroup and the limit no longer
 * matters.  crun 1.14 made the raise best effort; this does the same for the old binary: an EPERM
 * for RLIMIT_MEMLOCK becomes success, every other call is untouched. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <sys/resource.h>

int setrlimit(__rlimit_resource_t resource, const struct rlimit *limit)
{
	static int (*next_setrlimit)(__rlimit_resource_t, const struct rlimit *);

	if (next_setrlimit == NULL)
		next_setrlimit = dlsym(RTLD_NEXT, "setrlimit");
	int rc = next_setrlimit(resource, limit);
	if (rc != 0 && errno == EPERM && resource == RLIMIT_MEMLOCK)
		return 0;
	return rc;
}
