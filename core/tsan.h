/*
 * tsan.h - liburcu's atomics as compiler builtins, for ThreadSanitizer
 * builds only (-Db_sanitize=thread); every other build compiles nothing here.
 *
 * liburcu 0.13 implements uatomic_* on x86 in inline assembly (lock
 * cmpxchg, lock xadd) and CMM_LOAD_SHARED/CMM_STORE_SHARED as volatile
 * accesses.  ThreadSanitizer instruments neither: a CAS that publishes an
 * entry is invisible to it, so every read of a published entry would be
 * reported as a race with the writer's memcpy.  Suppressing those reports
 * would mean suppressing the whole of core/.  Instead, under TSan, the same
 * operations are expressed with __atomic builtins, which TSan models:
 *
 *   uatomic_cmpxchg/xchg/add_return/add/inc/dec   seq_cst read-modify-write
 *                                                 (x86's lock prefix)
 *   CMM_LOAD_SHARED, uatomic_read                 acquire load
 *   CMM_STORE_SHARED, uatomic_set                 release store
 *
 * Acquire/release for the plain loads and stores is what x86 (TSO) gives
 * them, and x86 is what the code runs on.  So TSan checks that every
 * shared access is a marked one or ordered by one (a missing
 * CMM_LOAD_SHARED, process-local state touched by two threads, a field
 * written after its publication), not whether an explicit cmm_smp_rmb/wmb
 * is missing on a weaker architecture.  The fences (cmm_smp_mb) stay as
 * they are: TSan does not model fences.
 */
#ifndef HC_TSAN_H
#define HC_TSAN_H

#if defined(__SANITIZE_THREAD__)
#define HC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HC_TSAN 1
#endif
#endif

#ifdef HC_TSAN
#undef CMM_LOAD_SHARED
#define CMM_LOAD_SHARED(p) __atomic_load_n(&(p), __ATOMIC_ACQUIRE)
#undef CMM_STORE_SHARED
#define CMM_STORE_SHARED(x, v)                                        \
	__extension__({                                               \
		__typeof__(x) hc_tsan_v_ = (v);                       \
		__atomic_store_n(&(x), hc_tsan_v_, __ATOMIC_RELEASE); \
		hc_tsan_v_;                                           \
	})
#undef uatomic_read
#define uatomic_read(addr) __atomic_load_n((addr), __ATOMIC_ACQUIRE)
#undef uatomic_set
#define uatomic_set(addr, v) __atomic_store_n((addr), (v), __ATOMIC_RELEASE)
#undef uatomic_cmpxchg
#define uatomic_cmpxchg(addr, old, new_)                                                        \
	__extension__({                                                                         \
		__typeof__(*(addr)) hc_tsan_old_ = (old);                                       \
		__atomic_compare_exchange_n((addr), &hc_tsan_old_, (new_), 0, __ATOMIC_SEQ_CST, \
					    __ATOMIC_SEQ_CST);                                  \
		hc_tsan_old_;                                                                   \
	})
#undef uatomic_xchg
#define uatomic_xchg(addr, v) __atomic_exchange_n((addr), (v), __ATOMIC_SEQ_CST)
#undef uatomic_add_return
#define uatomic_add_return(addr, v) __atomic_add_fetch((addr), (v), __ATOMIC_SEQ_CST)
#undef uatomic_add
#define uatomic_add(addr, v) ((void)__atomic_add_fetch((addr), (v), __ATOMIC_SEQ_CST))
#undef uatomic_inc
#define uatomic_inc(addr) uatomic_add((addr), 1)
#undef uatomic_dec
#define uatomic_dec(addr) uatomic_add((addr), -1)
#endif

#endif
