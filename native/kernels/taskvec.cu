// Task vectors: tau = theta - base (storage type T in, float32 out), and its inverse
// theta = base + tau (float32 tau, storage type T out, rounded as the CPU twin rounds).
// tau is float32 because the mutation's SVD and low-rank update run in float32.
//
// Launch: 1-D grid-stride, any size; 16-byte vector access on the T side when every pointer is
// 16-byte aligned, element-wise tail.
#include "common.cuh"

struct TaskVectorArgs {
  const void* theta;  // T[n]
  const void* base;   // T[n]
  float* tau;         // float[n], written
  long long n;
};

struct ApplyTaskVectorArgs {
  const void* base;   // T[n]
  const float* tau;   // float[n]
  void* theta;        // T[n], written
  long long n;
};

template <typename T>
__device__ __forceinline__ void task_vector_impl(const TaskVectorArgs& a) {
  using namespace cqd;
  constexpr int V = Vec<T>::N;
  const T* th = static_cast<const T*>(a.theta);
  const T* bs = static_cast<const T*>(a.base);
  const long long stride = (long long)gridDim.x * blockDim.x;
  const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  const bool aligned = aligned16(a.theta) && aligned16(a.base) && aligned16(a.tau);
  const long long nvec = aligned ? a.n / V : 0;
  for (long long v = tid; v < nvec; v += stride) {
    Pack16 pt, pb;
    pt.u = __ldg(reinterpret_cast<const uint4*>(th) + v);
    pb.u = __ldg(reinterpret_cast<const uint4*>(bs) + v);
    float d[V];
#pragma unroll
    for (int k = 0; k < V; ++k) d[k] = to_float(elems<T>(pt)[k]) - to_float(elems<T>(pb)[k]);
    store_f32<V>(a.tau, v, d);
  }
  for (long long i = nvec * V + tid; i < a.n; i += stride) a.tau[i] = to_float(th[i]) - to_float(bs[i]);
}

template <typename T>
__device__ __forceinline__ void apply_task_vector_impl(const ApplyTaskVectorArgs& a) {
  using namespace cqd;
  constexpr int V = Vec<T>::N;
  const T* bs = static_cast<const T*>(a.base);
  T* th = static_cast<T*>(a.theta);
  const long long stride = (long long)gridDim.x * blockDim.x;
  const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  const bool aligned = aligned16(a.theta) && aligned16(a.base) && aligned16(a.tau);
  const long long nvec = aligned ? a.n / V : 0;
  for (long long v = tid; v < nvec; v += stride) {
    Pack16 pb, po;
    pb.u = __ldg(reinterpret_cast<const uint4*>(bs) + v);
    float t[V];
    load_f32<V>(a.tau, v, t);
#pragma unroll
    for (int k = 0; k < V; ++k) elems<T>(po)[k] = from_float<T>(to_float(elems<T>(pb)[k]) + t[k]);
    reinterpret_cast<uint4*>(th)[v] = po.u;
  }
  for (long long i = nvec * V + tid; i < a.n; i += stride) th[i] = from_float<T>(to_float(bs[i]) + a.tau[i]);
}

extern "C" __global__ void task_vector_f32(TaskVectorArgs a) { task_vector_impl<float>(a); }
extern "C" __global__ void task_vector_f16(TaskVectorArgs a) { task_vector_impl<__half>(a); }
extern "C" __global__ void task_vector_bf16(TaskVectorArgs a) { task_vector_impl<__nv_bfloat16>(a); }
extern "C" __global__ void apply_task_vector_f32(ApplyTaskVectorArgs a) { apply_task_vector_impl<float>(a); }
extern "C" __global__ void apply_task_vector_f16(ApplyTaskVectorArgs a) { apply_task_vector_impl<__half>(a); }
extern "C" __global__ void apply_task_vector_bf16(ApplyTaskVectorArgs a) { apply_task_vector_impl<__nv_bfloat16>(a); }
