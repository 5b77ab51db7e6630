/* startup.c: reset and vector table for the QEMU MPS2/MPS3 boards (any Cortex-M). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern uint32_t __etext_data, __data_start__, __data_end__, __bss_start__, __bss_end__, __StackTop;
extern int main(void);
extern void initialise_monitor_handles(void);
void SysTick_Handler(void);

/* LLVM's Arm objects reference the C++ unwinder's personality even when nothing unwinds. */
void __aeabi_unwind_cpp_pr0(void) {}

static void Default_Handler(void) {
  for (;;) {
  }
}

void Reset_Handler(void) {
  memcpy(&__data_start__, &__etext_data, (size_t)((uint8_t *)&__data_end__ - (uint8_t *)&__data_start__));
  memset(&__bss_start__, 0, (size_t)((uint8_t *)&__bss_end__ - (uint8_t *)&__bss_start__));
#if defined(__ARM_FP)
  /* CPACR: full access to CP10 and CP11, the FPU. */
  *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;
  __asm volatile("dsb\n\tisb");
#endif
  initialise_monitor_handles();
  exit(main());
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&__StackTop), Reset_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, 0, 0, 0, 0, Default_Handler,
    Default_Handler, 0, Default_Handler, SysTick_Handler,
};
