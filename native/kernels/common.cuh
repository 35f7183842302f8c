// Shared helpers for the production kernels: storage types, their float32 conversions and
// 16-byte vector access. Every kernel computes in float32 whatever the storage type.
#pragma once
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stdint.h>
#include <string.h>

namespace cqd {

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

// float32 -> bfloat16 bits exactly as the CPU twin (CycleQD.Tensors.DTypeConversion.SingleToBF16):
// round to nearest, ties to even; a NaN keeps its sign and upper payload and is made quiet, where
// the hardware cvt.rn.bf16.f32 would return the canonical 0x7FFF and break bit-equality.
__host__ __device__ __forceinline__ uint16_t f32_to_bf16_bits(float x) {
#ifdef __CUDA_ARCH__
  const uint32_t u = __float_as_uint(x);
#else
  uint32_t u; memcpy(&u, &x, 4);
#endif
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040u);
  return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  __nv_bfloat16_raw r;
  r.x = f32_to_bf16_bits(x);
  return __nv_bfloat16(r);
}

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

__device__ __forceinline__ bool aligned16(const void* p) { return ((uintptr_t)p & 15u) == 0; }

// V float32 values at f + v*V (V a multiple of 4), as 16-byte loads.
template <int V> __device__ __forceinline__ void load_f32(const float* f, long long v, float (&dst)[V]) {
#pragma unroll
  for (int k = 0; k < V / 4; ++k) {
    const float4 q = __ldg(reinterpret_cast<const float4*>(f + v * V) + k);
    dst[4 * k] = q.x; dst[4 * k + 1] = q.y; dst[4 * k + 2] = q.z; dst[4 * k + 3] = q.w;
  }
}

template <int V> __device__ __forceinline__ void store_f32(float* f, long long v, const float (&src)[V]) {
#pragma unroll
  for (int k = 0; k < V / 4; ++k)
    reinterpret_cast<float4*>(f + v * V)[k] = make_float4(src[4 * k], src[4 * k + 1], src[4 * k + 2], src[4 * k + 3]);
}

}  // namespace cqd
