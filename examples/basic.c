/*
 * basic.c - the smallest useful program on hostcache: cache-aside in front
 * of a slow lookup, shared by every process that opens the same name.
 *
 *   cc basic.c $(pkg-config --cflags --libs hostcache) -o basic
 *   ./basic            # first run loads, later runs (any process) hit
 *
 * Run it twice: the second run finds what the first one stored, because
 * the cache lives in shared memory, not in the process.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <hostcache.h>

/* Stands for a database query: slow, and the same answer for the same id. */
static size_t load_product(int id, char *buf, size_t cap)
{
	usleep(20000);
	return (size_t)snprintf(buf, cap, "{\"id\":%d,\"name\":\"product %d\"}", id, id);
}

/* Cache-aside: L1 hit, or load and store with a TTL. */
static int get_product(struct hc_cache *c, int id, char *buf, size_t cap, size_t *len)
{
	char key[32];
	int kl = snprintf(key, sizeof(key), "product:%d", id);
	int rc = hc_get(c, key, (size_t)kl, buf, cap, len);
	if (rc != HC_E_NOTFOUND)
		return rc; /* 0 on a hit, or a real error */
	*len = load_product(id, buf, cap);
	rc = hc_set(c, key, (size_t)kl, buf, *len, 60000);
	return rc == 0 ? 1 : rc; /* 1: loaded */
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "example";
	struct hc_options opts = {.flags = HC_CREATE, .size = 16u << 20};
	struct hc_cache *c;
	int rc = hc_open(name, &opts, &c);
	if (rc) {
		fprintf(stderr, "basic: open of '%s' failed: %s\n", name, hc_strerror(rc));
		return 1;
	}
	int loaded = 0, hits = 0;
	for (int i = 0; i < 3; i++) {
		for (int id = 1; id <= 5; id++) {
			char buf[256];
			size_t len;
			rc = get_product(c, id, buf, sizeof(buf), &len);
			if (rc < 0) {
				fprintf(stderr, "basic: %s\n", hc_strerror(rc));
				hc_close(c);
				return 1;
			}
			loaded += rc == 1;
			hits += rc == 0;
		}
	}
	struct hc_stats st;
	hc_stats(c, &st);
	printf("basic: %d loads, %d hits; the segment holds %llu entries\n", loaded, hits,
	       (unsigned long long)st.items);
	hc_close(c);
	return 0;
}
