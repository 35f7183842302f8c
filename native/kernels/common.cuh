// Shared helpers for the production kernels: storage types, their float32 conversions and
// 16-byte vector access. Every kernel computes in float32 whatever the storage type.
#pragma once
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stdint.h>

namespace cqd {

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
// Round-to-nearest-even, as the CPU backend's DTypeConversion.SingleToBF16.
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// Elements of T in one 16-byte vector.
template <typename T> struct Vec { static constexpr int N = 16 / sizeof(T); };

union Pack16 {
  uint4 u;
  float f[4];
  __half h[8];
  __nv_bfloat16 b[8];
};

template <typename T> __device__ __forceinline__ T* elems(Pack16& p);
template <> __device__ __forceinline__ float* elems<float>(Pack16& p) { return p.f; }
template <> __device__ __forceinline__ __half* elems<__half>(Pack16& p) { return p.h; }
template <> __device__ __forceinline__ __nv_bfloat16* elems<__nv_bfloat16>(Pack16& p) { return p.b; }

}  // namespace cqd
