/* nn_s8_depthwise.c: int8 depthwise convolution (one filter per channel), NHWC.
 *
 * The weights are split once per call into 16-bit pairs (SXTB16) in the scratch buffer: one record per four
 * channels and tap, with the tap's offset from the window's origin. Each output pixel then takes its window's taps
 * that lie inside the input (padding holds the zero point and adds nothing, so no value is bounds-tested), four
 * channels at a time: a tap costs one word of input split likewise (SXTAB16 takes the zero point off), its record
 * and four SMLABB / SMLATT. */
#include "nn_s8_support.h"
#include "nn_window.h"

/* Four channels' weights of one tap as the multiply-adds take them (DSP: the int16 pairs (w0, w2) and (w1, w3);
 * otherwise the four int8 in `even`), and where the tap reads from the window's origin, in elements. */
typedef struct {
  uint32_t even, odd;
  int32_t offset;
} tap_weights_t;

/* The four channels' accumulators, in registers (an array would live on the stack). */
typedef struct {
  int32_t a0, a1, a2, a3;
} sums_t;

/* The parameters the loops use, in locals: stores through int8_t pointers may alias anything, so fields read
 * through `conv` would be loaded again after every store. */
typedef struct {
  const int8_t *input;
  const tap_weights_t *weights; /* [channel groups][taps] */
  const int32_t *bias;
  const eenn_scale_t *scales;
  output_stage_t stage;
  int32_t channels, taps, kernel_width, zero_point;
} depthwise_t;

size_t eenn_depthwise_s8_scratch_bytes(const eenn_conv_s8_t *conv) {
  const eenn_window_t *w = &conv->window;
  return (size_t)(w->input_channels / 4) * (size_t)(w->kernel_height * w->kernel_width) * sizeof(tap_weights_t);
}

static void split_weights(const int8_t *weights, const eenn_window_t *w, tap_weights_t *split) {
  const int32_t channels = w->input_channels, taps = w->kernel_height * w->kernel_width;
  int32_t c, k;
  for (c = 0; c + 4 <= channels; c += 4) {
    for (k = 0; k < taps; ++k, ++split) {
      const uint32_t v = read_s8x4(weights + k * channels + c);
      const int32_t ky = k / w->kernel_width, kx = k % w->kernel_width;
      split->offset = (ky * w->dilation_height * w->input_width + kx * w->dilation_width) * channels;
#if EENN_DSP
      split->even = (uint32_t)__sxtb16(v);
      split->odd = (uint32_t)sxtb16_ror8(v);
#else
      split->even = v;
      split->odd = 0;
#endif
    }
  }
}

/* acc += (x - z) * w for the four channels at x. */
EENN_INLINE void tap_4(sums_t *acc, const int8_t *x, const tap_weights_t *w, int32_t zero_point) {
#if EENN_DSP
  const uint32_t v = read_s8x4(x), offset = offset_pair(zero_point);
  const int32_t x02 = __sxtab16(offset, v), x13 = sxtab16_ror8(offset, v);
  acc->a0 = __smlabb(x02, (int32_t)w->even, acc->a0);
  acc->a2 = __smlatt(x02, (int32_t)w->even, acc->a2);
  acc->a1 = __smlabb(x13, (int32_t)w->odd, acc->a1);
  acc->a3 = __smlatt(x13, (int32_t)w->odd, acc->a3);
#else
  acc->a0 += (x[0] - zero_point) * (int8_t)w->even;
  acc->a1 += (x[1] - zero_point) * (int8_t)(w->even >> 8);
  acc->a2 += (x[2] - zero_point) * (int8_t)(w->even >> 16);
  acc->a3 += (x[3] - zero_point) * (int8_t)(w->even >> 24);
#endif
}

EENN_INLINE void store_4(const depthwise_t *d, sums_t acc, const eenn_scale_t *scales, int8_t *out) {
  if (EENN_LIKELY(d->stage.fast)) {
    out[0] = (int8_t)output_fast(&d->stage, acc.a0, scales[0]);
    out[1] = (int8_t)output_fast(&d->stage, acc.a1, scales[1]);
    out[2] = (int8_t)output_fast(&d->stage, acc.a2, scales[2]);
    out[3] = (int8_t)output_fast(&d->stage, acc.a3, scales[3]);
  } else {
    out[0] = (int8_t)output_value(&d->stage, acc.a0, scales[0]);
    out[1] = (int8_t)output_value(&d->stage, acc.a1, scales[1]);
    out[2] = (int8_t)output_value(&d->stage, acc.a2, scales[2]);
    out[3] = (int8_t)output_value(&d->stage, acc.a3, scales[3]);
  }
}

#if EENN_ASM
/* One tap, written out: GCC spills around a loop of these (about 14 instructions a tap); here a tap is 9. */
#define TAP_ASM                                 \
  "ldr %[v], [%[w], #8]\n\t"                    \
  "ldr %[v], [%[x], %[v]]\n\t"                  \
  "ldrd %[even], %[odd], [%[w]], #12\n\t"       \
  "sxtab16 %[t], %[offset], %[v]\n\t"           \
  "sxtab16 %[v], %[offset], %[v], ror #8\n\t"   \
  "smlabb %[a0], %[t], %[even], %[a0]\n\t"      \
  "smlatt %[a2], %[t], %[even], %[a2]\n\t"      \
  "smlabb %[a1], %[v], %[odd], %[a1]\n\t"       \
  "smlatt %[a3], %[v], %[odd], %[a3]\n\t"
