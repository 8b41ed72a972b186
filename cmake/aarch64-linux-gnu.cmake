# Cross-compiling for AArch64 Linux with Debian's g++-aarch64-linux-gnu and the arm64 multiarch
# libraries (tools/bootstrap.sh installs both); executables run under qemu-user, which finds the
# arm64 loader and libraries in their multiarch places.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# -cpu max: every optional feature qemu emulates (dotprod included), so every level is exercised.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -cpu max)
