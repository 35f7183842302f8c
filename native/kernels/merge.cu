// Fused task-vector merge: child = base + sum_i c_i * (theta_i - base), c_i = w_i / sum_j w_j,
// computed in float32 for float32 / float16 / bfloat16 storage, up to 8 parents in one pass
// (base and parents read once, child written once: the memory-bound floor).
//
// Launch: 1-D grid, any size; a grid-stride loop covers the tensor. Each thread moves 16 bytes
// per operand per step when every pointer is 16-byte aligned (cuMemAlloc and safetensors data
// both are), and falls back to scalar access otherwise; the tail past the last full vector is
// handled element by element, so any length works. The parent loop is unrolled to the maximum
// with a guard, so parents[p] and coef[p] are read with constant offsets from the parameter
// space instead of forcing the argument struct into local memory.
//
// Grouped merge (merge_group_*): the same arithmetic, element for element, over many small tensors
// of one storage type in one launch (see merge_group.cuh for the block -> tensor mapping). On small
// tensors the per-tensor launch is dominated by launch and tail costs; one launch over all of them
// is not. Launch: grid = total blocks of the group, exactly kGroupThreads threads per block.
#include "common.cuh"
#include "merge_group.cuh"

#define CQD_MAX_PARENTS 8
static_assert(CQD_MAX_PARENTS == cqd::kGroupMaxParents, "the grouped merge takes as many parents as the merge");

struct MergeArgs {
  const void* base;
  const void* parents[CQD_MAX_PARENTS];
  float coef[CQD_MAX_PARENTS];  // already normalised: c_i = w_i / sum(w)
  void* out;
  long long n;                  // elements
  int num_parents;
};

// The merge of one 16-byte vector (V elements starting at element e of every operand, all 16-byte
// aligned there) and of one element: the arithmetic both kernels below share, so the grouped merge
// equals the per-tensor one bit for bit by construction. Parents and coefficients are indexed with
// constants (the loops unroll to the maximum with a guard), so arrays in the parameter space stay there.
template <typename T>
__device__ __forceinline__ void merge_vector(const T* base, const void* const (&parents)[CQD_MAX_PARENTS],
                                             const float (&coef)[CQD_MAX_PARENTS], int np, T* out, long long e) {
  using namespace cqd;
  constexpr int V = Vec<T>::N;
  Pack16 pb, po;
  pb.u = __ldg(reinterpret_cast<const uint4*>(base + e));
  float acc[V], b[V];
#pragma unroll
  for (int k = 0; k < V; ++k) { b[k] = to_float(elems<T>(pb)[k]); acc[k] = b[k]; }
#pragma unroll
  for (int p = 0; p < CQD_MAX_PARENTS; ++p) {
    if (p < np) {
      Pack16 pp;
      pp.u = __ldg(reinterpret_cast<const uint4*>(static_cast<const T*>(parents[p]) + e));
      const float c = coef[p];
#pragma unroll
      for (int k = 0; k < V; ++k) acc[k] = fmaf(c, to_float(elems<T>(pp)[k]) - b[k], acc[k]);
    }
  }
#pragma unroll
  for (int k = 0; k < V; ++k) elems<T>(po)[k] = from_float<T>(acc[k]);
  *reinterpret_cast<uint4*>(out + e) = po.u;
}

template <typename T>
__device__ __forceinline__ void merge_element(const T* base, const void* const (&parents)[CQD_MAX_PARENTS],
                                              const float (&coef)[CQD_MAX_PARENTS], int np, T* out, long long i) {
  using namespace cqd;
  const float b = to_float(base[i]);
  float acc = b;
#pragma unroll
  for (int p = 0; p < CQD_MAX_PARENTS; ++p)
    if (p < np) acc = fmaf(coef[p], to_float(static_cast<const T*>(parents[p])[i]) - b, acc);
  out[i] = from_float<T>(acc);
}

template <typename T>
__device__ __forceinline__ void merge_impl(const MergeArgs& a) {
  using namespace cqd;
  const T* base = static_cast<const T*>(a.base);
  T* out = static_cast<T*>(a.out);
  const int np = a.num_parents;
  const long long stride = (long long)gridDim.x * blockDim.x;
  const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;

  bool aligned = aligned16(a.base) && aligned16(a.out);
#pragma unroll
  for (int p = 0; p < CQD_MAX_PARENTS; ++p)
    if (p < np) aligned = aligned && aligned16(a.parents[p]);

  constexpr int V = Vec<T>::N;
  const long long nvec = aligned ? a.n / V : 0;
  for (long long v = tid; v < nvec; v += stride) merge_vector<T>(base, a.parents, a.coef, np, out, v * V);
  for (long long i = nvec * V + tid; i < a.n; i += stride) merge_element<T>(base, a.parents, a.coef, np, out, i);
}

extern "C" __global__ void merge_f32(MergeArgs a) { merge_impl<float>(a); }
extern "C" __global__ void merge_f16(MergeArgs a) { merge_impl<__half>(a); }
extern "C" __global__ void merge_bf16(MergeArgs a) { merge_impl<__nv_bfloat16>(a); }

struct MergeGroupArgs {
  const cqd::MergeSegment* segments;  // [num_segments], first_block ascending
  float coef[CQD_MAX_PARENTS];        // already normalised, shared by every segment
  int num_segments;
  int num_parents;
};

template <typename T>
__device__ __forceinline__ void merge_group_impl(const MergeGroupArgs& a) {
  using namespace cqd;
  constexpr int V = Vec<T>::N;
  __shared__ int seg_index;
  if (threadIdx.x == 0) seg_index = find_segment(a.segments, a.num_segments, (long long)blockIdx.x);
  __syncthreads();
  const MergeSegment& s = a.segments[seg_index];
  long long begin, end;
  group_thread_range(s, (long long)blockIdx.x, (int)threadIdx.x, V, begin, end);
  if (begin >= end) return;
  const T* base = static_cast<const T*>(s.base);
  T* out = static_cast<T*>(s.out);
  const int np = a.num_parents;

  bool vector = end - begin == V && aligned16(base + begin) && aligned16(out + begin);
#pragma unroll
  for (int p = 0; p < CQD_MAX_PARENTS; ++p)
    if (p < np) vector = vector && aligned16(static_cast<const T*>(s.parents[p]) + begin);
  if (vector) {
    merge_vector<T>(base, s.parents, a.coef, np, out, begin);
    return;
  }
  for (long long i = begin; i < end; ++i) merge_element<T>(base, s.parents, a.coef, np, out, i);
}

extern "C" __global__ void __launch_bounds__(cqd::kGroupThreads) merge_group_f32(MergeGroupArgs a) { merge_group_impl<float>(a); }
extern "C" __global__ void __launch_bounds__(cqd::kGroupThreads) merge_group_f16(MergeGroupArgs a) { merge_group_impl<__half>(a); }
extern "C" __global__ void __launch_bounds__(cqd::kGroupThreads) merge_group_bf16(MergeGroupArgs a) { merge_group_impl<__nv_bfloat16>(a); }
