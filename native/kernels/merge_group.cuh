// The grouped merge's descriptors and index math, shared by the kernel (merge.cu merge_group_*)
// and, being host-callable, by native/tests/kernel_host_check.cu, which prints the mapping for the
// managed tests to compare with the host planner (CycleQD.Cuda.Kernels.MergeGroupPlan).
//
// Many small tensors of one storage type are merged by one launch: segment s (a tensor) owns the
// blocks [first_block, first_block + ceil(n / (V * kGroupThreads))); block b finds its segment by a
// binary search over first_block, and thread t of it handles the V elements (one 16-byte vector)
// starting at ((b - first_block) * kGroupThreads + t) * V, clipped to n. Every element of every
// segment is thus covered by exactly one thread.
#pragma once
#include <stdint.h>

namespace cqd {

constexpr int kGroupMaxParents = 8;
constexpr int kGroupThreads = 256;

// One tensor of a grouped merge; an array of them lives in device memory, written by the host.
struct MergeSegment {
  const void* base;
  const void* parents[kGroupMaxParents];  // unused entries are null
  void* out;
  long long n;                             // elements, > 0
  long long first_block;                   // blocks owned by the segments before this one
};

// The segment that owns block `block`: the last one whose first_block <= block (first_block
// ascending, segment 0 starting at 0).
__host__ __device__ __forceinline__ int find_segment(const MergeSegment* segs, int count, long long block) {
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    const int mid = lo + (hi - lo + 1) / 2;
    if (segs[mid].first_block <= block) lo = mid; else hi = mid - 1;
  }
  return lo;
}

// Elements [begin, end) of segment `s` for thread `tid` of block `block` (none when end <= begin).
__host__ __device__ __forceinline__ void group_thread_range(const MergeSegment& s, long long block, int tid, int vec,
                                                            long long& begin, long long& end) {
  begin = ((block - s.first_block) * kGroupThreads + tid) * (long long)vec;
  end = begin + vec < s.n ? begin + vec : s.n;
}

}  // namespace cqd
