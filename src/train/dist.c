/* See dist.h. With SDTI_HAVE_MPI the functions talk to Open MPI (MPI_COMM_WORLD); without it
 * they are the single-rank versions. MPI keeps the job's state itself (initialised or not,
 * rank, size), so this file keeps none of its own. */
#include "train/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef SDTI_HAVE_MPI
#include <limits.h>
#include <mpi.h>

bool dist_built_with_mpi(void) {
    return true;
}

static bool mpi_running(void) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    return init && !fin;
}

/* mpirun (Open MPI), PMIx launchers and Slurm's srun leave these in each rank's environment. */
static bool started_by_launcher(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", NULL};
    for (int i = 0; vars[i]; i++)
        if (getenv(vars[i]))
            return true;
    return false;
}

int dist_init(Error *err) {
    if (mpi_running() || !started_by_launcher())
        return 0;
    if (MPI_Init(NULL, NULL) != MPI_SUCCESS)
        return error_set(err, "MPI_Init failed (is this sdti started by a working mpirun?)");
    /* errors come back as codes, so a rank can report them instead of dying silently */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    return 0;
}

void dist_finalize(void) {
    if (mpi_running())
        MPI_Finalize();
}

int dist_rank(void) {
    int r = 0;
    if (mpi_running())
        MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

int dist_size(void) {
    int n = 1;
    if (mpi_running())
        MPI_Comm_size(MPI_COMM_WORLD, &n);
    return n;
}

int dist_local_size(void) {
    if (!mpi_running())
        return 1;
    MPI_Comm local;
    int n = 1;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) ==
        MPI_SUCCESS) {
        MPI_Comm_size(local, &n);
        MPI_Comm_free(&local);
    }
    return n;
}

static int mpi_failed(int code, const char *what, Error *err) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, text, &len);
    return error_set(err, "%s failed on rank %d: %s", what, dist_rank(), text);
}

int dist_allreduce_sum_floats(float *data, size_t count, Error *err) {
    if (dist_size() == 1)
        return 0;
    bool root = dist_rank() == 0;
    while (count > 0) {
        int n = count > (size_t)INT_MAX ? INT_MAX : (int)count;
        int rc = MPI_Reduce(root ? MPI_IN_PLACE : data, root ? data : NULL, n, MPI_FLOAT, MPI_SUM,
                            0, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS)
            return mpi_failed(rc, "MPI_Reduce", err);
        rc = MPI_Bcast(data, n, MPI_FLOAT, 0, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS)
            return mpi_failed(rc, "MPI_Bcast", err);
        data += n;
        count -= (size_t)n;
    }
    return 0;
}

int dist_any_error(int rc, Error *err) {
    int size = dist_size();
    if (size == 1)
        return rc != 0 ? -1 : 0;
    int rank = dist_rank();
    int mine = rc != 0 ? rank : size, first = size;
    int mrc = MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (mrc != MPI_SUCCESS)
        return mpi_failed(mrc, "MPI_Allreduce (error check)", err);
    if (first == size)
        return 0;
    Error shared;
    memset(&shared, 0, sizeof shared);
    if (rank == first) {
        /* a message agreed on before (the ranks stop together) keeps its one prefix */
        const char *own = err ? err->message : "failed";
        int r = 0, n = 0, end = 0;
        if (sscanf(own, "rank %d of %d: %n", &r, &n, &end) == 2 && end > 0)
            snprintf(shared.message, sizeof shared.message, "%s", own);
        else
            snprintf(shared.message, sizeof shared.message, "rank %d of %d: %.980s", rank, size,
                     own);
    }
    mrc = MPI_Bcast(shared.message, (int)sizeof shared.message, MPI_CHAR, first, MPI_COMM_WORLD);
    if (mrc != MPI_SUCCESS)
        return mpi_failed(mrc, "MPI_Bcast (error message)", err);
    shared.message[sizeof shared.message - 1] = '\0';
    return error_set(err, "%s", shared.message);
}

#else /* single rank */

bool dist_built_with_mpi(void) {
    return false;
}

int dist_init(Error *err) {
    /* under mpirun with several ranks, each would train alone and write the same files */
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", NULL};
    for (int i = 0; vars[i]; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 1)
            return error_set(err,
                             "started by mpirun with %s ranks, but this sdti is built without "
                             "MPI (`sdti --version`): install libopenmpi-dev and rebuild, or "
                             "run one process",
                             v);
    }
    return 0;
}

void dist_finalize(void) {}

int dist_rank(void) {
    return 0;
}

int dist_size(void) {
    return 1;
}

int dist_local_size(void) {
    return 1;
}

int dist_allreduce_sum_floats(float *data, size_t count, Error *err) {
    (void)data;
    (void)count;
    (void)err;
    return 0;
}

int dist_any_error(int rc, Error *err) {
    (void)err;
    return rc != 0 ? -1 : 0;
}

#endif
