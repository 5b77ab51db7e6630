/* im2col_layout.c: why the int8 kernels take activations NHWC. The im2col cost of an int8 convolution with the
 * activations NHWC (the library: a kernel row is one run of kw * channels bytes) or NCHW (the Relax graph: runs of
 * kw bytes per channel, gathered, then converted), into the library's column blocks, on ResNet-8's 16x32x32 3x3
 * layer and DS-CNN's 64x25x5 pointwise layer, on the Cortex-M4. Prints instructions per output pixel.
 *
 *   R=targets/mcu; sed -e 's/@FLASH_ORIGIN@/0x0/;s/@FLASH_BYTES@/0x400000/;s/@RAM_ORIGIN@/0x20000000/' \
 *     -e 's/@RAM_BYTES@/0x400000/;s/@STACK_BYTES@/0x2000/;s/@MACHINE@/mps2-an386/' $R/board/mps.ld.in > /tmp/an386.ld
 *   arm-none-eabi-gcc -std=c99 -O2 -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -ffunction-sections \
 *     -fdata-sections -I$R/runtime -I$R/board bench/im2col_layout.c $R/runtime/nn_s8_matmul.c \
 *     $R/runtime/nn_s8_support.c $R/board/startup.c $R/board/board_mps.c -nostartfiles --specs=rdimon.specs \
 *     -T/tmp/an386.ld -Wl,--gc-sections -lm -o /tmp/im2col_layout.elf
 *   qemu-system-arm -M mps2-an386 -nographic -monitor none -serial none -semihosting-config enable=on,target=native \
 *     -icount shift=0 -kernel /tmp/im2col_layout.elf */
#include <stdio.h>
#include <string.h>
#include "board.h"
#include "nn_s8_support.h"

static int8_t input[64 * 32 * 32];
static int16_t block[4 * 64 * 9];
static int8_t staging[64 * 9];

/* NHWC: one run of kw*C bytes per kernel row (interior), as nn_s8_conv.c does. */
static void fill_nhwc(int c_in, int h, int w, int k, int oy, int ox, int column) {
  int ky, at = 0;
  for (ky = 0; ky < k; ++ky) {
    int iy = oy + ky - k / 2;
    if (iy < 0 || iy >= h) { block_pad(block, 4, column, at, k * c_in); at += k * c_in; continue; }
    if (ox - k / 2 >= 0 && ox + k / 2 < w) {
      block_append(block, 4, column, at, input + (iy * w + ox - k / 2) * c_in, k * c_in, -128);
      at += k * c_in;
    } else {
      int kx;
      for (kx = 0; kx < k; ++kx, at += c_in) {
        int ix = ox + kx - k / 2;
        if (ix < 0 || ix >= w) block_pad(block, 4, column, at, c_in);
        else block_append(block, 4, column, at, input + (iy * w + ix) * c_in, c_in, -128);
      }
    }
  }
}

/* NCHW: runs of kw bytes per (channel, kernel row), gathered as int8 then converted; bounds tested per run. */
static void fill_nchw(int c_in, int h, int w, int k, int oy, int ox, int column) {
  int c, ky, kx, at = 0;
  const int x0 = ox - k / 2, inside_x = x0 >= 0 && x0 + k <= w;
  for (c = 0; c < c_in; ++c) {
    const int8_t *plane = input + c * h * w;
    for (ky = 0; ky < k; ++ky) {
      int iy = oy + ky - k / 2;
      if (iy < 0 || iy >= h) {
        for (kx = 0; kx < k; ++kx) staging[at++] = -128;
      } else if (inside_x) {
        const int8_t *run = plane + iy * w + x0;
        for (kx = 0; kx < k; ++kx) staging[at++] = run[kx];
      } else {
        for (kx = 0; kx < k; ++kx) {
          int ix = x0 + kx;
          staging[at++] = (ix < 0 || ix >= w) ? -128 : plane[iy * w + ix];
        }
      }
    }
  }
  block_append(block, 4, column, 0, staging, at, -128);
}

static void measure(const char *name, int c_in, int h, int w, int k, uint32_t milli) {
  int p, layout;
  for (layout = 0; layout < 2; ++layout) {
    uint64_t t0 = board_counter_ticks(), ticks;
    for (p = 0; p < h * w; ++p) {
      if (layout == 0) fill_nhwc(c_in, h, w, k, p / w, p % w, p & 3);
      else fill_nchw(c_in, h, w, k, p / w, p % w, p & 3);
    }
    ticks = board_counter_ticks() - t0;
    printf("%s %s: %lu instructions per output pixel\n", name, layout == 0 ? "NHWC" : "NCHW",
           (unsigned long)(ticks * milli / 1000 / (uint64_t)(h * w)));
  }
}

int main(void) {
  uint32_t milli = board_counter_start();
  measure("resnet8 16x32x32 3x3", 16, 32, 32, 3, milli);
  measure("dscnn 64x25x5 1x1", 64, 25, 5, 1, milli);
  return 0;
}
