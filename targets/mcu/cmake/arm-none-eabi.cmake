# Toolchain file for Cortex-M with Debian's arm-none-eabi-gcc (gcc-arm-none-eabi, libnewlib-arm-none-eabi).
# The core comes from EENN_CPU_FLAGS: set by eenn_cpu.cmake beside this file in a generated firmware project,
# or given on the command line, e.g. -DEENN_CPU_FLAGS="-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16".
include(${CMAKE_CURRENT_LIST_DIR}/eenn_cpu.cmake OPTIONAL)
if(NOT EENN_CPU_FLAGS)
  set(EENN_CPU_FLAGS "-mcpu=cortex-m3 -mthumb -mfloat-abi=soft")
endif()
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(CMAKE_C_COMPILER arm-none-eabi-gcc)
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
set(CMAKE_C_FLAGS_INIT "${EENN_CPU_FLAGS} -ffunction-sections -fdata-sections")
set(CMAKE_EXE_LINKER_FLAGS_INIT "${EENN_CPU_FLAGS} -Wl,--gc-sections")
