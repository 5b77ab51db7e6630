/* nn_window.h: which taps of a sliding window lie inside the input, for the kernels that skip padding (depthwise
 * convolution, pools) instead of copying it: one range per output pixel, no test per tap or value. */
#ifndef NN_WINDOW_H
#define NN_WINDOW_H

#include "eenn_nn.h"

typedef struct {
  int32_t ky0, ky1, kx0, kx1; /* taps [ky0, ky1) x [kx0, kx1) lie inside the input */
  intptr_t origin;            /* element offset of tap (0, 0) in the input: may lie in the padding */
  intptr_t tap_x, tap_y;      /* element offsets from one tap to the next along x and along y */
} window_taps_t;

/* The taps [*first, *end) along one axis whose input index start + k * dilation lies in [0, size). */
static inline void tap_range(int32_t start, int32_t kernel, int32_t dilation, int32_t size, int32_t *first,
                             int32_t *end) {
  int32_t k0 = 0, k1 = kernel;
  while (k0 < k1 && start + k0 * dilation < 0) ++k0;
  while (k1 > k0 && start + (k1 - 1) * dilation >= size) --k1;
  *first = k0;
  *end = k1;
}

static inline window_taps_t window_taps(const eenn_window_t *w, int32_t oy, int32_t ox) {
  window_taps_t t;
  const int32_t y0 = oy * w->stride_height - w->pad_top, x0 = ox * w->stride_width - w->pad_left;
  tap_range(y0, w->kernel_height, w->dilation_height, w->input_height, &t.ky0, &t.ky1);
  tap_range(x0, w->kernel_width, w->dilation_width, w->input_width, &t.kx0, &t.kx1);
  t.tap_x = (intptr_t)w->dilation_width * w->input_channels;
  t.tap_y = (intptr_t)w->dilation_height * w->input_width * w->input_channels;
  t.origin = ((intptr_t)y0 * w->input_width + x0) * w->input_channels;
  return t;
}

/* Element offset of the first inside tap of kernel row ky. */
static inline intptr_t window_row(const window_taps_t *t, int32_t ky) {
  return t->origin + ky * t->tap_y + t->kx0 * t->tap_x;
}

static inline int32_t window_count(const window_taps_t *t) { return (t->ky1 - t->ky0) * (t->kx1 - t->kx0); }

/* base + offset bytes, where the result may lie outside base's array (a window's origin in the padding): computed
 * on addresses, since C pointer arithmetic may not leave an array; only addresses back inside are read. */
static inline const int8_t *address_at(const int8_t *base, intptr_t offset) {
  return (const int8_t *)((uintptr_t)base + (uintptr_t)offset);
}

/* visit(context, taps of the window, index of the output pixel) for every output pixel of w, in order. */
typedef void (*window_visit_t)(const void *context, const window_taps_t *taps, int32_t pixel);

static inline void for_each_window(const eenn_window_t *w, window_visit_t visit, const void *context) {
  int32_t oy, ox, pixel = 0;
  for (oy = 0; oy < w->output_height; ++oy)
    for (ox = 0; ox < w->output_width; ++ox, ++pixel) {
      const window_taps_t taps = window_taps(w, oy, ox);
      visit(context, &taps, pixel);
    }
}

#endif /* NN_WINDOW_H */
