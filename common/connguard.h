/*
 * connguard.h - a slowloris guard for the libmicrohttpd servers (the HTTP
 * dashboard and examples/product-api).  Header-only: each server compiles
 * its own copy (the product API's sources are also built by fuzz/ alone).
 *
 * libmicrohttpd's connection timeout is an inactivity timeout: a client that
 * sends a byte of its headers every few seconds keeps its connection for
 * ever, and CONNECTION_LIMIT such clients lock everyone else out (new
 * connections wait in the kernel's backlog until their clients give up).
 * The guard adds two rules:
 *
 *  1. Deadline.  A connection has @deadline_ms from its start, or from the
 *     end of its previous request (keep-alive), to deliver a whole request:
 *     request line, headers and body.  A watchdog thread shuts down the
 *     sockets of those past it, every 100 ms.
 *  2. Eviction.  When a newcomer makes more than @limit connections wait
 *     for their request, the one that has waited longest is shut down to
 *     make room, so a newcomer that sends its request at once is served
 *     even while every slot is held by slow clients.  Connections whose
 *     request is being answered do not count.  MHD's own limit is set
 *     CONNGUARD_HEADROOM above @limit, so that newcomers are accepted.
 *
 * A connection whose request has arrived (connguard_received: it is being
 * answered, however long that takes) is never touched; nor is one that
 * reads its answer slowly, which MHD's inactivity timeout covers.
 *
 * The guard keeps a dup() of each connection's socket: shutdown(2) on it
 * reaches the socket whatever libmicrohttpd does with its own descriptor
 * meanwhile (no race with the descriptor's reuse), and libmicrohttpd then
 * sees end of file and closes the connection by its usual path.  The
 * callbacks run in libmicrohttpd's thread, the watchdog in its own; one
 * mutex covers the table.
 *
 * Use: connguard_start() before MHD_start_daemon(), which gets
 *   MHD_OPTION_NOTIFY_CONNECTION, connguard_notify, guard
 *   MHD_OPTION_CONNECTION_LIMIT, limit + CONNGUARD_HEADROOM
 * then connguard_received(conn) once a request has arrived whole (before it
 * is answered), connguard_completed(conn) from the request-completed
 * callback, and connguard_stop() after MHD_stop_daemon().
 */
#ifndef HC_CONNGUARD_H
#define HC_CONNGUARD_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

/* Connections MHD may hold beyond the guard's limit: room for newcomers. */
#define CONNGUARD_HEADROOM 8u

struct connguard_stats {
	uint64_t open;	  /* connections now */
	uint64_t expired; /* shut down for missing the request deadline */
	uint64_t evicted; /* shut down, the slowest, to make room for a newcomer */
};

struct connguard_conn {
	struct connguard *g;
	struct connguard_conn *prev, *next;
	int fd;		   /* our dup of the connection's socket */
	bool shut;	   /* shut down by the guard: no longer counted as waiting */
	uint64_t since_ms; /* waiting for a request since; 0 while one is being answered */
};

struct connguard {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	pthread_t watchdog;
	bool stop;
	unsigned limit;
	uint64_t deadline_ms;
	struct connguard_conn head; /* circular list of open connections */
	uint64_t open;		    /* connections in the list */
	uint64_t waiting;	    /* of which waiting for a request, not shut down */
	uint64_t expired, evicted;
};

static inline uint64_t connguard_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Is @c counted in g->waiting? */
static inline bool connguard_waiting(const struct connguard_conn *c)
{
	return !c->shut && c->since_ms;
}

static inline void connguard_shut(struct connguard *g, struct connguard_conn *c)
{
	if (connguard_waiting(c))
		g->waiting--;
	shutdown(c->fd, SHUT_RDWR);
	c->shut = true;
}

static inline void *connguard_watchdog(void *arg)
{
	struct connguard *g = arg;
	pthread_mutex_lock(&g->lock);
	while (!g->stop) {
		uint64_t now = connguard_now_ms();
		for (struct connguard_conn *c = g->head.next; c != &g->head && g->deadline_ms;
		     c = c->next) {
			if (connguard_waiting(c) && now - c->since_ms >= g->deadline_ms) {
				connguard_shut(g, c);
				g->expired++;
			}
		}
		struct timespec ts; /* the condition variable's clock: monotonic */
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += 100 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&g->wake, &g->lock, &ts);
	}
	pthread_mutex_unlock(&g->lock);
	return NULL;
}

/*
 * Start a guard: at most @limit connections waiting for their request, each
 * for at most @deadline_ms (0: no deadline, eviction only).  Returns 0 or
 * -errno.
 */