#endif

/* acc += `count` (> 0) consecutive taps from the window at x: a kernel row inside the input, or a whole window. */
EENN_INLINE void taps_4(sums_t *acc, const int8_t *x, const tap_weights_t *w, int32_t count, int32_t zero_point) {
#if EENN_ASM
  int32_t a0 = acc->a0, a1 = acc->a1, a2 = acc->a2, a3 = acc->a3;
  uint32_t v, t, even, odd;
  if (count == 9) { /* 3x3, the usual kernel, without the loop */
    __asm volatile(TAP_ASM TAP_ASM TAP_ASM TAP_ASM TAP_ASM TAP_ASM TAP_ASM TAP_ASM TAP_ASM
                   : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [w] "+r"(w), [v] "=&r"(v),
                     [t] "=&r"(t), [even] "=&r"(even), [odd] "=&r"(odd)
                   : [x] "r"(x), [offset] "r"(offset_pair(zero_point))
                   : "memory");
  } else {
    __asm volatile("1:\n\t" TAP_ASM "subs %[n], %[n], #1\n\tbne 1b"
                   : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [w] "+r"(w), [n] "+r"(count),
                     [v] "=&r"(v), [t] "=&r"(t), [even] "=&r"(even), [odd] "=&r"(odd)
                   : [x] "r"(x), [offset] "r"(offset_pair(zero_point))
                   : "cc", "memory");
  }
  acc->a0 = a0, acc->a1 = a1, acc->a2 = a2, acc->a3 = a3;
#else
  for (; count > 0; --count, ++w) tap_4(acc, address_at(x, w->offset), w, zero_point);
#endif
}

/* The bias of channels [c, c + 4), where accumulation starts. */
EENN_INLINE sums_t bias_4(const int32_t *bias, int32_t c) {
  sums_t acc = {0, 0, 0, 0};
  if (bias != NULL) acc.a0 = bias[c], acc.a1 = bias[c + 1], acc.a2 = bias[c + 2], acc.a3 = bias[c + 3];
  return acc;
}

/* Every group of four channels of one output pixel whose window lies inside the input (the usual pixel: the
 * decision is taken once for all its channels). */
static void pixel_inside(const depthwise_t *d, const int8_t *origin, int8_t *out) {
  const tap_weights_t *w = d->weights;
  int32_t c;
  for (c = 0; c + 4 <= d->channels; c += 4, w += d->taps) {
    sums_t acc = bias_4(d->bias, c);
    taps_4(&acc, origin + c, w, d->taps, d->zero_point);
    store_4(d, acc, d->scales + c, out + c);
  }
}

/* Every group of four channels of one output pixel at the border: the taps inside, row by row. */
static void pixel_border(const depthwise_t *d, const window_taps_t *t, const int8_t *origin, int8_t *out) {
  const tap_weights_t *w = d->weights + t->kx0;
  const int32_t count = t->kx1 - t->kx0;
  int32_t c, ky;
  for (c = 0; c + 4 <= d->channels; c += 4, w += d->taps) {
    sums_t acc = bias_4(d->bias, c);
    for (ky = t->ky0; ky < t->ky1 && count > 0; ++ky)
      taps_4(&acc, address_at(origin, c), w + ky * d->kernel_width, count, d->zero_point);
    store_4(d, acc, d->scales + c, out + c);
  }
}

/* Channel c of one output pixel (the channels left over from the groups of four). */
static void channel_1(const depthwise_t *d, const eenn_conv_s8_t *conv, const window_taps_t *t, int32_t c,
                      int8_t *out) {
  int32_t acc = d->bias != NULL ? d->bias[c] : 0, ky, kx;
  for (ky = t->ky0; ky < t->ky1; ++ky) {
    const int8_t *x = d->input + (window_row(t, ky) + c);
    const int8_t *w = conv->weights + (ky * d->kernel_width + t->kx0) * d->channels + c;
    for (kx = t->kx1 - t->kx0; kx > 0; --kx, x += t->tap_x, w += d->channels) acc += (*x - d->zero_point) * *w;
  }
  out[c] = (int8_t)output_value(&d->stage, acc, d->scales[c]);
}

void eenn_depthwise_s8(const eenn_conv_s8_t *conv, const int8_t *input, int8_t *output, void *scratch) {
  const eenn_window_t w = conv->window;
  depthwise_t d;
  int32_t oy, ox, c;
  d.input = input;
  d.weights = (const tap_weights_t *)scratch;
  d.bias = conv->bias;
  d.scales = conv->scales;
  d.stage = output_stage(conv->output, conv->scales, w.output_channels);
  d.channels = w.input_channels;
  d.taps = w.kernel_height * w.kernel_width;
  d.kernel_width = w.kernel_width;
  d.zero_point = conv->input_zero_point;
  split_weights(conv->weights, &w, (tap_weights_t *)scratch);
  for (oy = 0; oy < w.output_height; ++oy) {
    for (ox = 0; ox < w.output_width; ++ox, output += d.channels) {
      const window_taps_t t = window_taps(&w, oy, ox);
      const int8_t *origin = address_at(input, t.origin); /* may lie in the padding */
      if (window_count(&t) == d.taps)
        pixel_inside(&d, origin, output);
      else
        pixel_border(&d, &t, origin, output);
      for (c = d.channels & ~3; c < d.channels; ++c) channel_1(&d, conv, &t, c, output);
    }
  }
}
