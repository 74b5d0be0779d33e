/*
 * flight.h - single-flight records shared by every process (flight.c).
 */
#ifndef HC_FLIGHT_H
#define HC_FLIGHT_H

#include "internal.h"

/* A flight this caller owns or waits on. */
struct hc_fl {
	struct hc_flight *f;
	uint64_t word; /* the record's word as this caller knows it */
	uint32_t seq;  /* futex value while the flight was on */
};

enum {
	HC_FL_FULL = 0,	  /* no record free near the key: load without a flight */
	HC_FL_OWNER = 1,  /* this caller owns the flight: load, then hc_flight_end */
	HC_FL_JOINED = 2, /* another caller loads: hc_flight_wait */
	HC_FL_BUSY = 3,	  /* (join false) another caller loads: do not wait */
	HC_FL_ENDED = 4,  /* hc_flight_wait: the flight ended, see *result */
};

/* Flight results besides 0 (published), HC_E_NOTFOUND and errors. */
#define HC_FLIGHT_RETRY 1 /* outcome unknown or no value: look again */
#define HC_FLIGHT_L2 2	  /* published, found in L2 */

int hc_flight_enter(struct hc_cache *c, struct hc_thread *t, uint64_t h, bool join,
		    uint32_t lease_ms, struct hc_fl *fl);
int hc_flight_wait(struct hc_cache *c, struct hc_thread *t, struct hc_fl *fl, uint64_t h,
		   uint32_t ent, uint32_t lease_ms, int *result);
void hc_flight_end(struct hc_cache *c, struct hc_fl *fl, int result);
uint32_t hc_flights_active(const struct hc_cache *c);
uint32_t hc_flights_reclaim(struct hc_cache *c);
void hc_refresher_stop(struct hc_cache *c); /* load.c */

/* ring.c */
bool hc_agent_alive(const struct hc_cache *c);
int hc_ring_push(struct hc_cache *c, uint32_t op, const void *key, size_t klen, uint32_t ttl_ms,
		 uint32_t stale_ms, uint64_t token, bool bell);
void hc_ring_bell(struct hc_cache *c);
int hc_l2_lookup(struct hc_cache *c, struct hc_fl *fl, const void *key, size_t klen,
		 uint32_t stale_ms);
uint32_t hc_l2_ask(struct hc_cache *c, struct hc_fl *fl, const void *key, size_t klen,
		   uint32_t stale_ms, bool bell);
int hc_l2_wait(struct hc_cache *c, struct hc_fl *fl, uint32_t pending, uint64_t until);
#define HC_L2_WAIT_MS 250 /* how long a flight owner waits for the agent's answer */

#endif