static inline int connguard_start(struct connguard **out, unsigned limit, unsigned deadline_ms)
{
	struct connguard *g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	pthread_condattr_t ca;
	int rc = pthread_condattr_init(&ca);
	if (!rc)
		rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (!rc)
		rc = pthread_cond_init(&g->wake, &ca);
	pthread_condattr_destroy(&ca);
	if (rc) {
		free(g);
		return -rc;
	}
	pthread_mutex_init(&g->lock, NULL); /* default attributes: cannot fail on Linux */
	g->limit = limit;
	g->deadline_ms = deadline_ms;
	g->head.next = g->head.prev = &g->head;
	rc = pthread_create(&g->watchdog, NULL, connguard_watchdog, g);
	if (rc) {
		pthread_cond_destroy(&g->wake);
		pthread_mutex_destroy(&g->lock);
		free(g);
		return -rc;
	}
	*out = g;
	return 0;
}

/* Stop the watchdog and free the guard (NULL is fine); after MHD_stop_daemon. */
static inline void connguard_stop(struct connguard *g)
{
	if (!g)
		return;
	pthread_mutex_lock(&g->lock);
	g->stop = true;
	pthread_cond_signal(&g->wake);
	pthread_mutex_unlock(&g->lock);
	pthread_join(g->watchdog, NULL);
	while (g->head.next != &g->head) { /* MHD stopped without telling (cannot happen) */
		struct connguard_conn *c = g->head.next;
		c->next->prev = c->prev;
		c->prev->next = c->next;
		close(c->fd);
		free(c);
	}
	pthread_cond_destroy(&g->wake);
	pthread_mutex_destroy(&g->lock);
	free(g);
}

static inline void connguard_started(struct connguard *g, struct MHD_Connection *conn,
				     void **socket_context)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct connguard_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->g = g;
	c->fd = ci ? fcntl(ci->connect_fd, F_DUPFD_CLOEXEC, 0) : -1;
	if (c->fd < 0) {
		free(c); /* unguarded: MHD's own limit and timeout still hold */
		return;
	}
	pthread_mutex_lock(&g->lock);
	c->since_ms = connguard_now_ms();
	c->next = &g->head;
	c->prev = g->head.prev;
	g->head.prev->next = c;
	g->head.prev = c;
	g->open++;
	g->waiting++;
	if (g->waiting > g->limit) {
		struct connguard_conn *oldest = NULL;
		for (struct connguard_conn *o = g->head.next; o != c; o = o->next)
			if (connguard_waiting(o) && (!oldest || o->since_ms < oldest->since_ms))
				oldest = o;
		if (oldest) {
			connguard_shut(g, oldest);
			g->evicted++;
		}
	}
	pthread_mutex_unlock(&g->lock);
	*socket_context = c;
}

/* MHD_OPTION_NOTIFY_CONNECTION callback; @cls is the guard. */
static inline void connguard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
				    enum MHD_ConnectionNotificationCode toe)
{
	struct connguard *g = cls;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		connguard_started(g, conn, socket_context);
		return;
	}
	struct connguard_conn *c = *socket_context;
	if (!c)
		return;
	pthread_mutex_lock(&g->lock);
	c->next->prev = c->prev;
	c->prev->next = c->next;
	g->open--;
	if (connguard_waiting(c))
		g->waiting--;
	pthread_mutex_unlock(&g->lock);
	close(c->fd);
	free(c);
	*socket_context = NULL;
}

static inline void connguard_set_since(struct MHD_Connection *conn, bool waiting)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct connguard_conn *c = ci ? ci->socket_context : NULL;
	if (!c)
		return;
	struct connguard *g = c->g;
	pthread_mutex_lock(&g->lock);
	if (connguard_waiting(c))
		g->waiting--;
	c->since_ms = waiting ? connguard_now_ms() : 0;
	if (connguard_waiting(c))
		g->waiting++;
	pthread_mutex_unlock(&g->lock);
}

/* The request on @conn has arrived whole: its deadline stops. */
static inline void connguard_received(struct MHD_Connection *conn)
{
	connguard_set_since(conn, false);
}

/* The request on @conn is over: the next one's deadline starts now. */
static inline void connguard_completed(struct MHD_Connection *conn)
{
	connguard_set_since(conn, true);
}

static inline void connguard_stats(struct connguard *g, struct connguard_stats *out)
{
	pthread_mutex_lock(&g->lock);
	out->open = g->open;
	out->expired = g->expired;
	out->evicted = g->evicted;
	pthread_mutex_unlock(&g->lock);
}

#endif
