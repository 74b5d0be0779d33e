/*
 * test_model.c - the dashboard model: rates and hit ratios over the 1 s,
 * 10 s, 60 s and since-start windows, per-entity rows matched by name,
 * load rates and latency percentiles, restarts on counter resets, the
 * sparkline history.
 *
 * No segment: the snapshots are struct hc_stats values built by hand, fed
 * at chosen timestamps, so every expected number is computed exactly.
 */
#include <math.h>

#include "model.h"
#include "testutil.h"

static bool near(double got, double want)
{
	return fabs(got - want) <= 1e-9 * (fabs(want) > 1 ? fabs(want) : 1);
}

#define CHECK_NEAR(got, want)                                                                    \
	do {                                                                                     \
		double g_ = (got), w_ = (want);                                                  \
		if (!near(g_, w_)) {                                                             \
			fprintf(stderr, "%s:%d: %s = %.9g, expected %.9g\n", __FILE__, __LINE__, \
				#got, g_, w_);                                                   \
			tu_failures++;                                                           \
		}                                                                                \
	} while (0)

static struct hc_stats *snap_new(uint64_t created)
{
	struct hc_stats *s = calloc(1, sizeof(*s));
	REQUIRE(s);
	s->created_unix_ms = created;
	return s;
}

/* Entity @name of @s, appended if it is not there yet. */
static struct hc_entity_stats *ent(struct hc_stats *s, const char *name)
{
	for (uint32_t i = 0; i < s->nentities; i++)
		if (strcmp(s->entity[i].name, name) == 0)
			return &s->entity[i];
	REQUIRE(s->nentities < HC_MAX_ENTITIES);
	struct hc_entity_stats *e = &s->entity[s->nentities++];
	memset(e, 0, sizeof(*e));
	snprintf(e->name, sizeof(e->name), "%s", name);
	return e;
}

static void test_names(void)
{
	CHECK(strcmp(model_window_name[W_1S], "1s") == 0);
	CHECK(strcmp(model_window_name[W_10S], "10s") == 0);
	CHECK(strcmp(model_window_name[W_60S], "60s") == 0);
	CHECK(strcmp(model_window_name[W_START], "start") == 0);
	CHECK(strcmp(model_sort_name[SORT_REQUESTS], "requests") == 0);
	CHECK(strcmp(model_sort_name[SORT_RATIO], "ratio") == 0);
	CHECK(strcmp(model_sort_name[SORT_NAME], "name") == 0);
	CHECK(strcmp(model_sort_name[SORT_LOADS], "loads") == 0);
}

static void test_empty(void)
{
	struct model *m = model_new();
	REQUIRE(m);
	CHECK(model_samples(m) == 0 && model_span_ms(m) == 0);
	CHECK(model_latest(m) == NULL);
	for (int w = 0; w < W_COUNT; w++) {
		struct model_rates r = model_layer(m, HC_LAYER_L1, (enum model_window)w);
		CHECK(r.requests == 0 && r.hits == 0 && r.hit_ratio < 0 && !r.below_target);
		struct model_load_rates l = model_load(m, (enum model_window)w);
		CHECK(l.loads == 0 && l.load_p50_us < 0 && l.load_p99_us < 0);
	}
	double h[4];
	CHECK(model_history(m, HC_LAYER_L1, h, 4) == 0);
	struct model_entity rows[2];
	CHECK(model_entities(m, W_10S, SORT_NAME, rows, 2) == 0);

	/* one sample: still no rates, but the snapshot is there */
	struct hc_stats *s = snap_new(1);
	s->layer[HC_LAYER_L1].hits = 1000;
	s->layer[HC_LAYER_L1].misses = 10;
	s->items = 77;
	ent(s, "user")->layer[HC_LAYER_L1].hits = 5;
	CHECK(!model_feed(m, s, 5000));
	CHECK(model_samples(m) == 1 && model_span_ms(m) == 0);
	for (int w = 0; w < W_COUNT; w++) {
		struct model_rates r = model_layer(m, HC_LAYER_L1, (enum model_window)w);
		CHECK(r.requests == 0 && r.hits == 0 && r.hit_ratio < 0 && !r.below_target);
	}
	CHECK(model_history(m, HC_LAYER_L1, h, 4) == 0);
	/* the entity is listed, with no rates yet */
	CHECK(model_entities(m, W_10S, SORT_NAME, rows, 2) == 1);
	CHECK(strcmp(rows[0].name, "user") == 0 && rows[0].layer[HC_LAYER_L1].requests == 0);
	CHECK(rows[0].layer[HC_LAYER_L1].hit_ratio < 0);
	/* bad arguments */
	CHECK(model_layer(m, -1, W_1S).hit_ratio < 0);
	CHECK(model_layer(m, HC_LAYER_COUNT, W_1S).hit_ratio < 0);
	CHECK(model_layer(m, HC_LAYER_L1, W_COUNT).hit_ratio < 0);
	CHECK(model_entities(m, W_10S, SORT_COUNT, rows, 2) == 0);
	CHECK(model_entities(m, W_10S, SORT_NAME, rows, 0) == 0);
	CHECK(model_history(m, HC_LAYER_COUNT, h, 4) == 0);
	CHECK(model_samples(NULL) == 0 && model_latest(NULL) == NULL);
	CHECK(!model_feed(NULL, s, 0) && !model_feed(m, NULL, 0));
	model_free(m);
	model_free(NULL);
	free(s);
}

/* L1 hits in the snapshot of second k: one more per second each second. */
static uint64_t hits_at(uint64_t k)
{
	return 1000 + k * (k + 1) / 2;
}

static void test_windows(void)
{
	struct model *m = model_new();
	REQUIRE(m);
	struct hc_stats *s = snap_new(42);
	const uint64_t t0 = 1000000;
	/* the first sample is replaced by one 50 ms later */
	s->layer[HC_LAYER_L1].hits = 1;
	CHECK(!model_feed(m, s, t0 - 50));
	CHECK(model_samples(m) == 1);

	/* five samples a second apart (the first replaces the one above): 4 s held */
	for (uint64_t k = 0; k < 5; k++) {
		s->layer[HC_LAYER_L1].hits = hits_at(k);
		s->layer[HC_LAYER_L1].sets = 7 * k;
		CHECK(!model_feed(m, s, t0 + 1000 * k));
		CHECK(model_samples(m) == (int)k + 1);
	}
	CHECK(model_samples(m) == 5 && model_span_ms(m) == 4000);
	CHECK_NEAR(model_layer(m, HC_LAYER_L1, W_1S).hits, 4);
	CHECK_NEAR(model_layer(m, HC_LAYER_L1, W_1S).sets, 7);
	/* fewer samples than the windows: 10 s and 60 s cover the 4 s held */
	CHECK_NEAR(model_layer(m, HC_LAYER_L1, W_10S).hits, (hits_at(4) - hits_at(0)) / 4.0);
	CHECK_NEAR(model_layer(m, HC_LAYER_L1, W_60S).hits, (hits_at(4) - hits_at(0)) / 4.0);
	/* start: the sample that replaced the first one, at t0 */
	CHECK_NEAR(model_layer(m, HC_LAYER_L1, W_START).hits, (hits_at(4) - hits_at(0)) / 4.0);
	CHECK_NEAR(model_layer(m, HC_LAYER_L1, W_START).sets, 7);

	/* a sample 100 ms after the newest is kept; one 50 ms after replaces it */
	s->layer[HC_LAYER_L1].hits = hits_at(4) + 10;
	CHECK(!model_feed(m, s, t0 + 4050));
	CHECK(model_samples(m) == 5 && model_span_ms(m) == 4050);
	/* 1 s window: from the sample at 3 s (4 s was replaced), over 1.05 s */
	CHECK_NEAR(model_layer(m, HC_LAYER_L1, W_1S).hits, (hits_at(4) + 10 - hits_at(3)) / 1.05);
	s->layer[HC_LAYER_L1].hits = hits_at(4) + 20;
	CHECK(!model_feed(m, s, t0 + 4150)); /* 100 ms after 4.05 s: kept */
	CHECK(model_samples(m) == 6 && model_span_ms(m) == 4150);
	s->layer[HC_LAYER_L1].hits = hits_at(4) + 30;
	CHECK(!model_feed(m, s, t0 + 4249)); /* 99 ms after: replaces it */
	CHECK(model_samples(m) == 6 && model_span_ms(m) == 4249);
	/* 1 s window: the newest sample at least 1 s older is the one at 3 s */
	CHECK_NEAR(model_layer(m, HC_LAYER_L1, W_1S).hits, (hits_at(4) + 30 - hits_at(3)) / 1.249);
	CHECK_NEAR(model_layer(m, HC_LAYER_L1, W_START).hits,
		   (hits_at(4) + 30 - hits_at(0)) / 4.249);

	/* a fresh model, one sample a second for 70 s: the ring wraps */
	model_free(m);
	m = model_new();
	REQUIRE(m);
	for (uint64_t k = 0; k <= 70; k++) {
		s->layer[HC_LAYER_L1].hits = hits_at(k);
		s->layer[HC_LAYER_L1].misses = 3 * k;
		s->layer[HC_LAYER_L2].evictions = 2 * k;
		s->layer[HC_LAYER_ORIGIN].errors = k / 10;
		CHECK(!model_feed(m, s, t0 + 1000 * k));
	}
	CHECK(model_samples(m) == MODEL_HISTORY);
	CHECK(model_span_ms(m) == 1000 * (MODEL_HISTORY - 1));
	struct model_rates r = model_layer(m, HC_LAYER_L1, W_1S);
	CHECK_NEAR(r.hits, 70);
	CHECK_NEAR(r.misses, 3);
	CHECK_NEAR(r.requests, 73);
	CHECK_NEAR(r.hit_ratio, 70.0 / 73);
	r = model_layer(m, HC_LAYER_L1, W_10S);
	CHECK_NEAR(r.hits, (hits_at(70) - hits_at(60)) / 10.0);
	CHECK_NEAR(r.requests, (hits_at(70) - hits_at(60) + 30) / 10.0);
	r = model_layer(m, HC_LAYER_L1, W_60S);
	CHECK_NEAR(r.hits, (hits_at(70) - hits_at(10)) / 60.0);
	CHECK_NEAR(r.misses, 3);
	/* since start: the first sample, though the ring no longer holds it */
	r = model_layer(m, HC_LAYER_L1, W_START);
	CHECK_NEAR(r.hits, (hits_at(70) - hits_at(0)) / 70.0);
	CHECK_NEAR(model_layer(m, HC_LAYER_L2, W_10S).evictions, 2);
	CHECK_NEAR(model_layer(m, HC_LAYER_ORIGIN, W_60S).errors, 6 / 60.0);
	CHECK_NEAR(model_layer(m, HC_LAYER_ORIGIN, W_START).errors, 7 / 70.0);

	/* jitter: samples 999 ms apart; the 1 s window reaches one further back */
	model_free(m);
	m = model_new();
	REQUIRE(m);
	const uint64_t ts[] = {0, 1000, 1999, 2998};
	for (int i = 0; i < 4; i++) {
		s->layer[HC_LAYER_L1].hits = 100 * (uint64_t)i;
		CHECK(!model_feed(m, s, t0 + ts[i]));
	}
	CHECK_NEAR(model_layer(m, HC_LAYER_L1, W_1S).hits, 200 / 1.998);
	model_free(m);
	free(s);
}

static void test_ratio(void)
{
	struct model *m = model_new();
	REQUIRE(m);
	struct hc_stats *s = snap_new(7);
	/* the first sample's counters are not in any window */
	s->layer[HC_LAYER_L1].hits = 5;
	s->layer[HC_LAYER_L1].misses = 500;
	s->layer[HC_LAYER_L2].misses = 500;
	CHECK(!model_feed(m, s, 0));
	uint64_t t = 0;
	struct {
		uint64_t l1_hits, l1_misses, l2_hits, l2_misses;
		bool l1_below, l2_below;
	} cases[] = {
		{90, 10, 80, 20, false, false}, /* exactly at the targets */
		{89, 11, 79, 21, true, true},	/* just under */
		{91, 9, 81, 19, false, false},	/* just over */
		{899, 101, 799, 201, true, true}, {900, 100, 800, 200, false, false},
		{0, 10, 0, 5, true, true}, /* all misses */
		{10, 0, 5, 0, false, false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		s->layer[HC_LAYER_L1].hits += cases[i].l1_hits;
		s->layer[HC_LAYER_L1].misses += cases[i].l1_misses;
		s->layer[HC_LAYER_L2].hits += cases[i].l2_hits;
		s->layer[HC_LAYER_L2].misses += cases[i].l2_misses;
		t += 1000;
		CHECK(!model_feed(m, s, t));
		struct model_rates l1 = model_layer(m, HC_LAYER_L1, W_1S);
		struct model_rates l2 = model_layer(m, HC_LAYER_L2, W_1S);
		CHECK_NEAR(l1.hit_ratio, (double)cases[i].l1_hits /
						 (double)(cases[i].l1_hits + cases[i].l1_misses));
		CHECK_NEAR(l2.hit_ratio, (double)cases[i].l2_hits /
						 (double)(cases[i].l2_hits + cases[i].l2_misses));
		CHECK_NEAR(l1.requests, (double)(cases[i].l1_hits + cases[i].l1_misses));
		if (l1.below_target != cases[i].l1_below || l2.below_target != cases[i].l2_below) {
			fprintf(stderr, "case %zu: below l1 %d l2 %d\n", i, l1.below_target,
				l2.below_target);
			tu_failures++;
		}
	}

	/* stale and negative hits are already in hits: they do not add requests */
	s->layer[HC_LAYER_L1].hits += 95;
	s->layer[HC_LAYER_L1].stale_hits += 40;
	s->layer[HC_LAYER_L1].negative_hits += 10;
	s->layer[HC_LAYER_L1].misses += 5;
	t += 1000;
	CHECK(!model_feed(m, s, t));
	struct model_rates l1 = model_layer(m, HC_LAYER_L1, W_1S);
	CHECK_NEAR(l1.requests, 100);
	CHECK_NEAR(l1.hits, 95);
	CHECK_NEAR(l1.hit_ratio, 0.95);
	CHECK(!l1.below_target);

	/* origin: hits = loaded, misses = not found, errors apart; never below target */
	s->layer[HC_LAYER_ORIGIN].hits += 1;
	s->layer[HC_LAYER_ORIGIN].misses += 9;
	s->layer[HC_LAYER_ORIGIN].errors += 4;
	s->layer[HC_LAYER_L1].sets += 20;
	s->layer[HC_LAYER_L1].expirations += 6;
	t += 2000; /* two seconds: rates halve */
	CHECK(!model_feed(m, s, t));
	struct model_rates o = model_layer(m, HC_LAYER_ORIGIN, W_1S);
	CHECK_NEAR(o.hit_ratio, 0.1);
	CHECK_NEAR(o.requests, 5);
	CHECK_NEAR(o.errors, 2);
	CHECK(!o.below_target);
	/* no L1 or L2 requests in this window: no ratio, no flag */
	l1 = model_layer(m, HC_LAYER_L1, W_1S);
	CHECK(l1.hit_ratio < 0 && !l1.below_target && l1.requests == 0);
	CHECK_NEAR(l1.sets, 10);
	CHECK_NEAR(l1.expirations, 3);
	struct model_rates l2 = model_layer(m, HC_LAYER_L2, W_1S);
	CHECK(l2.hit_ratio < 0 && !l2.below_target);
	/* over 10 s the ratio covers the earlier requests too */
	l1 = model_layer(m, HC_LAYER_L1, W_10S);
	CHECK(l1.hit_ratio > 0 && l1.hit_ratio < 1);
	model_free(m);
	free(s);
}

static void test_entities(void)
{
	struct model *m = model_new();
	REQUIRE(m);
	struct hc_stats *s = snap_new(9);
	ent(s, "user")->layer[HC_LAYER_L1].hits = 100;
	ent(s, "user")->layer[HC_LAYER_L1].misses = 100;
	ent(s, "product")->layer[HC_LAYER_L1].hits = 1000;
	ent(s, "")->layer[HC_LAYER_L1].hits = 3;
	CHECK(!model_feed(m, s, 0));

	/* the next snapshot lists them in another order, with a new one first */
	struct hc_stats *s2 = snap_new(9);
	struct hc_entity_stats *e;
	e = ent(s2, "order"); /* new: counts from zero */
	e->layer[HC_LAYER_L1].hits = 40;
	e->layer[HC_LAYER_L1].misses = 60;
	e->load.loads = 60;
	e->load.load_hist[2] = 60;
	e = ent(s2, "product"); /* +180 hits, +20 misses */
	e->layer[HC_LAYER_L1].hits = 1180;
	e->layer[HC_LAYER_L1].misses = 20;
	e->layer[HC_LAYER_L2].hits = 15;
	e->layer[HC_LAYER_L2].misses = 5;
	e->load.loads = 5;
	e->load.load_hist[0] = 5;
	e = ent(s2, "user"); /* +100 hits, +0 misses */
	e->layer[HC_LAYER_L1].hits = 200;
	e->layer[HC_LAYER_L1].misses = 100;
	e->load.loads = 10;
	e = ent(s2, ""); /* no requests in the window */
	e->layer[HC_LAYER_L1].hits = 3;
	CHECK(!model_feed(m, s2, 2000));

	struct model_entity rows[8];
	int n = model_entities(m, W_10S, SORT_NAME, rows, 8);
	REQUIRE(n == 4);
	CHECK(strcmp(rows[0].name, "") == 0 && strcmp(rows[1].name, "order") == 0);
	CHECK(strcmp(rows[2].name, "product") == 0 && strcmp(rows[3].name, "user") == 0);
	/* over 2 s */
	CHECK(rows[0].layer[HC_LAYER_L1].requests == 0 && rows[0].layer[HC_LAYER_L1].hit_ratio < 0);
	CHECK_NEAR(rows[1].layer[HC_LAYER_L1].requests, 50);
	CHECK_NEAR(rows[1].layer[HC_LAYER_L1].hit_ratio, 0.4);
	CHECK(rows[1].layer[HC_LAYER_L1].below_target);
	CHECK_NEAR(rows[1].load.loads, 30);
	CHECK_NEAR(rows[1].load.load_p50_us, 256);
	CHECK_NEAR(rows[2].layer[HC_LAYER_L1].requests, 100);
	CHECK_NEAR(rows[2].layer[HC_LAYER_L1].hit_ratio, 0.9);
	CHECK(!rows[2].layer[HC_LAYER_L1].below_target);
	CHECK_NEAR(rows[2].layer[HC_LAYER_L2].hit_ratio, 0.75);
	CHECK(rows[2].layer[HC_LAYER_L2].below_target);
	CHECK_NEAR(rows[2].load.load_p99_us, 64);
	CHECK_NEAR(rows[3].layer[HC_LAYER_L1].requests, 50);
	CHECK_NEAR(rows[3].layer[HC_LAYER_L1].hit_ratio, 1.0);
	CHECK(rows[3].load.load_p50_us < 0); /* loads counted, histogram empty */

	/* L1 requests descending; ties by name */
	n = model_entities(m, W_10S, SORT_REQUESTS, rows, 8);
	REQUIRE(n == 4);
	CHECK(strcmp(rows[0].name, "product") == 0 && strcmp(rows[1].name, "order") == 0);
	CHECK(strcmp(rows[2].name, "user") == 0 && strcmp(rows[3].name, "") == 0);
	/* L1 ratio ascending, no ratio last */
	n = model_entities(m, W_10S, SORT_RATIO, rows, 8);
	REQUIRE(n == 4);
	CHECK(strcmp(rows[0].name, "order") == 0 && strcmp(rows[1].name, "product") == 0);
	CHECK(strcmp(rows[2].name, "user") == 0 && strcmp(rows[3].name, "") == 0);
	/* loads descending; ties by name */
	n = model_entities(m, W_10S, SORT_LOADS, rows, 8);
	REQUIRE(n == 4);
	CHECK(strcmp(rows[0].name, "order") == 0 && strcmp(rows[1].name, "user") == 0);
	CHECK(strcmp(rows[2].name, "product") == 0 && strcmp(rows[3].name, "") == 0);
	/* at most max rows: the first ones of the order */
	n = model_entities(m, W_10S, SORT_REQUESTS, rows, 2);
	CHECK(n == 2 && strcmp(rows[0].name, "product") == 0 && strcmp(rows[1].name, "order") == 0);

	/* the order changes again; windows still match by name */
	struct hc_stats *s3 = snap_new(9);
	const char *order[] = {"user", "", "product", "order"};
	for (int i = 0; i < 4; i++)
		*ent(s3, order[i]) = *ent(s2, order[i]);
	ent(s3, "user")->layer[HC_LAYER_L1].misses += 30;
	CHECK(!model_feed(m, s3, 3000));
	n = model_entities(m, W_1S, SORT_NAME, rows, 8);
	REQUIRE(n == 4);
	CHECK(rows[0].layer[HC_LAYER_L1].requests == 0 && rows[1].layer[HC_LAYER_L1].requests == 0);
	CHECK(rows[2].layer[HC_LAYER_L1].requests == 0);
	CHECK_NEAR(rows[3].layer[HC_LAYER_L1].requests, 30);
	CHECK_NEAR(rows[3].layer[HC_LAYER_L1].hit_ratio, 0);
	n = model_entities(m, W_START, SORT_NAME, rows, 8);
	REQUIRE(n == 4);
	CHECK_NEAR(rows[1].layer[HC_LAYER_L1].requests, 100 / 3.0); /* order, from zero */
	CHECK_NEAR(rows[3].layer[HC_LAYER_L1].requests, 130 / 3.0); /* user */

	/* more names than a segment can hold since the start: the model restarts */
	struct hc_stats *big = snap_new(9);
	for (uint32_t i = 0; i < HC_MAX_ENTITIES; i++) {
		char name[16];
		snprintf(name, sizeof(name), "e%u", i);
		ent(big, name);
	}
	CHECK(model_feed(m, big, 4000));
	CHECK(model_samples(m) == 1);
	struct model_entity *all = calloc(HC_MAX_ENTITIES, sizeof(*all));
	REQUIRE(all);
	CHECK(model_entities(m, W_10S, SORT_NAME, all, HC_MAX_ENTITIES) == HC_MAX_ENTITIES);
	free(all);
	free(big);
	free(s3);
	free(s2);
	free(s);
	model_free(m);
}

static void test_load(void)
{
	struct model *m = model_new();
	REQUIRE(m);
	struct hc_stats *s = snap_new(11);
	/* the histogram already holds slow loads: they are not in the window */
	s->load.load_hist[HC_HIST_N - 1] = 1000;
	s->load.load_hist[5] = 77;
	s->load.loads = 1077;
	CHECK(!model_feed(m, s, 0));

	/* 100 loads in 1 s: 50 under 64 us, 49 in bucket 3 (to 512 us), 1 very slow */
	s->load.loads += 100;
	s->load.load_errors += 3;
	s->load.leaders += 90;
	s->load.coalesced += 40;
	s->load.takeovers += 1;
	s->load.lease_expiries += 2;
	s->load.early_refreshes += 5;
	s->load.stale_refreshes += 6;
	s->load.stale_served += 8;
	s->load.load_hist[0] += 50;
	s->load.load_hist[3] += 49;
	s->load.load_hist[HC_HIST_N - 1] += 1;
	CHECK(!model_feed(m, s, 1000));
	struct model_load_rates l = model_load(m, W_1S);
	CHECK_NEAR(l.loads, 100);
	CHECK_NEAR(l.load_errors, 3);
	CHECK_NEAR(l.leaders, 90);
	CHECK_NEAR(l.coalesced, 40);
	CHECK_NEAR(l.takeovers, 1);
	CHECK_NEAR(l.lease_expiries, 2);
	CHECK_NEAR(l.early_refreshes, 5);
	CHECK_NEAR(l.stale_refreshes, 6);
	CHECK_NEAR(l.stale_served, 8);
	CHECK_NEAR(l.load_p50_us, 64);
	CHECK_NEAR(l.load_p99_us, 512);

	/* 100 more over 2 s, 2 of them in the open last bucket: p99 lands there */
	s->load.loads += 100;
	s->load.load_hist[0] += 50;
	s->load.load_hist[3] += 48;
	s->load.load_hist[HC_HIST_N - 1] += 2;
	CHECK(!model_feed(m, s, 3000));
	l = model_load(m, W_1S);
	CHECK_NEAR(l.loads, 50);
	CHECK_NEAR(l.load_p50_us, 64);
	CHECK_NEAR(l.load_p99_us, 2.0 * (double)HC_HIST_BOUND_US(HC_HIST_N - 2));
	/* since start: 200 loads, 197 up to 512 us: rank 198 is a slow one */
	l = model_load(m, W_START);
	CHECK_NEAR(l.loads, 200 / 3.0);
	CHECK_NEAR(l.load_p50_us, 64);
	CHECK_NEAR(l.load_p99_us, (double)HC_HIST_BOUND_US(HC_HIST_N - 1));

	/* a single load: both percentiles are its bucket */
	s->load.loads += 1;
	s->load.load_hist[7] += 1;
	CHECK(!model_feed(m, s, 4000));
	l = model_load(m, W_1S);
	CHECK_NEAR(l.load_p50_us, (double)HC_HIST_BOUND_US(7));
	CHECK_NEAR(l.load_p99_us, (double)HC_HIST_BOUND_US(7));

	/* no loads in the window */
	CHECK(!model_feed(m, s, 5000));
	l = model_load(m, W_1S);
	CHECK(l.loads == 0 && l.load_p50_us < 0 && l.load_p99_us < 0);
	model_free(m);
	free(s);
}

static void test_reset(void)
{
	struct model *m = model_new();
	REQUIRE(m);
	struct hc_stats *s = snap_new(100);
	uint64_t t = 0;
	for (int k = 0; k < 5; k++) {
		s->layer[HC_LAYER_L1].hits += 1000;
		s->load.loads += 10;
		CHECK(!model_feed(m, s, t += 1000));
	}
	CHECK(model_samples(m) == 5);

	/* a layer counter goes down: the history restarts with this sample */
	s->layer[HC_LAYER_L1].hits = 10;
	CHECK(model_feed(m, s, t += 1000));
	CHECK(model_samples(m) == 1 && model_span_ms(m) == 0);
	CHECK(model_layer(m, HC_LAYER_L1, W_START).hit_ratio < 0);
	s->layer[HC_LAYER_L1].hits = 20;
	CHECK(!model_feed(m, s, t += 1000));
	/* no window reaches back past the restart */
	CHECK_NEAR(model_layer(m, HC_LAYER_L1, W_60S).hits, 10);
	CHECK_NEAR(model_layer(m, HC_LAYER_L1, W_START).hits, 10);
	CHECK_NEAR(model_load(m, W_START).loads, 0);

	/* another layer's rarely moving counter, a load counter, a histogram bucket */
	s->layer[HC_LAYER_ORIGIN].errors = 5;
	CHECK(!model_feed(m, s, t += 1000));
	s->layer[HC_LAYER_ORIGIN].errors = 4;
	CHECK(model_feed(m, s, t += 1000));
	s->load.stale_served = 3;
	CHECK(!model_feed(m, s, t += 1000));
	s->load.stale_served = 0;
	CHECK(model_feed(m, s, t += 1000));
	s->load.load_hist[9] = 3;
	CHECK(!model_feed(m, s, t += 1000));
	s->load.load_hist[9] = 2;
	CHECK(model_feed(m, s, t += 1000));
	CHECK(model_samples(m) == 1);

	/* another segment (same counters, new creation time) */
	CHECK(!model_feed(m, s, t += 1000));
	CHECK(model_samples(m) == 2);
	s->created_unix_ms = 200;
	s->layer[HC_LAYER_L1].hits += 500; /* would be a rate, but it is another segment */
	CHECK(model_feed(m, s, t += 1000));
	CHECK(model_samples(m) == 1);
	CHECK(model_latest(m)->created_unix_ms == 200);
	CHECK(model_layer(m, HC_LAYER_L1, W_1S).hits == 0);
	/* an entity counter going down alone does not restart (not a total); it reads 0 */
	ent(s, "x")->layer[HC_LAYER_L1].hits = 50;
	CHECK(!model_feed(m, s, t += 1000));
	ent(s, "x")->layer[HC_LAYER_L1].hits = 40;
	CHECK(!model_feed(m, s, t += 1000));
	struct model_entity row;
	CHECK(model_entities(m, W_1S, SORT_NAME, &row, 1) == 1);
	CHECK(row.layer[HC_LAYER_L1].hits == 0);
	/* a clock going back (a misuse of the API) restarts rather than underflow */
	CHECK(model_feed(m, s, t - 5000));
	CHECK(model_samples(m) == 1);
	/* a sample within 100 ms that resets replaces nothing: it restarts */
	s->layer[HC_LAYER_L1].hits += 10;
	CHECK(!model_feed(m, s, t += 1000));
	s->layer[HC_LAYER_L1].hits -= 5;
	CHECK(model_feed(m, s, t + 10));
	CHECK(model_samples(m) == 1);
	model_free(m);
	free(s);
}

static void test_history(void)
{
	struct model *m = model_new();
	REQUIRE(m);
	struct hc_stats *s = snap_new(5);
	/* per interval: (hits, misses) */
	const uint64_t iv[][2] = {{9, 1}, {0, 0}, {1, 3}, {50, 50}, {8, 0}};
	CHECK(!model_feed(m, s, 0));
	for (int i = 0; i < 5; i++) {
		s->layer[HC_LAYER_L2].hits += iv[i][0];
		s->layer[HC_LAYER_L2].misses += iv[i][1];
		s->layer[HC_LAYER_L1].hits += 1;
		CHECK(!model_feed(m, s, 1000 * (uint64_t)(i + 1)));
	}
	double h[10];
	CHECK(model_history(m, HC_LAYER_L2, h, 10) == 5);
	CHECK_NEAR(h[0], 0.9);
	CHECK(h[1] < 0);
	CHECK_NEAR(h[2], 0.25);
	CHECK_NEAR(h[3], 0.5);
	CHECK_NEAR(h[4], 1.0);
	/* fewer asked: the newest ones, oldest first */
	CHECK(model_history(m, HC_LAYER_L2, h, 2) == 2);
	CHECK_NEAR(h[0], 0.5);
	CHECK_NEAR(h[1], 1.0);
	CHECK(model_history(m, HC_LAYER_L1, h, 3) == 3);
	CHECK_NEAR(h[0], 1.0);
	CHECK_NEAR(h[2], 1.0);
	/* a full ring: MODEL_HISTORY - 1 intervals */
	for (uint64_t k = 6; k < 200; k++) {
		s->layer[HC_LAYER_L1].hits += 1;
		s->layer[HC_LAYER_L1].misses += k % 2;
		CHECK(!model_feed(m, s, 1000 * k));
	}
	double full[MODEL_HISTORY + 5];
	CHECK(model_history(m, HC_LAYER_L1, full, MODEL_HISTORY + 5) == MODEL_HISTORY - 1);
	/* the newest interval (sample 199) had a miss, the one before not */
	CHECK_NEAR(full[MODEL_HISTORY - 2], 0.5);
	CHECK_NEAR(full[MODEL_HISTORY - 3], 1.0);
	model_free(m);
	free(s);
}

static void test_latest(void)
{
	struct model *m = model_new();
	REQUIRE(m);
	struct hc_stats *s = snap_new(3);
	s->items = 10;
	s->bytes = 1234;
	s->agent.pid = 99;
	CHECK(!model_feed(m, s, 100));
	const struct hc_stats *l = model_latest(m);
	REQUIRE(l);
	CHECK(l != s && l->items == 10 && l->bytes == 1234 && l->agent.pid == 99);
	/* a copy: the caller may reuse its buffer */
	s->items = 11;
	CHECK(model_latest(m)->items == 10);
	/* a replacing sample is the latest too */
	CHECK(!model_feed(m, s, 150));
	CHECK(model_latest(m)->items == 11 && model_samples(m) == 1);
	s->items = 12;
	CHECK(!model_feed(m, s, 1150));
	CHECK(model_latest(m)->items == 12 && model_samples(m) == 2);
	model_free(m);
	free(s);
}

int main(void)
{
	test_names();
	test_empty();
	test_windows();
	test_ratio();
	test_entities();
	test_load();
	test_reset();
	test_history();
	test_latest();
	return tu_done("test_model");
}
