/* A cheap per-phase wall-clock and page-fault breakdown of a repeated piece of work (a training
 * step, a sampling step), for finding the time spent outside the big kernels. Enabled by the
 * environment variable SDTI_PROFILE (set, not "0"); disabled, every call tests one bool.
 * Prints to stderr: one line per repetition, and at the end the mean of the repetitions after
 * the first (which warms up caches, allocations and page tables). */
#ifndef SDTI_BASE_PHASE_TIMER_H
#define SDTI_BASE_PHASE_TIMER_H

#include <stdbool.h>

#define PHASE_TIMER_MAX 16

typedef struct PhaseTimer {
    bool on;
    const char *title;
    int count; /* phases named so far */
    const char *names[PHASE_TIMER_MAX];
    double run_seconds[PHASE_TIMER_MAX], sum_seconds[PHASE_TIMER_MAX];
    /* CPU seconds of the process (user + system, all threads): less sensitive than wall time
     * to other jobs on a shared machine */
    double run_cpu[PHASE_TIMER_MAX], sum_cpu[PHASE_TIMER_MAX];
    long run_faults[PHASE_TIMER_MAX], sum_faults[PHASE_TIMER_MAX]; /* minor page faults */
    double last, last_cpu;
    long last_faults;
    long runs; /* completed repetitions */
} PhaseTimer;

/* on when SDTI_PROFILE is set; title names the work in the printed lines. */
void phase_timer_init(PhaseTimer *p, const char *title);
/* Starts (or restarts) the clock: what happened since the last mark is not counted. */
void phase_timer_start(PhaseTimer *p);
/* Adds the wall time, CPU time and minor faults since the last start / mark to the phase `name` (a
 * string literal; phases print in the order they were first marked). */
void phase_timer_mark(PhaseTimer *p, const char *name);
/* One repetition done: prints its line and adds it to the sums (from the second on). */
void phase_timer_end_run(PhaseTimer *p);
/* The mean per repetition after the first, per phase and in total. */
void phase_timer_print(const PhaseTimer *p);

#endif
