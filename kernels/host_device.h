// TG_HOST_DEVICE marks small inline functions that both the CPU kernels and the CUDA kernels call
// (fp16 conversions, the sampling RNG), so each is written once and means the same on both sides.
#pragma once

#if defined(__CUDACC__)
#define TG_HOST_DEVICE __host__ __device__
#else
#define TG_HOST_DEVICE
#endif
