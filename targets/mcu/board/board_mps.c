/* board_mps.c: SysTick as the instruction counter on QEMU's MPS boards, and stack painting.
 *
 * Under `qemu-system-arm -icount shift=0` every instruction advances the virtual clock by 1 ns and
 * SysTick counts that clock, so its ticks are a deterministic instruction count once calibrated
 * against a loop of known length. */
#include "board.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018)
#define SYST_MAX 0x00FFFFFFu
#define STACK_PATTERN 0xC5C5C5C5u
#define CALIBRATION_LOOPS 1000000u

static volatile uint32_t wraps;

void SysTick_Handler(void) { ++wraps; }

uint64_t board_counter_ticks(void) {
  uint32_t before, value;
  do {
    before = wraps;
    value = SYST_CVR;
  } while (before != wraps);
  return (uint64_t)before * (SYST_MAX + 1u) + (SYST_MAX - value);
}

/* Two instructions per iteration: subs, bne. */
static void known_loop(uint32_t n) {
  __asm volatile(".syntax unified\n1: subs %0, %0, #1\n\tbne 1b" : "+l"(n)::"cc");
}

uint32_t board_counter_start(void) {
  uint64_t t0, t1;
  SYST_RVR = SYST_MAX;
  SYST_CVR = 0;
  SYST_CSR = 7; /* processor clock, interrupt on wrap, enabled */
  while (SYST_CVR == 0) {
  } /* the first tick loads the reload value */
  wraps = 0;
  t0 = board_counter_ticks();
  known_loop(CALIBRATION_LOOPS);
  t1 = board_counter_ticks();
  return (uint32_t)(2000ull * CALIBRATION_LOOPS / (t1 - t0));
}

extern uint32_t __StackLimit, __StackTop;

static uint32_t *stack_pointer(void) {
  uint32_t *sp;
  __asm volatile("mov %0, sp" : "=r"(sp));
  return sp;
}

void board_stack_paint(void) {
  uint32_t *p, *end = stack_pointer() - 16;
  for (p = &__StackLimit; p < end; ++p) *p = STACK_PATTERN;
}

size_t board_stack_used(void) {
  uint32_t *p = &__StackLimit;
  while (p < &__StackTop && *p == STACK_PATTERN) ++p;
  return (size_t)((uint8_t *)&__StackTop - (uint8_t *)p);
}
