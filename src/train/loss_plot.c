/* The loss-curve PNG: a hand-drawn line plot (no plotting or font library) written with
 * libpng's simplified API. See loss_plot.h. */
#include <math.h>
#include <png.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "train/loss_plot.h"

enum { MARGIN_LEFT = 48, MARGIN_RIGHT = 16, MARGIN_TOP = 16, MARGIN_BOTTOM = 32, DIVISIONS = 5 };

typedef struct Canvas {
    uint8_t *rgb;
    int width, height;
} Canvas;

typedef struct Color {
    uint8_t r, g, b;
} Color;

static void put_pixel(Canvas *c, int x, int y, Color col) {
    if (x < 0 || y < 0 || x >= c->width || y >= c->height)
        return;
    uint8_t *p = c->rgb + ((size_t)y * (size_t)c->width + (size_t)x) * 3;
    p[0] = col.r;
    p[1] = col.g;
    p[2] = col.b;
}

/* Bresenham's line; thickness 2 adds the pixel below and to the right of each point. */
static void draw_line(Canvas *c, int x0, int y0, int x1, int y1, Color col, int thickness) {
    int dx = abs(x1 - x0), dy = -abs(y1 - y0);
    int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int e = dx + dy;
    for (;;) {
        for (int ty = 0; ty < thickness; ty++)
            for (int tx = 0; tx < thickness; tx++)
                put_pixel(c, x0 + tx, y0 + ty, col);
        if (x0 == x1 && y0 == y1)
            break;
        int e2 = 2 * e;
        if (e2 >= dy) {
            e += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            e += dx;
            y0 += sy;
        }
    }
}

void loss_plot_trailing_mean(const double *loss, size_t count, double *mean) {
    size_t window = count / 10 > 1 ? count / 10 : 1;
    double sum = 0;
    size_t finite = 0;
    for (size_t i = 0; i < count; i++) {
        if (isfinite(loss[i])) {
            sum += loss[i];
            finite++;
        }
        if (i >= window && isfinite(loss[i - window])) {
            sum -= loss[i - window];
            finite--;
        }
        mean[i] = finite ? sum / (double)finite : NAN;
    }
}

/* The range of the finite values of a and b, widened by 5% (and around a single value). */
static void value_range(const double *a, const double *b, size_t count, double *lo, double *hi) {
    double mn = INFINITY, mx = -INFINITY;
    for (size_t i = 0; i < count; i++) {
        const double v[2] = {a[i], b[i]};
        for (int k = 0; k < 2; k++)
            if (isfinite(v[k])) {
                mn = fmin(mn, v[k]);
                mx = fmax(mx, v[k]);
            }
    }
    if (!(mn <= mx)) {
        mn = 0;
        mx = 1;
    }
    double pad = (mx - mn) * 0.05;
    if (pad <= 0)
        pad = fabs(mx) > 0 ? fabs(mx) * 0.5 : 0.5;
    *lo = mn - pad;
    *hi = mx + pad;
}

static void draw_series(Canvas *c, const int64_t *steps, const double *v, size_t count, double x0,
                        double x1, double lo, double hi, Color col, int thickness) {
    int pw = c->width - MARGIN_LEFT - MARGIN_RIGHT, ph = c->height - MARGIN_TOP - MARGIN_BOTTOM;
    bool have_prev = false;
    int px = 0, py = 0;
    for (size_t i = 0; i < count; i++) {
        if (!isfinite(v[i])) {
            have_prev = false;
            continue;
        }
        double fx = x1 > x0 ? ((double)steps[i] - x0) / (x1 - x0) : 0.5;
        double fy = (v[i] - lo) / (hi - lo);
        int x = MARGIN_LEFT + (int)lround(fx * (pw - 1));
        int y = MARGIN_TOP + (ph - 1) - (int)lround(fy * (ph - 1));
        if (have_prev)
            draw_line(c, px, py, x, y, col, thickness);
        else
            draw_line(c, x, y, x, y, col, thickness);
        px = x;
        py = y;
        have_prev = true;
    }
}

int loss_plot_draw(const int64_t *steps, const double *loss, size_t count, uint8_t *rgb,
                   Error *err) {
    Canvas c = {rgb, LOSS_PLOT_WIDTH, LOSS_PLOT_HEIGHT};
    memset(rgb, 255, (size_t)c.width * (size_t)c.height * 3);
    double *mean = malloc(sizeof(double) * (count ? count : 1));
    if (!mean)
        return error_set(err, "out of memory");
    loss_plot_trailing_mean(loss, count, mean);
    double lo, hi;
    value_range(loss, mean, count, &lo, &hi);
    double x0 = count ? (double)steps[0] : 0, x1 = count ? (double)steps[count - 1] : 1;
    int left = MARGIN_LEFT, right = c.width - MARGIN_RIGHT - 1;
    int top = MARGIN_TOP, bottom = c.height - MARGIN_BOTTOM - 1;
    const Color grid = {225, 225, 225}, axis = {0, 0, 0};
    for (int d = 0; d <= DIVISIONS; d++) {
        int x = left + (right - left) * d / DIVISIONS;
        int y = bottom - (bottom - top) * d / DIVISIONS;
        draw_line(&c, x, top, x, bottom, grid, 1);
        draw_line(&c, left, y, right, y, grid, 1);
        draw_line(&c, x, bottom, x, bottom + 5, axis, 1); /* ticks outside the frame */
        draw_line(&c, left - 5, y, left, y, axis, 1);
    }
    draw_line(&c, left, top, right, top, axis, 1);
    draw_line(&c, left, bottom, right, bottom, axis, 1);
    draw_line(&c, left, top, left, bottom, axis, 1);
    draw_line(&c, right, top, right, bottom, axis, 1);
    draw_series(&c, steps, loss, count, x0, x1, lo, hi, (Color){150, 190, 235}, 1);
    draw_series(&c, steps, mean, count, x0, x1, lo, hi, (Color){200, 40, 30}, 2);
    free(mean);
    return 0;
}

int loss_plot_write_png(const char *path, const int64_t *steps, const double *loss, size_t count,
                        Error *err) {
    size_t size = (size_t)LOSS_PLOT_WIDTH * LOSS_PLOT_HEIGHT * 3;
    uint8_t *rgb = malloc(size);
    if (!rgb)
        return error_set(err, "out of memory");
    if (loss_plot_draw(steps, loss, count, rgb, err) != 0) {
        free(rgb);
        return -1;
    }
    AtomicFile af;
    if (atomic_file_open(&af, path, err) != 0) {
        free(rgb);
        return -1;
    }
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    image.width = LOSS_PLOT_WIDTH;
    image.height = LOSS_PLOT_HEIGHT;
    image.format = PNG_FORMAT_RGB;
    int ok = png_image_write_to_stdio(&image, af.fp, 0, rgb, 0, NULL);
    free(rgb);
    if (!ok) {
        error_set(err, "%s: cannot write the PNG: %s", path, image.message);
        png_image_free(&image);
        atomic_file_abort(&af);
        return -1;
    }
    return atomic_file_commit(&af, err);
}
