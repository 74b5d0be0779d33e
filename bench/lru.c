/*
 * lru.c - exact LRU: a hash map from key to node and a doubly linked list
 * of nodes in recency order (head = most recent).  Nodes live in arrays
 * indexed by uint32_t, so the list costs 8 bytes per entry and the map is
 * an open-addressing table of node numbers (linear probing, deletion by
 * backward shift as in Knuth 6.4 Algorithm R, so no tombstones build up).
 * Every request is O(1).  Used only to compute the hit ratio an ideal LRU
 * of the same capacity would reach on the same request sequence.
 */
#include <errno.h>
#include <stdlib.h>

#include "lru.h"

#define LRU_NIL UINT32_MAX

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= UINT64_C(0xff51afd7ed558ccd);
	x ^= x >> 33;
	x *= UINT64_C(0xc4ceb9fe1a85ec53);
	return x ^ (x >> 33);
}

int lru_init(struct lru_sim *l, uint32_t capacity)
{
	if (capacity == 0 || capacity == LRU_NIL)
		return -EINVAL;
	uint64_t tsize = 16;
	while (tsize < 2 * (uint64_t)capacity)
		tsize *= 2;
	l->capacity = capacity;
	l->size = 0;
	l->head = l->tail = LRU_NIL;
	l->mask = tsize - 1;
	l->evictions = 0;
	l->prev = malloc(capacity * sizeof(*l->prev));
	l->next = malloc(capacity * sizeof(*l->next));
	l->key = malloc(capacity * sizeof(*l->key));
	l->table = calloc(tsize, sizeof(*l->table));
	if (!l->prev || !l->next || !l->key || !l->table) {
		lru_free(l);
		return -ENOMEM;
	}
	return 0;
}

void lru_free(struct lru_sim *l)
{
	free(l->prev);
	free(l->next);
	free(l->key);
	free(l->table);
	l->prev = l->next = l->table = NULL;
	l->key = NULL;
}

/* Table position holding @key, or the empty position where it would go. */
static uint64_t find_pos(const struct lru_sim *l, uint64_t key)
{
	uint64_t i = mix(key) & l->mask;
	while (l->table[i] && l->key[l->table[i] - 1] != key)
		i = (i + 1) & l->mask;
	return i;
}

static void table_remove(struct lru_sim *l, uint64_t key)
{
	uint64_t i = find_pos(l, key);
	l->table[i] = 0;
	/* shift back every later entry of the cluster that may not stay behind the hole */
	for (uint64_t j = (i + 1) & l->mask; l->table[j]; j = (j + 1) & l->mask) {
		uint64_t home = mix(l->key[l->table[j] - 1]) & l->mask;
		/* the entry at j may move to i when its home is not in (i, j] cyclically */
		if (((j - home) & l->mask) >= ((j - i) & l->mask)) {
			l->table[i] = l->table[j];
			l->table[j] = 0;
			i = j;
		}
	}
}

static void list_unlink(struct lru_sim *l, uint32_t n)
{
	if (l->prev[n] != LRU_NIL)
		l->next[l->prev[n]] = l->next[n];
	else
		l->head = l->next[n];
	if (l->next[n] != LRU_NIL)
		l->prev[l->next[n]] = l->prev[n];
	else
		l->tail = l->prev[n];
}

static void list_push_front(struct lru_sim *l, uint32_t n)
{
	l->prev[n] = LRU_NIL;
	l->next[n] = l->head;
	if (l->head != LRU_NIL)
		l->prev[l->head] = n;
	l->head = n;
	if (l->tail == LRU_NIL)
		l->tail = n;
}

bool lru_access(struct lru_sim *l, uint64_t key)
{
	uint64_t pos = find_pos(l, key);
	uint32_t n;
	if (l->table[pos]) {
		n = l->table[pos] - 1;
		if (l->head != n) {
			list_unlink(l, n);
			list_push_front(l, n);
		}
		return true;
	}
	if (l->size < l->capacity) {
		n = l->size++;
	} else {
		n = l->tail;
		list_unlink(l, n);
		table_remove(l, l->key[n]);
		l->evictions++;
		pos = find_pos(l, key); /* the removal may have shifted the probe sequence */
	}
	l->key[n] = key;
	l->table[pos] = n + 1;
	list_push_front(l, n);
	return false;
}
