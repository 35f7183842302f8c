// Shared scaffolding of the kernel dev harnesses (llm.c dev/cuda style): error checks that throw
// (main turns them into a message and exit status 1), deterministic host data, relative-error
// validation against a float64 CPU reference, and timing with CUDA events where the L2 cache is
// flushed before every repeat so that each run reads from HBM.
#pragma once
#include <cuda_runtime.h>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#define DEV_CHECK(call)                                                                   \
  do {                                                                                     \
    cudaError_t err_ = (call);                                                             \
    if (err_ != cudaSuccess)                                                               \
      throw std::runtime_error(std::string(#call) + " failed: " + cudaGetErrorString(err_)); \
  } while (0)

namespace dev {

// xorshift64*: host test data only (the kernels' own RNG is Philox).
struct HostRng {
  unsigned long long s;
  explicit HostRng(unsigned long long seed) : s(seed * 2685821657736338717ull + 1) {}
  float uniform(float lo, float hi) {
    s ^= s >> 12; s ^= s << 25; s ^= s >> 27;
    const unsigned long long x = s * 2685821657736338717ull;
    return lo + (hi - lo) * (float)((x >> 40) * (1.0 / 16777216.0));
  }
};

// ||got - ref|| / ||ref|| in float64.
inline double rel_error(const std::vector<double>& ref, const std::vector<double>& got) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) { num += (got[i] - ref[i]) * (got[i] - ref[i]); den += ref[i] * ref[i]; }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

inline void validate(const char* name, const std::vector<double>& ref, const std::vector<double>& got, double tol) {
  for (double g : got)
    if (std::isnan(g)) throw std::runtime_error(std::string(name) + ": NaN in the output (an element was not written)");
  const double e = rel_error(ref, got);
  std::printf("  %-28s rel. error %.3e (tolerance %.1e) %s\n", name, e, tol, e <= tol ? "ok" : "FAILED");
  if (!(e <= tol)) throw std::runtime_error(std::string(name) + " does not match the CPU reference");
}

// Median milliseconds of `repeats` runs of f() after `warmup` runs, L2 flushed before each.
template <typename F>
float time_ms(F&& f, int repeats = 20, int warmup = 3) {
  int dev = 0, l2 = 0;
  DEV_CHECK(cudaGetDevice(&dev));
  DEV_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  void* flush = nullptr;
  const size_t flush_bytes = (size_t)std::max(l2, 1 << 20) * 2;
  DEV_CHECK(cudaMalloc(&flush, flush_bytes));
  cudaEvent_t a, b;
  DEV_CHECK(cudaEventCreate(&a));
  DEV_CHECK(cudaEventCreate(&b));
  for (int i = 0; i < warmup; ++i) f();
  std::vector<float> ms;
  for (int i = 0; i < repeats; ++i) {
    DEV_CHECK(cudaMemset(flush, i & 0xff, flush_bytes));
    DEV_CHECK(cudaEventRecord(a));
    f();
    DEV_CHECK(cudaEventRecord(b));
    DEV_CHECK(cudaEventSynchronize(b));
    DEV_CHECK(cudaGetLastError());
    float t = 0;
    DEV_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  DEV_CHECK(cudaEventDestroy(a));
  DEV_CHECK(cudaEventDestroy(b));
  DEV_CHECK(cudaFree(flush));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// Device-to-device copy bandwidth (GB/s, read + write counted) over `bytes`: the ceiling the
// memory-bound kernels are compared with.
inline double copy_bandwidth(size_t bytes) {
  void *src = nullptr, *dst = nullptr;
  DEV_CHECK(cudaMalloc(&src, bytes));
  DEV_CHECK(cudaMalloc(&dst, bytes));
  const float ms = time_ms([&] { DEV_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice)); });
  DEV_CHECK(cudaFree(src));
  DEV_CHECK(cudaFree(dst));
  return 2.0 * bytes / (ms * 1e6);
}

// Fails fast (before building host data) when there is no GPU.
inline void require_device() {
  int n = 0;
  DEV_CHECK(cudaGetDeviceCount(&n));
  if (n == 0) throw std::runtime_error("no CUDA device");
}

inline int grid_for(long long work, int block) {
  int dev = 0, sms = 0;
  DEV_CHECK(cudaGetDevice(&dev));
  DEV_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  return (int)std::min<long long>((work + block - 1) / block, (long long)sms * 16);
}

}  // namespace dev
