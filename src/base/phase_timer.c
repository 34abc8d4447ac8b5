/* See phase_timer.h. */
#define _POSIX_C_SOURCE 200809L
#include "base/phase_timer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage(double *cpu, long *faults) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) {
        *cpu = 0;
        *faults = 0;
        return;
    }
    *cpu = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
    *faults = ru.ru_minflt;
}

void phase_timer_init(PhaseTimer *p, const char *title) {
    memset(p, 0, sizeof *p);
    const char *env = getenv("SDTI_PROFILE");
    p->on = env && env[0] && strcmp(env, "0") != 0;
    p->title = title;
}

void phase_timer_start(PhaseTimer *p) {
    if (!p->on)
        return;
    p->last = now_seconds();
    usage(&p->last_cpu, &p->last_faults);
}

void phase_timer_mark(PhaseTimer *p, const char *name) {
    if (!p->on)
        return;
    int i = 0;
    while (i < p->count && strcmp(p->names[i], name) != 0)
        i++;
    if (i == p->count) {
        if (p->count == PHASE_TIMER_MAX)
            i = PHASE_TIMER_MAX - 1; /* more phases than slots: the last one takes the rest */
        else
            p->names[p->count++] = name;
    }
    double t = now_seconds(), c;
    long f;
    usage(&c, &f);
    p->run_seconds[i] += t - p->last;
    p->run_cpu[i] += c - p->last_cpu;
    p->run_faults[i] += f - p->last_faults;
    p->last = t;
    p->last_cpu = c;
    p->last_faults = f;
}

static void print_line(const PhaseTimer *p, const char *what, const double *sec, const double *cpu,
                       const long *flt, double div) {
    double total = 0, total_cpu = 0;
    long faults = 0;
    for (int i = 0; i < p->count; i++) {
        total += sec[i];
        total_cpu += cpu[i];
        faults += flt[i];
    }
    fprintf(stderr, "profile %s %s: %.3f s wall, %.3f s cpu, %ld faults | wall/cpu:", p->title,
            what, total / div, total_cpu / div, (long)((double)faults / div));
    for (int i = 0; i < p->count; i++)
        fprintf(stderr, " %s %.3f/%.3f", p->names[i], sec[i] / div, cpu[i] / div);
    fprintf(stderr, " | faults:");
    for (int i = 0; i < p->count; i++)
        if (flt[i])
            fprintf(stderr, " %s %ld", p->names[i], (long)((double)flt[i] / div));
    fprintf(stderr, "\n");
}

void phase_timer_end_run(PhaseTimer *p) {
    if (!p->on)
        return;
    char what[32];
    snprintf(what, sizeof what, "%ld", p->runs + 1);
    print_line(p, what, p->run_seconds, p->run_cpu, p->run_faults, 1.0);
    for (int i = 0; i < p->count; i++) {
        if (p->runs > 0) {
            p->sum_seconds[i] += p->run_seconds[i];
            p->sum_cpu[i] += p->run_cpu[i];
            p->sum_faults[i] += p->run_faults[i];
        }
        p->run_seconds[i] = 0;
        p->run_cpu[i] = 0;
        p->run_faults[i] = 0;
    }
    p->runs++;
}

void phase_timer_print(const PhaseTimer *p) {
    if (!p->on || p->runs < 2)
        return;
    char what[48];
    snprintf(what, sizeof what, "mean of %ld after the first", p->runs - 1);
    print_line(p, what, p->sum_seconds, p->sum_cpu, p->sum_faults, (double)(p->runs - 1));
}
