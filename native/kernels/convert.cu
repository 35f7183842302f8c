// Storage-type conversions: float32 <-> bfloat16 and float32 <-> float16.
// Narrowing rounds to nearest, ties to even; NaN stays NaN (bfloat16: bit-identical to
// CycleQD.Tensors.DTypeConversion, sign and upper payload kept). Widening is exact.
//
// Launch: 1-D grid-stride, any size; 16-byte vector access when both pointers are aligned.
#include "common.cuh"

struct ConvertArgs {
  const void* in;
  void* out;
  long long n;  // elements
};

// Widening: V = 8 narrow elements (16 bytes) -> 8 floats (two 16-byte stores).
template <typename T>
__device__ __forceinline__ void widen_impl(const ConvertArgs& a) {
  using namespace cqd;
  constexpr int V = Vec<T>::N;
  const T* in = static_cast<const T*>(a.in);
  float* out = static_cast<float*>(a.out);
  const long long stride = (long long)gridDim.x * blockDim.x;
  const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  const long long nvec = (aligned16(a.in) && aligned16(a.out)) ? a.n / V : 0;
  for (long long v = tid; v < nvec; v += stride) {
    Pack16 p;
    p.u = __ldg(reinterpret_cast<const uint4*>(in) + v);
    float f[V];
#pragma unroll
    for (int k = 0; k < V; ++k) f[k] = to_float(elems<T>(p)[k]);
    store_f32<V>(out, v, f);
  }
  for (long long i = nvec * V + tid; i < a.n; i += stride) out[i] = to_float(in[i]);
}

template <typename T>
__device__ __forceinline__ void narrow_impl(const ConvertArgs& a) {
  using namespace cqd;
  constexpr int V = Vec<T>::N;
  const float* in = static_cast<const float*>(a.in);
  T* out = static_cast<T*>(a.out);
  const long long stride = (long long)gridDim.x * blockDim.x;
  const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  const long long nvec = (aligned16(a.in) && aligned16(a.out)) ? a.n / V : 0;
  for (long long v = tid; v < nvec; v += stride) {
    float f[V];
    load_f32<V>(in, v, f);
    Pack16 p;
#pragma unroll
    for (int k = 0; k < V; ++k) elems<T>(p)[k] = from_float<T>(f[k]);
    reinterpret_cast<uint4*>(out)[v] = p.u;
  }
  for (long long i = nvec * V + tid; i < a.n; i += stride) out[i] = from_float<T>(in[i]);
}

extern "C" __global__ void convert_bf16_to_f32(ConvertArgs a) { widen_impl<__nv_bfloat16>(a); }
extern "C" __global__ void convert_f16_to_f32(ConvertArgs a) { widen_impl<__half>(a); }
extern "C" __global__ void convert_f32_to_bf16(ConvertArgs a) { narrow_impl<__nv_bfloat16>(a); }
extern "C" __global__ void convert_f32_to_f16(ConvertArgs a) { narrow_impl<__half>(a); }
