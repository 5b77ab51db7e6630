/* verify_main.c: runs eenn_infer on every input in inputs.bin and writes one record per sample to
 * results.bin, and for a sample the device hands over (EENN_CONTINUE) its live tensor to live.bin
 * (semihosting file I/O on the target, plain files on the host). `eenn-tvm verify` and `run` drive it.
 * With -DEENN_VERIFY_INT8_INPUT (eenn_verify_int8, `eenn-tvm verify --int8-input`) the inputs are int8, quantised
 * by the host with EENN_INPUT_SCALE and EENN_INPUT_ZERO_POINT, and go to eenn_infer_int8; every other one starts
 * one byte past an aligned address, so both of its ways (in place, from a copy) run. With -DEENN_VERIFY_STREAM_RULE
 * (eenn_verify_stream_rule, `eenn-tvm verify --stream`) the inputs are the windows of one stream, in order, and go to
 * eenn_infer_stream. */
#include <stdio.h>

#include "board.h"
#include "eenn_model.h"
#include "record.h"

#if defined(EENN_VERIFY_INT8_INPUT)
typedef int8_t input_t;
#define INFER eenn_infer_int8
#define OFFSET(sample) ((sample) % 2)
#elif defined(EENN_VERIFY_STREAM_RULE)
typedef float input_t;
#define INFER eenn_infer_stream
#define OFFSET(sample) 0
#else
typedef float input_t;
#define INFER eenn_infer
#define OFFSET(sample) 0
#endif

static input_t inputs[EENN_INPUT_ELEMENTS + 1] __attribute__((aligned(16)));

int main(void) {
  FILE *in = fopen("inputs.bin", "rb"), *out = fopen("results.bin", "wb"), *live = fopen("live.bin", "wb");
  uint32_t milli_instructions_per_tick;
  size_t samples = 0;
  if (in == NULL || out == NULL || live == NULL) {
    printf("eenn: cannot open inputs.bin, results.bin or live.bin\n");
    return 1;
  }
#ifdef EENN_VERIFY_STREAM_RULE
  eenn_stream_reset();
#endif
  milli_instructions_per_tick = board_counter_start();
  board_stack_paint();
  for (;;) {
    input_t *input = inputs + OFFSET(samples);
    eenn_result_t result = {0};
    uint64_t start;
    eenn_status_t status;
    if (fread(input, sizeof(input_t), EENN_INPUT_ELEMENTS, in) != EENN_INPUT_ELEMENTS) break;
    start = board_counter_ticks();
    status = INFER(input, &result);
    record_t record = record_of(status, &result, board_counter_ticks() - start);
    fwrite(&record, sizeof(record), 1, out);
    if (record.status == EENN_CONTINUE) fwrite(result.live, 1, result.live_bytes, live);
    ++samples;
  }
  fclose(live);
  fclose(out);
  fclose(in);
  printf("eenn: samples=%lu milli_instructions_per_tick=%lu stack_bytes=%lu\n", (unsigned long)samples,
         (unsigned long)milli_instructions_per_tick, (unsigned long)board_stack_used());
  return 0;
}
