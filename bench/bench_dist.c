/* The collectives data-parallel `sdti train` makes per optimizer step (src/train/trainer_dist.c),
 * timed alone under mpirun: per micro-batch the error agreement and the loss sum; per optimizer
 * step the id-range check, the used-row mask over SD1.5's 49408 + N token ids, and the sum of
 * the used rows (768 wide). Prints the mean microseconds per step on rank 0.
 *
 * Usage: mpirun -np 2 <build>/bench/bench_dist [used_rows] [repeats]
 * (bench/bench_train_mpi.sh runs it beside the training runs). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "train/dist.h"

#include "bench_util.h"

int main(int argc, char **argv) {
    int used = argc > 1 ? atoi(argv[1]) : 24;
    int repeats = argc > 2 ? atoi(argv[2]) : 200;
    const int ids = 49408 + 2, width = 768;
    Error err = {0};
    if (dist_init(&err) != 0) {
        fprintf(stderr, "bench_dist: %s\n", err.message);
        return 1;
    }
    float *mask = calloc((size_t)ids, sizeof *mask);
    float *rows = calloc((size_t)used * width, sizeof *rows);
    float *sizes = calloc((size_t)dist_size(), sizeof *sizes);
    if (!mask || !rows || !sizes)
        return 1;
    double t_micro = 0, t_step = 0;
    int rc = 0;
    for (int r = 0; r < repeats + 5 && rc == 0; r++) {
        double t0 = bench_now();
        float loss = 1;
        rc = dist_any_error(0, &err);
        rc = rc ? rc : dist_allreduce_sum_floats(&loss, 1, &err);
        double t1 = bench_now();
        rc = rc ? rc : dist_allreduce_sum_floats(sizes, (size_t)dist_size(), &err);
        rc = rc ? rc : dist_any_error(0, &err);
        rc = rc ? rc : dist_allreduce_sum_floats(mask, (size_t)ids, &err);
        rc = rc ? rc : dist_any_error(0, &err);
        rc = rc ? rc : dist_allreduce_sum_floats(rows, (size_t)used * width, &err);
        double t2 = bench_now();
        if (r >= 5) { /* the first rounds set up the connections */
            t_micro += t1 - t0;
            t_step += t2 - t1;
        }
    }
    if (rc != 0)
        fprintf(stderr, "bench_dist: %s\n", err.message);
    else if (dist_rank() == 0)
        printf("bench_dist: %d ranks, %d used rows: per micro-batch %.1f us, per optimizer step "
               "%.1f us (mean of %d)\n",
               dist_size(), used, 1e6 * t_micro / repeats, 1e6 * t_step / repeats, repeats);
    free(mask);
    free(rows);
    free(sizes);
    dist_finalize();
    return rc != 0;
}
