/*
 * top.c - hostcache-top: a live screen of a segment's statistics, in the
 * spirit of varnishstat and htop.
 *
 * The program is a view and nothing more.  Every interval it takes an
 * hc_stats() snapshot through a read-only handle (so it works whether or
 * not the agent runs, and cannot disturb the workers), feeds it to the
 * model (model.c), and shows what the model computes: rates, hit ratios
 * over 1 s / 10 s / 60 s / since start, the per-entity table, the L1 hit
 * ratio of each recent interval.  No rate or ratio is computed here, so the
 * screen, the batch output and the HTTP dashboard cannot disagree.
 *
 * Drawing goes through one intermediate form: a frame of text lines in
 * which every byte carries a tone (plain, title, heading, warning, good,
 * dim).  The panels are built into a frame once per redraw; the curses view
 * lays the frame out on the screen, dropping the least useful panels (and,
 * in tables, the least useful columns) when the terminal is small, and maps
 * tones to colours; the batch mode (--once, --iterations N) prints the same
 * frame as plain text, which is what CI checks.  Warnings never rely on
 * colour alone: a value below its target carries a "!" and the layer's row
 * says "below target".
 *
 * Pausing freezes a copy of everything drawn (struct view) while sampling
 * goes on, so the windows are right again the moment the display resumes.
 * The view holds the entity table in every sort order, so changing the
 * order of a frozen table shows the same frozen numbers.
 *
 * Signals: SIGINT, SIGTERM and SIGHUP set a flag that the loops check at
 * least every 250 ms; the terminal is restored by endwin() on the way out
 * (and from atexit, should anything call exit()).  SIGWINCH is left to
 * ncurses, which reports it as KEY_RESIZE.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <langinfo.h>
#include <limits.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curses.h>

#include "hostcache.h"
#include "http.h"
#include "model.h"

enum { TOP_EXIT_OK = 0, TOP_EXIT_FAIL = 1, TOP_EXIT_USAGE = 2 };

#define INTERVAL_MIN_MS 100 /* the model merges samples closer than this */
#define INTERVAL_MAX_MS 3600000
#define KEY_WAIT_MAX_MS 250 /* how long a signal can go unnoticed */
#define MIN_COLS 32	    /* below this the screen says "terminal too small" */
#define MIN_ROWS 6	    /* title, layer table (4), footer */
#define LINE_BYTES 768	    /* a frame line; wider terminals are drawn up to it */
#define FRAME_LINES (24 + (int)HC_MAX_ENTITIES)
#define TOP_CLASSES 6 /* size classes listed in the memory panel */

/* ---- frames: lines of text with a tone per byte ---- */

enum tone { TONE_PLAIN, TONE_TITLE, TONE_HEAD, TONE_WARN, TONE_GOOD, TONE_DIM };

struct line {
	int len; /* bytes */
	char text[LINE_BYTES];
	unsigned char tone[LINE_BYTES];
};

/* The panels, in the order they are built (and shown). */
enum section {
	SEC_TITLE,
	SEC_STATUS,
	SEC_LAYERS,
	SEC_SPARK,
	SEC_LOADING,
	SEC_MEMORY,
	SEC_ENTITIES, /* title, column heading, then one line per entity */
	SEC_FOOTER,
	SEC_COUNT
};

struct frame {
	int n;
	struct {
		int first, count;
	} sec[SEC_COUNT];
	struct line lines[FRAME_LINES];
};

/* ---- what is shown: a copy, so that a paused display stays frozen ---- */

struct view {
	bool valid;
	uint64_t wall_ms; /* CLOCK_REALTIME of the snapshot */
	struct model_rates layer[HC_LAYER_COUNT][W_COUNT];
	struct model_load_rates load; /* W_10S */
	int nent;
	struct model_entity ent[SORT_COUNT][HC_MAX_ENTITIES]; /* W_10S, in each order */
	int nhist;
	double hist[MODEL_HISTORY]; /* L1 hit ratio per interval, oldest first */
	struct hc_stats stats;	    /* the newest snapshot: the gauges */
};

struct top {
	/* options */
	char env_token[512]; /* HOSTCACHE_DASH_TOKEN, taken out of the environment */
	const char *name;
	uint32_t interval_ms;
	long iterations; /* batch mode: intervals to print; -1: the screen */
	const char *http_addr;
	const char *token_file;
	/* resources */
	struct hc_cache *cache;
	struct model *model;
	struct hc_stats *snap;
	struct dash_http *http;
	int http_port;
	struct view *view;
	struct frame *frame;
	bool utf8;
	/* the screen */
	bool colors, paused, help;
	enum model_sort sort;
	int scroll; /* first entity row shown */
	int page;   /* entity rows shown by the last draw */
};

