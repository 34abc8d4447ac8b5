/* Data-parallel training across processes (Open MPI), as a thin layer: the trainer asks who it
 * is (rank of size), sums float buffers over every rank, and agrees on errors, and nothing
 * else knows MPI exists. Built without MPI (or run without mpirun) every function is the
 * single-rank version: rank 0 of 1, sums are the identity, an error is this process's own.
 *
 * Collectives (dist_allreduce_sum_floats, dist_any_error, dist_barrier) must be called by
 * every rank in the same order; a rank that failed must still reach the next dist_any_error
 * (the trainer calls it after each micro-batch and each optimizer step) so the others never
 * wait for it forever. See docs/distributed.md. */
#ifndef SDTI_TRAIN_DIST_H
#define SDTI_TRAIN_DIST_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"

/* True when this sdti was built with MPI. */
bool dist_built_with_mpi(void);
/* Joins the MPI job when the process was started by mpirun (Open MPI's / PMIx's environment
 * variables); otherwise stays a single rank and never touches MPI, so a plain `sdti train`
 * runs as before. */
int dist_init(Error *err);
/* Leaves the MPI job (a no-op for a single rank). */
void dist_finalize(void);
int dist_rank(void);
int dist_size(void);
/* Ranks on this machine (for the threads-per-rank budget); 1 without MPI. */
int dist_local_size(void);

/* data[i] = the sum over ranks of data[i], with the same bits on every rank (reduced on rank 0
 * in rank order, then broadcast: MPI_Allreduce does not promise identical rounding on every
 * rank, and the ranks' optimizer steps must stay identical). */
int dist_allreduce_sum_floats(float *data, size_t count, Error *err);

/* Collective: every rank passes its own rc (0 ok, else failed with *err filled). Returns 0 on
 * every rank when all succeeded; otherwise -1 on every rank, with *err on every rank set to the
 * lowest failing rank's message prefixed by "rank r of n: ". */
int dist_any_error(int rc, Error *err);

#endif
