/* kohya's bucket arithmetic, with Python's int()/floor semantics spelled out: int(x + 0.5)
 * truncates toward zero (sizes are positive, so it is a round-half-up), `//` on floats
 * floors. */
#include "train/buckets.h"

/* Python rounds a * b + c twice; clang -march=native would fuse it into one FMA. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

static int cmp_reso(const void *a, const void *b) {
    const BucketReso *x = a, *y = b;
    if (x->width != y->width)
        return x->width < y->width ? -1 : 1;
    return (x->height > y->height) - (x->height < y->height);
}

static void add_unique(BucketReso *list, size_t *n, BucketReso r) {
    for (size_t i = 0; i < *n; i++)
        if (list[i].width == r.width && list[i].height == r.height)
            return;
    list[(*n)++] = r;
}

int bucket_make_resolutions(BucketReso max_reso, int min_size, int max_size, int divisible,
                            BucketReso **out, size_t *count, Error *err) {
    if (divisible <= 0 || min_size <= 0 || max_size < min_size)
        return error_set(err, "bucket sizes: need 0 < min (%d) <= max (%d) and steps > 0 (%d)",
                         min_size, max_size, divisible);
    long long max_area = (long long)max_reso.width * max_reso.height;
    size_t cap = 1 + 2 * (size_t)((max_size - min_size) / divisible + 1);
    BucketReso *list = malloc(sizeof *list * cap);
    if (!list)
        return error_set(err, "out of memory");
    size_t n = 0;
    int side = (int)(floor(sqrt((double)max_area) / divisible)) * divisible;
    add_unique(list, &n, (BucketReso){side, side});
    for (int width = min_size; width <= max_size; width += divisible) {
        long long h = (max_area / width) / divisible * divisible;
        int height = (int)(h < max_size ? h : max_size);
        if (height >= min_size) {
            add_unique(list, &n, (BucketReso){width, height});
            add_unique(list, &n, (BucketReso){height, width});
        }
    }
    qsort(list, n, sizeof *list, cmp_reso);
    *out = list;
    *count = n;
    return 0;
}

int bucket_adjust_min_max(BucketReso resolution, int *min_reso, int *max_reso, int steps,
                          Error *err) {
    if (steps <= 0)
        return error_set(err, "bucket_reso_steps must be positive (got %d)", steps);
    if (*min_reso % steps != 0) {
        int adj = *min_reso - *min_reso % steps;
        log_warning("min_bucket_reso is adjusted to be multiple of bucket_reso_steps: %d -> %d",
                    *min_reso, adj);
        *min_reso = adj;
    }
    if (*max_reso % steps != 0) {
        int adj = *max_reso + steps - *max_reso % steps;
        log_warning("max_bucket_reso is adjusted to be multiple of bucket_reso_steps: %d -> %d",
                    *max_reso, adj);
        *max_reso = adj;
    }
    int lo = resolution.width < resolution.height ? resolution.width : resolution.height;
    int hi = resolution.width > resolution.height ? resolution.width : resolution.height;
    if (lo < *min_reso)
        return error_set(err,
                         "min_bucket_reso (%d) is larger than the resolution's short side (%d): "
                         "lower min_bucket_reso or raise the resolution",
                         *min_reso, lo);
    if (hi > *max_reso)
        return error_set(err,
                         "max_bucket_reso (%d) is smaller than the resolution's long side (%d): "
                         "raise max_bucket_reso or lower the resolution",
                         *max_reso, hi);
    return 0;
}

static int set_predefined(BucketManager *m, BucketReso *list, size_t n, Error *err) {
    m->predefined = list;
    m->predefined_count = n;
    m->predefined_ar = malloc(sizeof(double) * (n ? n : 1));
    if (!m->predefined_ar)
        return error_set(err, "out of memory");
    for (size_t i = 0; i < n; i++)
        m->predefined_ar[i] = (double)list[i].width / list[i].height;
    return 0;
}

int bucket_manager_init(BucketManager *m, bool no_upscale, BucketReso max_reso, int min_size,
                        int max_size, int reso_steps, Error *err) {
    memset(m, 0, sizeof *m);
    if (max_size < max_reso.width || max_size < max_reso.height)
        return error_set(err, "max_bucket_reso (%d) must be at least the resolution %dx%d",
                         max_size, max_reso.width, max_reso.height);
    if (max_size < min_size)
        return error_set(err, "max_bucket_reso (%d) must be at least min_bucket_reso (%d)",
                         max_size, min_size);
    m->no_upscale = no_upscale;
    m->max_reso = max_reso;
    m->min_size = min_size;
    m->max_size = max_size;
    m->reso_steps = reso_steps;
    if (no_upscale)
        return 0;
    BucketReso *list;
    size_t n;
    if (bucket_make_resolutions(max_reso, min_size, max_size, reso_steps, &list, &n, err) != 0)
        return -1;
    if (set_predefined(m, list, n, err) != 0) {
        bucket_manager_free(m);
        return -1;
    }
    return 0;
}

int bucket_manager_init_single(BucketManager *m, BucketReso resolution, Error *err) {
    memset(m, 0, sizeof *m);
    m->max_reso = resolution;
    BucketReso *list = malloc(sizeof *list);
    if (!list)
        return error_set(err, "out of memory");
    list[0] = resolution;
    if (set_predefined(m, list, 1, err) != 0) {
        bucket_manager_free(m);
        return -1;
    }
    return 0;
}

void bucket_manager_free(BucketManager *m) {
    free(m->predefined);
    free(m->predefined_ar);
    memset(m, 0, sizeof *m);
}

static int round_to_steps(double x, int steps) {
    int v = (int)(x + 0.5);
    return v - v % steps;
}

int bucket_select(const BucketManager *m, int w, int h, BucketReso *bucket, BucketReso *resized,
                  double *ar_error, Error *err) {
    if (w <= 0 || h <= 0)
        return error_set(err, "image size %dx%d has no pixels", w, h);
    double ar = (double)w / h;
    BucketReso reso;
    if (!m->no_upscale) {
        /* An image already at a predefined size keeps it; otherwise the nearest ratio (the
         * first on ties, as numpy's argmin). */
        size_t best = 0;
        bool exact = false;
        for (size_t i = 0; i < m->predefined_count; i++)
            if (m->predefined[i].width == w && m->predefined[i].height == h) {
                best = i;
                exact = true;
                break;
            }
        if (!exact)
            for (size_t i = 1; i < m->predefined_count; i++)
                if (fabs(m->predefined_ar[i] - ar) < fabs(m->predefined_ar[best] - ar))
                    best = i;
        reso = m->predefined[best];
        double ar_reso = (double)reso.width / reso.height;
        double scale = ar > ar_reso ? (double)reso.height / h : (double)reso.width / w;
        resized->width = (int)(w * scale + 0.5);
        resized->height = (int)(h * scale + 0.5);
    } else {
        double max_area = (double)m->max_reso.width * m->max_reso.height;
        int steps = m->reso_steps;
        if ((double)w * h > max_area) {
            double rw = sqrt(max_area * ar), rh = max_area / rw;
            int bw = round_to_steps(rw, steps);
            int bh_w = round_to_steps(bw / ar, steps);
            int bh = round_to_steps(rh, steps);
            int bw_h = round_to_steps(bh * ar, steps);
            if (bh_w == 0 || bh == 0)
                return error_set(err, "image %dx%d is too narrow for bucket_no_upscale at %d steps",
                                 w, h, steps);
            double ar_w = (double)bw / bh_w, ar_h = (double)bw_h / bh;
            if (fabs(ar_w - ar) < fabs(ar_h - ar)) {
                resized->width = bw;
                resized->height = (int)(bw / ar + 0.5);
            } else {
                resized->width = (int)(bh * ar + 0.5);
                resized->height = bh;
            }
        } else {
            resized->width = w;
            resized->height = h;
        }
        reso.width = resized->width - resized->width % steps;
        reso.height = resized->height - resized->height % steps;
    }
    if (reso.width <= 0 || reso.height <= 0)
        return error_set(err,
                         "image %dx%d gives an empty bucket (%dx%d): it is smaller than "
                         "bucket_reso_steps (%d) on one side",
                         w, h, reso.width, reso.height, m->reso_steps);
    *bucket = reso;
    if (ar_error)
        *ar_error = (double)reso.width / reso.height - ar;
    return 0;
}

void bucket_crop_ltrb(BucketReso bucket, int image_w, int image_h, double ltrb[4]) {
    double bucket_ar = (double)bucket.width / bucket.height;
    double image_ar = (double)image_w / image_h;
    double rw, rh;
    if (bucket_ar > image_ar) {
        rw = bucket.height * image_ar;
        rh = bucket.height;
    } else {
        rw = bucket.width;
        rh = bucket.width / image_ar;
    }
    ltrb[0] = floor((bucket.width - rw) / 2);
    ltrb[1] = floor((bucket.height - rh) / 2);
    ltrb[2] = ltrb[0] + rw;
    ltrb[3] = ltrb[1] + rh;
}