static volatile sig_atomic_t stop;
static SCREEN *screen;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static uint64_t clock_ms(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Sleep until CLOCK_MONOTONIC reaches @deadline_ms, or a stop signal. */
static void sleep_until(uint64_t deadline_ms)
{
	struct timespec ts = {.tv_sec = (time_t)(deadline_ms / 1000),
			      .tv_nsec = (long)(deadline_ms % 1000) * 1000000};
	while (!stop && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* Display columns of @len bytes of UTF-8: every byte but continuation bytes. */
static int text_width(const char *s, int len)
{
	int w = 0;
	for (int i = 0; i < len; i++)
		w += ((unsigned char)s[i] & 0xc0) != 0x80;
	return w;
}

static void putv(struct line *l, enum tone tone, const char *fmt, va_list ap)
{
	int room = LINE_BYTES - l->len;
	if (room <= 1)
		return;
	int n = vsnprintf(l->text + l->len, (size_t)room, fmt, ap);
	if (n < 0)
		return;
	if (n >= room) {
		n = room - 1;
		/* never keep the first bytes of a character that was cut */
		while (n > 0 && ((unsigned char)l->text[l->len + n] & 0xc0) == 0x80)
			n--;
	}
	memset(l->tone + l->len, tone, (size_t)n);
	l->len += n;
}

__attribute__((format(printf, 3, 4))) static void put(struct line *l, enum tone tone,
						      const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	putv(l, tone, fmt, ap);
	va_end(ap);
}

/* Spaces up to display column @col. */
static void pad_to(struct line *l, enum tone tone, int col)
{
	int w = text_width(l->text, l->len);
	if (col > w)
		put(l, tone, "%*s", col - w, "");
}

static struct line *new_line(struct frame *f)
{
	static struct line spill; /* a full frame drops further lines */
	struct line *l = f->n < FRAME_LINES ? &f->lines[f->n++] : &spill;
	l->len = 0;
	return l;
}

static void sec_begin(struct frame *f, enum section s)
{
	f->sec[s].first = f->n;
}

static void sec_end(struct frame *f, enum section s)
{
	f->sec[s].count = f->n - f->sec[s].first;
}

/* ---- number formatting ---- */

/* A few rotating buffers, so several numbers can go into one put(). */
static char *tmpbuf(void)
{
	static char bufs[16][40];
	static unsigned next;
	return bufs[next++ % 16];
}

static const char *fmt_rate(double v)
{
	char *b = tmpbuf();
	if (!(v >= 0.05))
		snprintf(b, 40, "0");
	else if (v < 1e3)
		snprintf(b, 40, "%.1f", v);
	else if (v < 1e6)
		snprintf(b, 40, "%.1fk", v / 1e3);
	else if (v < 1e9)
		snprintf(b, 40, "%.1fM", v / 1e6);
	else
		snprintf(b, 40, "%.1fG", v / 1e9);
	return b;
}

static const char *fmt_bytes(uint64_t v)
{
	static const char *const unit[] = {"KiB", "MiB", "GiB", "TiB"};
	char *b = tmpbuf();
	if (v < 1024) {
		snprintf(b, 40, "%" PRIu64 " B", v);
		return b;
	}
	double x = (double)v / 1024;
	int u = 0;
	while (x >= 1024 && u < 3) {
		x /= 1024;
		u++;
	}
	snprintf(b, 40, "%.1f %s", x, unit[u]);
	return b;
}

static const char *fmt_us(double us)
{
	char *b = tmpbuf();
	if (us < 0)
		snprintf(b, 40, "-");
	else if (us < 1000)
		snprintf(b, 40, "%.0fus", us);
	else if (us < 1e6)
		snprintf(b, 40, "%.1fms", us / 1e3);
	else
		snprintf(b, 40, "%.2fs", us / 1e6);
	return b;
}

static const char *fmt_age(uint64_t ms)
{
	char *b = tmpbuf();
	uint64_t s = ms / 1000;
	if (s < 60)
		snprintf(b, 40, "%" PRIu64 "s", s);
	else if (s < 3600)
		snprintf(b, 40, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
	else if (s < 86400)
		snprintf(b, 40, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s / 60 % 60);
	else
		snprintf(b, 40, "%" PRIu64 "d%02" PRIu64 "h", s / 86400, s / 3600 % 24);
	return b;
}

/* A hit ratio: "-" without requests, a "!" in front when below target. */
static const char *fmt_ratio(const struct model_rates *r, enum tone *tone)
{
	char *b = tmpbuf();
	*tone = TONE_PLAIN;
	if (r->hit_ratio < 0) {
		*tone = TONE_DIM;
		snprintf(b, 40, "-");
	} else if (r->below_target) {
		*tone = TONE_WARN;
		snprintf(b, 40, "!%.1f%%", r->hit_ratio * 100);
	} else {
		snprintf(b, 40, "%.1f%%", r->hit_ratio * 100);
	}
	return b;
}

/* Entity names are bytes from keys: show printable ASCII, '?' for the rest. */
static const char *entity_label(const char *name)
{
	char *b = tmpbuf();
	size_t j = 0;
	if (!name[0])
		return "(no prefix)";
	for (size_t i = 0; i < HC_ENTITY_NAME_MAX && name[i] && j + 1 < 40; i++) {
		unsigned char ch = (unsigned char)name[i];
		b[j++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	b[j] = '\0';
	return b;
}

/* ---- tables whose columns give way on narrow terminals ---- */

struct column {
	const char *head;
	int width; /* display columns, the separating space included */
	int prio;  /* columns are kept in increasing prio while they fit */
	bool left; /* left-aligned (names); cut to fit, with a '~' */
};

#define NCOLS_MAX 12

static void fit_columns(const struct column *c, int n, int width, bool *shown)
{
	int used = c[0].width, maxprio = 0;
	for (int i = 0; i < n; i++) {
		shown[i] = i == 0; /* the row's name, always */
		if (c[i].prio > maxprio)
			maxprio = c[i].prio;
	}
	for (int p = 0; p <= maxprio; p++)
		for (int i = 1; i < n; i++)
			if (c[i].prio == p && used + c[i].width <= width) {
				shown[i] = true;
				used += c[i].width;
			}
}

static void put_cell(struct line *l, const struct column *c, enum tone tone, const char *text)
{
	int w = text_width(text, (int)strlen(text));
	if (c->left) {
		if (w > c->width - 1)
			put(l, tone, "%.*s~", c->width - 2, text); /* labels are ASCII */
		else
			put(l, tone, "%s%*s", text, c->width - w, "");
	} else {
		put(l, TONE_PLAIN, "%*s", w < c->width ? c->width - w : 1, "");
		put(l, tone, "%s", text);
	}
}

static void put_heading(struct line *l, const struct column *c, int n, const bool *shown)
{
	for (int i = 0; i < n; i++)
		if (shown[i])
			put_cell(l, &c[i], TONE_HEAD, c[i].head);
}

/* ---- the panels ---- */

static const char *const layer_label[HC_LAYER_COUNT] = {"L1 shm", "L2 redis", "origin"};

static const char *redis_state_name(uint32_t st)
{
	return st == HC_REDIS_UP ? "up" : st == HC_REDIS_DOWN ? "DOWN" : "unknown";
}

static void build_title(const struct top *t, struct frame *f, int width, bool batch)
{
	const struct view *v = t->view;
	const struct hc_stats *s = &v->stats;
	struct line *l = new_line(f);
	char clock[16] = "";
	time_t secs = (time_t)(v->wall_ms / 1000);
	struct tm tm;
	if (localtime_r(&secs, &tm))
		strftime(clock, sizeof(clock), "%H:%M:%S", &tm);
	uint64_t age = v->wall_ms > s->created_unix_ms ? v->wall_ms - s->created_unix_ms : 0;
	put(l, TONE_TITLE, "hostcache-top  %s  %s  up %s  %s", t->name, fmt_bytes(s->segment_size),
	    fmt_age(age), clock);
	if (t->paused)
		put(l, TONE_TITLE, "  PAUSED");
	if (!batch)
		pad_to(l, TONE_TITLE, width);
}

static void build_status(const struct top *t, struct frame *f)
{
	const struct hc_stats *s = &t->view->stats;
	const struct hc_agent_stats *a = &s->agent;
	struct line *l = new_line(f);
	if (!a->pid) {
		put(l, TONE_DIM, "agent none (L1 and origin only)");
	} else {
		put(l, TONE_PLAIN, "agent pid %" PRId32 " ", a->pid);
		if (a->alive)
			put(l, TONE_GOOD, "alive");
		else
			put(l, TONE_WARN, "! NOT ALIVE (heartbeat %" PRId64 " ms ago)",
			    a->heartbeat_age_ms);
		put(l, TONE_PLAIN, ", redis ");
		put(l, a->redis_state == HC_REDIS_UP ? TONE_GOOD : TONE_WARN, "%s",
		    redis_state_name(a->redis_state));
	}
	put(l, TONE_PLAIN, "  ring %" PRIu64 "/%" PRIu32 " queued", a->ring_depth, a->ring_size);
	if (a->ring_drops)
		put(l, TONE_WARN, " (%" PRIu64 " dropped)", a->ring_drops);
	put(l, TONE_PLAIN, "  threads %" PRIu32 "  flights %" PRIu32 "/%" PRIu32, s->threads_active,
	    s->flights_active, s->flights_total);
	if (t->http)
		put(l, TONE_PLAIN, "  http :%d", t->http_port);
}

static const struct column layer_cols[] = {
	{"layer", 9, 0, true},	   {"req/s", 8, 1, false},	{"hits/s", 8, 6, false},
	{"misses/s", 9, 7, false}, {"hit 1s", 8, 4, false},	{"hit 10s", 8, 2, false},
	{"hit 60s", 8, 5, false},  {"hit start", 10, 3, false}, {"target", 7, 8, false},
};
#define VERDICT_LONG 20 /* "  ! below target 90%" */
#define VERDICT_SHORT 6 /* " !<90%" */
#define NLAYER_COLS ((int)(sizeof(layer_cols) / sizeof(layer_cols[0])))

static void build_layers(const struct top *t, struct frame *f, int width)
{
	const struct view *v = t->view;
	bool shown[NCOLS_MAX];
	/* room for the verdict's short form at least */
	fit_columns(layer_cols, NLAYER_COLS, width - VERDICT_SHORT, shown);
	put_heading(new_line(f), layer_cols, NLAYER_COLS, shown);
	for (int ly = 0; ly < HC_LAYER_COUNT; ly++) {
		const struct model_rates *r = v->layer[ly];
		struct line *l = new_line(f);
		double target = ly == HC_LAYER_L1   ? MODEL_TARGET_L1
				: ly == HC_LAYER_L2 ? MODEL_TARGET_L2
						    : -1;
		for (int c = 0; c < NLAYER_COLS; c++) {
			enum tone tone = TONE_PLAIN;
			const char *text;
			if (!shown[c])
				continue;
			switch (c) {
			case 0:
				text = layer_label[ly];
				break;
			case 1:
				text = fmt_rate(r[W_1S].requests);
				break;
			case 2:
				text = fmt_rate(r[W_1S].hits);
				break;
			case 3:
				text = fmt_rate(r[W_1S].misses);
				break;
			case 4:
			case 5:
			case 6:
			case 7:
				text = fmt_ratio(&r[W_1S + (c - 4)], &tone);
				break;
			default: {
				char *b = tmpbuf();
				snprintf(b, 40, "%s%.0f%%",
					 t->utf8 ? "\u2265" : ">=", target * 100);
				text = target < 0 ? "-" : b;
				break;
			}
			}
			put_cell(l, &layer_cols[c], tone, text);
		}
		/* the verdict, on the 10 s window: steady enough to act on */
		if (target < 0)
			continue;
		bool roomy = width - text_width(l->text, l->len) >= VERDICT_LONG;
		if (r[W_10S].hit_ratio < 0)
			put(l, TONE_DIM, "  %s", roomy ? "no requests" : "-");
		else if (r[W_10S].below_target && roomy)
			put(l, TONE_WARN, "  ! below target %.0f%%", target * 100);
		else if (r[W_10S].below_target)
			put(l, TONE_WARN, " !<%.0f%%", target * 100);
		else
			put(l, TONE_GOOD, "  ok");
	}
}

static void build_spark(const struct top *t, struct frame *f, int width, bool batch)
{
	static const char *const blocks[8] = {
		"\u2581", "\u2582", "\u2583", "\u2584", "\u2585", "\u2586", "\u2587", "\u2588",
	};
	static const char ascii[8] = {'_', '.', ',', '-', '~', '=', '*', '#'};
	const struct view *v = t->view;
	struct line *l = new_line(f);
	const char *prefix = "L1 hit ratio per interval ";
	put(l, TONE_HEAD, "%s", prefix);
	if (v->nhist == 0) {
		put(l, TONE_DIM, "(needs two samples)");
		return;
	}
	/* scale from below the lowest ratio seen (in steps of 10 %) to 100 % */
	double lo = 1;
	for (int i = 0; i < v->nhist; i++)
		if (v->hist[i] >= 0 && v->hist[i] < lo)
			lo = v->hist[i];
	lo = (double)(int)(lo * 10 - 1e-9) / 10;
	if (lo > 0.8)
		lo = 0.8;
	if (lo < 0)
		lo = 0;
	char suffix[48];
	snprintf(suffix, sizeof(suffix), "  scale %.0f-100%%", lo * 100);
	int room = batch ? v->nhist : width - (int)strlen(prefix) - (int)strlen(suffix);
	if (room < 4) /* no room for a curve worth the name */
		room = width - (int)strlen(prefix);
	int n = room < v->nhist ? room : v->nhist;
	if (n < 1)
		return;
	for (int i = v->nhist - n; i < v->nhist; i++) {
		double r = v->hist[i];
		if (r < 0) {
			put(l, TONE_DIM, " ");
			continue;
		}
		int k = (int)((r - lo) / (1 - lo) * 7 + 0.5);
		k = k < 0 ? 0 : k > 7 ? 7 : k;
		enum tone tone = r < MODEL_TARGET_L1 ? TONE_WARN : TONE_GOOD;
		if (t->utf8)
			put(l, tone, "%s", blocks[k]);
		else
			put(l, tone, "%c", ascii[k]);
	}
	put(l, TONE_DIM, "%s", suffix);
}

static void build_loading(const struct top *t, struct frame *f)
{
	const struct view *v = t->view;
	const struct model_load_rates *ld = &v->load;
	const struct model_rates *l1 = &v->layer[HC_LAYER_L1][W_10S];
	const struct hc_agent_stats *a = &v->stats.agent;
	struct line *l = new_line(f);
	put(l, TONE_HEAD, "loads/s   ");
	put(l, TONE_PLAIN, " %s  failed ", fmt_rate(ld->loads));
	put(l, ld->load_errors > 0 ? TONE_WARN : TONE_PLAIN, "%s", fmt_rate(ld->load_errors));
	put(l, TONE_PLAIN, "  latency p50 %s p99 %s", fmt_us(ld->load_p50_us),
	    fmt_us(ld->load_p99_us));
	put(l, TONE_DIM, "  (these rates: 10 s window)");

	l = new_line(f);
	put(l, TONE_HEAD, "flights/s ");
	put(l, TONE_PLAIN, " leaders %s  coalesced %s  takeovers ", fmt_rate(ld->leaders),
	    fmt_rate(ld->coalesced));
	put(l, ld->takeovers > 0 ? TONE_WARN : TONE_PLAIN, "%s", fmt_rate(ld->takeovers));
	put(l, TONE_PLAIN, "  lease expiries ");
	put(l, ld->lease_expiries > 0 ? TONE_WARN : TONE_PLAIN, "%s", fmt_rate(ld->lease_expiries));

	l = new_line(f);
	put(l, TONE_HEAD, "refresh/s ");
	put(l, TONE_PLAIN, " stale served %s  early recomputes (XFetch) %s  stale refreshes %s",
	    fmt_rate(ld->stale_served), fmt_rate(ld->early_refreshes),
	    fmt_rate(ld->stale_refreshes));

	l = new_line(f);
	put(l, TONE_HEAD, "L1 churn/s");
	put(l, TONE_PLAIN,
	    " evictions %s  expirations %s  invalidations %" PRIu64 " received, %" PRIu64
	    " applied",
	    fmt_rate(l1->evictions), fmt_rate(l1->expirations), a->ctr[HC_AG_INV_RECEIVED],
	    a->ctr[HC_AG_INV_APPLIED]);
}

static void build_memory(const struct top *t, struct frame *f)
{
	const struct hc_stats *s = &t->view->stats;
	struct line *l = new_line(f);
	double used = s->slabs_total ? (double)s->slabs_used / s->slabs_total : 0;
	put(l, TONE_HEAD, "memory    ");
	put(l, TONE_PLAIN, " items %" PRIu64 "  keys+values %s  slabs ", s->items,
	    fmt_bytes(s->bytes));
	put(l, used >= 0.95 ? TONE_WARN : TONE_PLAIN, "%" PRIu32 "/%" PRIu32 " (%.0f%%)",
	    s->slabs_used, s->slabs_total, used * 100);
	put(l, TONE_PLAIN, " of %s  index %.1f%% full", fmt_bytes(s->slab_size),
	    s->index_slots ? 100.0 * (double)s->items / (double)s->index_slots : 0.0);

	/* the size classes holding the most bytes */
	int top[TOP_CLASSES], ntop = 0;
	uint32_t ncls = s->nclasses < HC_MAX_CLASSES ? s->nclasses : HC_MAX_CLASSES;
	for (uint32_t k = 0; k < ncls; k++) {
		const struct hc_class_stats *c = &s->cls[k];
		if (!c->items && !c->slabs)
			continue;
		int at = ntop < TOP_CLASSES ? ntop++ : TOP_CLASSES;
		while (at > 0 && s->cls[top[at - 1]].bytes < c->bytes) {
			if (at < TOP_CLASSES)
				top[at] = top[at - 1];
			at--;
		}
		if (at < TOP_CLASSES)
			top[at] = (int)k;
	}
	l = new_line(f);
	put(l, TONE_HEAD, "classes   ");
	if (!ntop)
		put(l, TONE_DIM, " (none in use)");
	for (int i = 0; i < ntop; i++) {
		const struct hc_class_stats *c = &s->cls[top[i]];
		put(l, TONE_PLAIN, "%s%s: %" PRIu64 " items, %" PRIu32 " slabs", i ? " | " : " ",
		    fmt_bytes(c->block_size), c->items, c->slabs);
	}
}

static const struct column entity_cols[] = {
	{"entity", 18, 0, true},  {"L1 req/s", 10, 1, false}, {"L1 hit", 9, 2, false},
	{"L2 hit", 9, 4, false},  {"loads/s", 9, 3, false},   {"coalesced/s", 12, 6, false},
	{"stale/s", 9, 5, false}, {"evict/s", 9, 7, false},   {"load p99", 10, 8, false},
};
#define NENTITY_COLS ((int)(sizeof(entity_cols) / sizeof(entity_cols[0])))

/* The entity panel's first line, with the rows shown (@first, @shown of @total). */
static void entity_title(const struct top *t, struct line *l, int first, int shown, int total)
{
	l->len = 0;
	put(l, TONE_HEAD, "entities  ");
	put(l, TONE_PLAIN, " %d, 10 s window, sort: %s", total, model_sort_name[t->sort]);
	if (shown < total)
		put(l, TONE_DIM, "  rows %d-%d of %d", first + 1, first + shown, total);
}

static void build_entities(const struct top *t, struct frame *f, int width)
{
	const struct view *v = t->view;
	bool shown[NCOLS_MAX];
	fit_columns(entity_cols, NENTITY_COLS, width, shown);
	entity_title(t, new_line(f), 0, v->nent, v->nent);
	put_heading(new_line(f), entity_cols, NENTITY_COLS, shown);
	if (!v->nent)
		put(new_line(f), TONE_DIM, "(no entities yet)");
	for (int i = 0; i < v->nent; i++) {
		const struct model_entity *e = &v->ent[t->sort][i];
		struct line *l = new_line(f);
		for (int c = 0; c < NENTITY_COLS; c++) {
			enum tone tone = TONE_PLAIN;
			const char *text;
			if (!shown[c])
				continue;
			switch (c) {
			case 0:
				text = entity_label(e->name);
				break;
			case 1:
				text = fmt_rate(e->layer[HC_LAYER_L1].requests);
				break;
			case 2:
				text = fmt_ratio(&e->layer[HC_LAYER_L1], &tone);
				break;
			case 3:
				text = fmt_ratio(&e->layer[HC_LAYER_L2], &tone);
				break;
			case 4:
				text = fmt_rate(e->load.loads);
				break;
			case 5:
				text = fmt_rate(e->load.coalesced);
				break;
			case 6:
				text = fmt_rate(e->load.stale_served);
				break;
			case 7:
				text = fmt_rate(e->layer[HC_LAYER_L1].evictions);
				break;
			default:
				text = fmt_us(e->load.load_p99_us);
				break;
			}
			put_cell(l, &entity_cols[c], tone, text);
		}
	}
}

static void build_footer(const struct top *t, struct frame *f, int width)
{
	struct line *l = new_line(f);
	put(l, TONE_TITLE,
	    "q quit  p pause  s sort  h help  %s PgUp PgDn scroll  every %" PRIu32 " ms",
	    t->utf8 ? "\u2191\u2193" : "arrows", t->interval_ms);
	if (t->paused)
		put(l, TONE_TITLE, "  PAUSED (still sampling)");
	pad_to(l, TONE_TITLE, width);
}

/* Every panel into @f; @width decides the table columns (batch: all). */
static void build(const struct top *t, struct frame *f, int width, bool batch)
{
	f->n = 0;
	sec_begin(f, SEC_TITLE);
	build_title(t, f, width, batch);
	sec_end(f, SEC_TITLE);
	sec_begin(f, SEC_STATUS);
	build_status(t, f);
	sec_end(f, SEC_STATUS);
	sec_begin(f, SEC_LAYERS);
	build_layers(t, f, width);
	sec_end(f, SEC_LAYERS);
	sec_begin(f, SEC_SPARK);
	build_spark(t, f, width, batch);
	sec_end(f, SEC_SPARK);
	sec_begin(f, SEC_LOADING);
	build_loading(t, f);
	sec_end(f, SEC_LOADING);
	sec_begin(f, SEC_MEMORY);
	build_memory(t, f);
	sec_end(f, SEC_MEMORY);
	sec_begin(f, SEC_ENTITIES);
	build_entities(t, f, width);
	sec_end(f, SEC_ENTITIES);
	sec_begin(f, SEC_FOOTER);
	if (!batch)
		build_footer(t, f, width);
	sec_end(f, SEC_FOOTER);
}

/* ---- sampling ---- */

static int sample(struct top *t)
{
	int rc = hc_stats(t->cache, t->snap);
	if (rc < 0)
		return rc;
	model_feed(t->model, t->snap, clock_ms(CLOCK_MONOTONIC));
	return 0;
}

static void capture_view(struct top *t)
{
	struct view *v = t->view;
	const struct model *m = t->model;
	const struct hc_stats *s = model_latest(m);
	if (!s)
		return;
	v->stats = *s;
	v->wall_ms = clock_ms(CLOCK_REALTIME);
	for (int l = 0; l < HC_LAYER_COUNT; l++)
		for (int w = 0; w < W_COUNT; w++)
			v->layer[l][w] = model_layer(m, l, (enum model_window)w);
	v->load = model_load(m, W_10S);
	for (int o = 0; o < SORT_COUNT; o++)
		v->nent = model_entities(m, W_10S, (enum model_sort)o, v->ent[o], HC_MAX_ENTITIES);
	v->nhist = model_history(m, HC_LAYER_L1, v->hist, MODEL_HISTORY);
	v->valid = true;
}

/* ---- batch mode ---- */

static void print_line(const struct line *l)
{
	int n = l->len;
	while (n > 0 && l->text[n - 1] == ' ')
		n--;
	fwrite(l->text, 1, (size_t)n, stdout);
	putchar('\n');
}

static void print_frame(const struct frame *f)
{
	/* blank lines before these panels */
	static const bool gap_before[SEC_COUNT] = {
		[SEC_LAYERS] = true, [SEC_LOADING] = true, [SEC_ENTITIES] = true};
	for (int s = 0; s < SEC_COUNT; s++) {
		if (gap_before[s])
			putchar('\n');
		for (int i = 0; i < f->sec[s].count; i++)
			print_line(&f->lines[f->sec[s].first + i]);
	}
}

static int run_batch(struct top *t)
{
	int rc = 0;
	if (t->iterations == 0) { /* --http ADDR --iterations 0: serve only */
		while (!stop)
			sleep_until(clock_ms(CLOCK_MONOTONIC) + KEY_WAIT_MAX_MS);
		return TOP_EXIT_OK;
	}
	uint64_t start = clock_ms(CLOCK_MONOTONIC);
	if ((rc = sample(t)) < 0)
		goto fail;
	for (long i = 1; i <= t->iterations && !stop; i++) {
		sleep_until(start + (uint64_t)i * t->interval_ms);
		if (stop)
			break;
		if ((rc = sample(t)) < 0)
			goto fail;
		capture_view(t);
		build(t, t->frame, LINE_BYTES, true);
		if (i > 1)
			putchar('\n');
		print_frame(t->frame);
		fflush(stdout);
	}
	return TOP_EXIT_OK;
fail:
	fprintf(stderr, "hostcache-top: stats of '%s' failed: %s\n", t->name, hc_strerror(rc));
	return TOP_EXIT_FAIL;
}

/* ---- the screen ---- */

enum { PAIR_WARN = 1, PAIR_GOOD, PAIR_TITLE, PAIR_HEAD };

static attr_t tone_attr(const struct top *t, int tone)
{
	switch (tone) {
	case TONE_TITLE:
		return t->colors ? COLOR_PAIR(PAIR_TITLE) | A_BOLD : A_REVERSE;
	case TONE_HEAD:
		return t->colors ? COLOR_PAIR(PAIR_HEAD) | A_BOLD : A_BOLD;
	case TONE_WARN:
		return t->colors ? COLOR_PAIR(PAIR_WARN) | A_BOLD : A_BOLD | A_UNDERLINE;
	case TONE_GOOD:
		return t->colors ? COLOR_PAIR(PAIR_GOOD) : A_NORMAL;
	case TONE_DIM:
		return A_DIM;
	default:
		return A_NORMAL;
	}
}

/* Line @l at row @y, cut at @cols display columns, tone by tone. */
static void draw_line(const struct top *t, int y, const struct line *l, int cols)
{
	int i = 0, x = 0;
	move(y, 0);
	while (i < l->len) {
		int start = i, tone = l->tone[i];
		while (i < l->len && l->tone[i] == tone) {
			if (((unsigned char)l->text[i] & 0xc0) != 0x80) {
				if (x == cols)
					break;
				x++;
			}
			i++;
		}
		attrset(tone_attr(t, tone));
		addnstr(l->text + start, i - start);
		if (x == cols)
			break;
	}
	attrset(A_NORMAL);
}

static void draw_too_small(int rows, int cols)
{
	char need[48];
	snprintf(need, sizeof(need), "need %dx%d, have %dx%d", MIN_COLS, MIN_ROWS, cols, rows);
	mvaddnstr(0, 0, "terminal too small", cols);
	if (rows > 1)
		mvaddnstr(1, 0, need, cols);
}

/*
 * Lay the frame out on @rows x @cols.  Panels are granted lines in order of
 * usefulness; the entity table takes what is left, and scrolls.
 */
static void draw_frame(struct top *t, int rows, int cols)
{
	static const enum section by_use[] = {SEC_TITLE, SEC_LAYERS,   SEC_FOOTER,  SEC_STATUS,
					      SEC_SPARK, SEC_ENTITIES, SEC_LOADING, SEC_MEMORY};
	static const enum section order[] = {SEC_TITLE,	  SEC_STATUS, SEC_LAYERS,  SEC_SPARK,
					     SEC_LOADING, SEC_MEMORY, SEC_ENTITIES};
	struct frame *f = t->frame;
	int lines[SEC_COUNT] = {0}, left = rows;
	bool gap[SEC_COUNT] = {false};

	for (size_t k = 0; k < sizeof(by_use) / sizeof(by_use[0]); k++) {
		enum section s = by_use[k];
		int need = f->sec[s].count;
		if (s == SEC_ENTITIES && need > 3)
			need = 3; /* title, heading, one row; more below */
		if (need <= left) {
			lines[s] = need;
			left -= need;
		}
	}
	/* a blank line before these panels, once every panel of more use has its lines */
	static const enum section gaps[] = {SEC_LAYERS, SEC_LOADING, SEC_ENTITIES};
	for (size_t k = 0; k < sizeof(gaps) / sizeof(gaps[0]); k++)
		if (lines[gaps[k]] && lines[SEC_STATUS] && left > 0) {
			gap[gaps[k]] = true;
			left--;
		}
	if (lines[SEC_ENTITIES]) {
		int more = f->sec[SEC_ENTITIES].count - lines[SEC_ENTITIES];
		lines[SEC_ENTITIES] += more < left ? more : left;
	}

	int y = 0;
	for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++) {
		enum section s = order[k];
		const struct line *first = &f->lines[f->sec[s].first];
		if (!lines[s])
			continue;
		y += gap[s];
		if (s != SEC_ENTITIES) {
			for (int i = 0; i < lines[s]; i++)
				draw_line(t, y++, &first[i], cols);
			continue;
		}
		int total = t->view->nent, rowlines = f->sec[s].count - 2;
		int visible = lines[s] - 2;
		if (t->scroll > rowlines - visible)
			t->scroll = rowlines - visible;
		if (t->scroll < 0)
			t->scroll = 0;
		t->page = visible;
		struct line title;
		entity_title(t, &title, t->scroll, total ? visible : 0, total);
		draw_line(t, y++, &title, cols);
		draw_line(t, y++, &first[1], cols);
		for (int i = 0; i < visible; i++)
			draw_line(t, y++, &first[2 + t->scroll + i], cols);
	}
	if (lines[SEC_FOOTER])
		draw_line(t, rows - 1, &f->lines[f->sec[SEC_FOOTER].first], cols);
}

static const char *const help_text[] = {
	"hostcache-top keys",
	"",
	"q            quit",
	"p  space     pause the display (sampling goes on)",
	"s  S         sort entities: next / previous order",
	"Up Down j k  scroll the entities by a row",
	"PgUp PgDn    scroll by a page; Home End: ends",
	"h  ?         this help (any key closes it)",
	"",
	"Hit ratios: hits / (hits + misses) over 1 s, 10 s,",
	"60 s and since hostcache-top started.",
	"Targets: L1 >= 90 %, L2 >= 80 %; below: '!' and",
	"'below target' (red with colours).",
};
#define NHELP ((int)(sizeof(help_text) / sizeof(help_text[0])))

static void draw_help(const struct top *t, int rows, int cols)
{
	int w = 0;
	for (int i = 0; i < NHELP; i++)
		if ((int)strlen(help_text[i]) > w)
			w = (int)strlen(help_text[i]);
	w += 4;
	int h = NHELP + 2;
	int x0 = cols > w ? (cols - w) / 2 : 0, y0 = rows > h ? (rows - h) / 2 : 0;
	attrset(tone_attr(t, TONE_TITLE));
	for (int i = 0; i < h && y0 + i < rows; i++) {
		const char *s = i > 0 && i <= NHELP ? help_text[i - 1] : "";
		char row[LINE_BYTES];
		snprintf(row, sizeof(row), "  %-*s", w - 2, s);
		mvaddnstr(y0 + i, x0, row, cols - x0);
	}
	attrset(A_NORMAL);
}

static void draw(struct top *t)
{
	int rows = LINES, cols = COLS;
	erase();
	if (rows < MIN_ROWS || cols < MIN_COLS) {
		draw_too_small(rows, cols);
	} else if (!t->view->valid) {
		mvaddnstr(0, 0, "hostcache-top: waiting for the first sample", cols);
	} else {
		build(t, t->frame, cols < LINE_BYTES ? cols : LINE_BYTES - 1, false);
		draw_frame(t, rows, cols);
		if (t->help)
			draw_help(t, rows, cols);
	}
	refresh();
}

static void end_curses(void)
{
	if (screen) {
		endwin();
		delscreen(screen);
		screen = NULL;
	}
}

static int start_curses(struct top *t)
{
	screen = newterm(NULL, stdout, stdin);
	if (!screen)
		return -1;
	set_term(screen);
	atexit(end_curses);
	cbreak();
	noecho();
	nonl();
	keypad(stdscr, TRUE);
	set_escdelay(25);
	curs_set(0);
	if (has_colors() && start_color() == OK) {
		short bg = use_default_colors() == OK ? -1 : COLOR_BLACK;
		init_pair(PAIR_WARN, COLOR_RED, bg);
		init_pair(PAIR_GOOD, COLOR_GREEN, bg);
		init_pair(PAIR_TITLE, COLOR_BLACK, COLOR_CYAN);
		init_pair(PAIR_HEAD, COLOR_CYAN, bg);
		t->colors = true;
	}
	return 0;
}

/* One key; false to quit. */
static bool on_key(struct top *t, int ch)
{
	if (ch == KEY_RESIZE)
		return true;
	if (t->help) { /* any key closes the help; q still quits */
		t->help = false;
		return ch != 'q' && ch != 'Q';
	}
	switch (ch) {
	case 'q':
	case 'Q':
		return false;
	case 'p':
	case 'P':
	case ' ':
		t->paused = !t->paused;
		if (!t->paused)
			capture_view(t);
		break;
	case 's':
		t->sort = (enum model_sort)((t->sort + 1) % SORT_COUNT);
		break;
	case 'S':
		t->sort = (enum model_sort)((t->sort + SORT_COUNT - 1) % SORT_COUNT);
		break;
	case 'h':
	case 'H':
	case '?':
		t->help = true;
		break;
	case KEY_UP:
	case 'k':
		t->scroll--;
		break;
	case KEY_DOWN:
	case 'j':
		t->scroll++;
		break;
	case KEY_PPAGE:
		t->scroll -= t->page > 1 ? t->page : 1;
		break;
	case KEY_NPAGE:
		t->scroll += t->page > 1 ? t->page : 1;
		break;
	case KEY_HOME:
	case 'g':
		t->scroll = 0;
		break;
	case KEY_END:
	case 'G':
		t->scroll = HC_MAX_ENTITIES; /* draw_frame clamps */
		break;
	case 'L' & 0x1f: /* ^L: repaint everything */
		clearok(curscr, TRUE);
		break;
	default:
		break;
	}
	return true;
}

/*
 * getch() answers ERR both when its timeout passes and when the terminal is
 * gone (a closed tmux pane or ssh session: read() fails with EIO at once),
 * and the SIGHUP of a hangup goes to the session leader, not necessarily to
 * us.  Without this check the loop would spin on ERR.
 */
static bool terminal_gone(void)
{
	struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR | POLLNVAL));
}

static int run_screen(struct top *t)
{
	int rc = 0;
	bool dirty = true;
	if (start_curses(t) < 0) {
		const char *term = getenv("TERM");
		fprintf(stderr, "hostcache-top: cannot use the terminal '%s' (try --once)\n",
			term ? term : "");
		return TOP_EXIT_FAIL;
	}
	uint64_t next = clock_ms(CLOCK_MONOTONIC);
	while (!stop) {
		uint64_t now = clock_ms(CLOCK_MONOTONIC);
		if (now >= next) {
			if ((rc = sample(t)) < 0)
				break;
			if (!t->paused)
				capture_view(t);
			dirty = true;
			next += t->interval_ms;
			if (next <= now)
				next = now + t->interval_ms;
		}
		if (dirty) {
			draw(t);
			dirty = false;
		}
		now = clock_ms(CLOCK_MONOTONIC);
		uint64_t wait = next > now ? next - now : 0;
		timeout(wait < KEY_WAIT_MAX_MS ? (int)wait : KEY_WAIT_MAX_MS);
		int ch = getch();
		if (ch == ERR) {
			if (terminal_gone())
				break;
			continue;
		}
		dirty = true;
		if (!on_key(t, ch))
			break;
	}
	end_curses();
	if (rc < 0) {
		fprintf(stderr, "hostcache-top: stats of '%s' failed: %s\n", t->name,
			hc_strerror(rc));
		return TOP_EXIT_FAIL;
	}
	return TOP_EXIT_OK;
}

/* ---- options and setup ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: hostcache-top [-n NAME] [--interval MS] [--once | --iterations N]\n"
		"                     [--http ADDR [--token-file FILE]]\n"
		"\n"
		"Live statistics of the hostcache segment /dev/shm/hostcache.NAME: rates and hit\n"
		"ratios per layer and per entity over 1 s, 10 s, 60 s and since start, loading\n"
		"and single-flight, memory, the agent.  Attaches read-only.\n"
		"\n"
		"  -n, --name NAME       segment name (default: $HOSTCACHE_NAME)\n"
		"  -i, --interval MS     sampling interval, %d..%d ms (default 1000)\n"
		"      --once            no screen: print the panels after one interval, exit\n"
		"      --iterations N    no screen: print the panels after each of N intervals\n"
		"      --http ADDR       also serve the HTTP dashboard on ADDR (127.0.0.1:8080);\n"
		"                        with --iterations 0, only serve, until SIGINT/SIGTERM\n"
		"      --token-file FILE bearer token for the dashboard's mutating endpoints\n"
		"                        (default: $HOSTCACHE_DASH_TOKEN; none: refused)\n"
		"  -h, --help            show this help\n"
		"  -V, --version         show the version\n"
		"\n"
		"Keys: q quit, p pause, s sort entities, h help, arrows PgUp PgDn scroll.\n"
		"Exit status: 0 ok, 1 the segment or the terminal could not be used, 2 usage.\n",
		INTERVAL_MIN_MS, INTERVAL_MAX_MS);
}

__attribute__((format(printf, 1, 2))) static int bad_usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("hostcache-top: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (try hostcache-top --help)\n", stderr);
	return TOP_EXIT_USAGE;
}

static bool parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

/* The token: the first line of @path, trailing blanks removed. */
static int read_token(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	size_t len = fread(buf, 1, n - 1, f);
	int rc = ferror(f) ? -EIO : 0;
	fclose(f);
	buf[len] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	len = strlen(buf);
	while (len > 0 && (buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		buf[--len] = '\0';
	if (!rc && !len)
		rc = -ENODATA;
	return rc;
}

static int parse_args(struct top *t, int argc, char **argv)
{
	enum { OPT_ONCE = 256, OPT_ITERATIONS, OPT_HTTP, OPT_TOKEN_FILE };
	static const struct option longopts[] = {
		{"name", required_argument, NULL, 'n'},
		{"interval", required_argument, NULL, 'i'},
		{"once", no_argument, NULL, OPT_ONCE},
		{"iterations", required_argument, NULL, OPT_ITERATIONS},
		{"http", required_argument, NULL, OPT_HTTP},
		{"token-file", required_argument, NULL, OPT_TOKEN_FILE},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	bool once = false, counted = false;
	long v;
	int ch;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":hVn:i:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'n':
			t->name = optarg;
			break;
		case 'i':
			if (!parse_long(optarg, INTERVAL_MIN_MS, INTERVAL_MAX_MS, &v))
				return bad_usage("bad interval '%s' (100..3600000 ms)", optarg);
			t->interval_ms = (uint32_t)v;
			break;
		case OPT_ONCE:
			once = true;
			break;
		case OPT_ITERATIONS:
			if (!parse_long(optarg, 0, LONG_MAX / 2, &v))
				return bad_usage("bad iteration count '%s'", optarg);
			t->iterations = v;
			counted = true;
			break;
		case OPT_HTTP:
			t->http_addr = optarg;
			break;
		case OPT_TOKEN_FILE:
			t->token_file = optarg;
			break;
		case 'h':
			usage(stdout);
			return -1;
		case 'V':
			printf("hostcache-top %d.%d.%d\n", HC_VERSION_MAJOR, HC_VERSION_MINOR,
			       HC_VERSION_PATCH);
			return -1;
		case ':':
			if (optopt > 0 && optopt < 256)
				return bad_usage("option '-%c' needs a value", optopt);
			return bad_usage("option '%s' needs a value", argv[optind - 1]);
		default:
			if (optopt > 0 && optopt < 256)
				return bad_usage("unknown option '-%c'", optopt);
			return bad_usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return bad_usage("unexpected argument '%s'", argv[optind]);
	if (once && counted)
		return bad_usage("%s", "--once and --iterations exclude each other");
	if (once)
		t->iterations = 1;
	if (t->iterations == 0 && !t->http_addr)
		return bad_usage("%s", "--iterations 0 only serves the dashboard: it needs --http");
	if (t->token_file && !t->http_addr)
		return bad_usage("%s", "--token-file goes with --http");
	if (!t->name || !t->name[0])
		return bad_usage("%s", "no segment name: give -n NAME or set HOSTCACHE_NAME");
	return 0;
}

/*
 * The token from HOSTCACHE_DASH_TOKEN into @buf, then wiped from this
 * process's environment: unsetenv() alone would leave its bytes in
 * /proc/PID/environ.  0 (buf "" when unset), or -E2BIG when it does not fit.
 */
static int take_env_token(char *buf, size_t cap)
{
	char *env = getenv("HOSTCACHE_DASH_TOKEN");
	buf[0] = '\0';
	if (!env)
		return 0;
	size_t len = strlen(env);
	int rc = len < cap ? 0 : -E2BIG;
	if (rc == 0)
		memcpy(buf, env, len + 1);
	explicit_bzero(env, len);
	unsetenv("HOSTCACHE_DASH_TOKEN");
	return rc;
}

static int start_http(struct top *t)
{
	char token[512];
	const char *tok = t->env_token;
	if (t->token_file) {
		int rc = read_token(t->token_file, token, sizeof(token));
		if (rc < 0) {
			fprintf(stderr, "hostcache-top: token file '%s' failed: %s\n",
				t->token_file, rc == -ENODATA ? "empty" : hc_strerror(rc));
			return TOP_EXIT_FAIL;
		}
		tok = token;
	}
	if (tok && !tok[0])
		tok = NULL;
	struct dash_http_opts o = {.bind = t->http_addr, .token = tok, .sample_ms = t->interval_ms};
	int rc = dash_http_start(t->cache, &o, &t->http);
	explicit_bzero(token, sizeof(token));
	explicit_bzero(t->env_token, sizeof(t->env_token));
	if (rc < 0) {
		fprintf(stderr, "hostcache-top: HTTP dashboard on '%s' failed: %s\n", t->http_addr,
			hc_strerror(rc));
		return TOP_EXIT_FAIL;
	}
	t->http_port = dash_http_port(t->http);
	if (t->iterations >= 0)
		fprintf(stderr, "hostcache-top: HTTP dashboard of '%s' on %s (port %d)%s\n",
			t->name, t->http_addr, t->http_port,
			tok ? "" : "; no token: changes refused");
	return TOP_EXIT_OK;
}

int main(int argc, char **argv)
{
	struct top t = {
		.name = getenv("HOSTCACHE_NAME"),
		.interval_ms = 1000,
		.iterations = -1,
		.sort = SORT_REQUESTS,
	};
	/* out of the environment whether or not --http will use it */
	int token_rc = take_env_token(t.env_token, sizeof(t.env_token));
	int rc = parse_args(&t, argc, argv);
	if (rc)
		return rc < 0 ? TOP_EXIT_OK : rc;
	if (!t.http_addr) {
		explicit_bzero(t.env_token, sizeof(t.env_token));
	} else if (token_rc < 0 && !t.token_file) {
		fprintf(stderr, "hostcache-top: HOSTCACHE_DASH_TOKEN is longer than %zu bytes\n",
			sizeof(t.env_token) - 1);
		return TOP_EXIT_USAGE;
	}

	setlocale(LC_ALL, "");
	t.utf8 = strcmp(nl_langinfo(CODESET), "UTF-8") == 0;

	struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: sleeps wake */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	rc = hc_open(t.name, &(struct hc_options){.flags = HC_RDONLY}, &t.cache);
	if (rc == -ENOENT) {
		fprintf(stderr, "hostcache-top: no segment '%s' (/dev/shm/hostcache.%s)\n", t.name,
			t.name);
		return TOP_EXIT_FAIL;
	}
	if (rc == HC_E_INVAL)
		return bad_usage("bad segment name '%s'", t.name);
	if (rc < 0) {
		fprintf(stderr, "hostcache-top: open of '%s' failed: %s\n", t.name,
			hc_strerror(rc));
		return TOP_EXIT_FAIL;
	}

	rc = TOP_EXIT_FAIL;
	if (t.iterations < 0 && (!isatty(STDOUT_FILENO) || !isatty(STDIN_FILENO))) {
		rc = bad_usage("%s", "the screen needs a terminal; use --once or --iterations N");
		goto out;
	}
	t.model = model_new();
	t.snap = malloc(sizeof(*t.snap));
	t.view = calloc(1, sizeof(*t.view));
	t.frame = malloc(sizeof(*t.frame));
	if (!t.model || !t.snap || !t.view || !t.frame) {
		fprintf(stderr, "hostcache-top: out of memory\n");
		goto out;
	}
	if (t.http_addr && (rc = start_http(&t)) != TOP_EXIT_OK)
		goto out;
	rc = t.iterations >= 0 ? run_batch(&t) : run_screen(&t);
out:
	dash_http_stop(t.http);
	free(t.frame);
	free(t.view);
	free(t.snap);
	model_free(t.model);
	hc_close(t.cache);
	return rc;
}
