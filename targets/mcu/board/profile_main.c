/* profile_main.c: runs eenn_infer once and prints the instructions of every kernel call, in driver order (a build
 * with -DEENN_PROFILE; bench/kernels.py makes one for TVM's kernels). The input is a fixed pattern, not zeros:
 * soft-float arithmetic takes shortcuts on zeros. */
#include <stdio.h>

#include "board.h"
#include "eenn_model.h"
#include "eenn_runtime.h"

#define MAX_CALLS 4096
#define EMPTY_REGIONS 1000

static uint64_t call_ticks[MAX_CALLS];
static uint32_t calls;
static uint64_t started;
static float input[EENN_INPUT_ELEMENTS];

void eenn_profile_begin(void) { started = board_counter_ticks(); }

void eenn_profile_end(void) {
  if (calls < MAX_CALLS) call_ticks[calls] = board_counter_ticks() - started;
  ++calls;
}

int main(void) {
  eenn_result_t result;
  uint32_t milli_instructions_per_tick, i;
  uint64_t start, empty = 0;
  for (i = 0; i < EENN_INPUT_ELEMENTS; ++i) input[i] = (float)(i % 251u) * 0.01f - 1.0f;
  milli_instructions_per_tick = board_counter_start();
  eenn_infer(input, &result);
  for (i = 0; i < EMPTY_REGIONS; ++i) {
    start = board_counter_ticks();
    empty += board_counter_ticks() - start;
  }
  printf("eenn-profile: calls=%lu milli_instructions_per_tick=%lu empty_ticks=%lu regions=%lu\n",
         (unsigned long)calls, (unsigned long)milli_instructions_per_tick, (unsigned long)empty,
         (unsigned long)EMPTY_REGIONS);
  for (i = 0; i < calls && i < MAX_CALLS; ++i) printf("call %lu ticks %lu\n", (unsigned long)i, (unsigned long)call_ticks[i]);
  return 0;
}
