// Dev harness for the float32 <-> bfloat16 conversions (production: ../convert.cu, version 2).
//   ./convert [n]   default n = 4096*4096
// The CPU reference rounds with its own bit arithmetic (round to nearest even, NaN kept NaN);
// narrowing must match it bit for bit, widening exactly.
#include "harness.cuh"
#include "../convert.cu"
#include <cstring>

static uint16_t bf16_cpu(float f) {
  uint32_t u; std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  const uint32_t lsb = (u >> 16) & 1u;
  return (uint16_t)((u + 0x7fffu + lsb) >> 16);
}

// ---- version 1: one element per thread, hardware conversion (canonical NaN) -----------------
__global__ void f32_to_bf16_v1(const float* in, __nv_bfloat16* out, long long n) {
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __float2bfloat16_rn(in[i]);
}

static void launch(int version, const float* in, void* out, long long n) {
  const int block = 256;
  if (version == 1) {
    f32_to_bf16_v1<<<(unsigned)((n + block - 1) / block), block>>>(in, static_cast<__nv_bfloat16*>(out), n);
  } else {
    ConvertArgs a{in, out, n};
    convert_f32_to_bf16<<<dev::grid_for(n / 8 + 1, block), block>>>(a);
  }
}

int main(int argc, char** argv) try {
  dev::require_device();
  const long long n = argc > 1 ? std::atoll(argv[1]) : 4096LL * 4096;
  std::printf("convert f32 -> bf16, n = %lld\n", n);
  dev::HostRng rng(2);
  std::vector<float> h(n);
  for (long long i = 0; i < n; ++i) h[i] = rng.uniform(-4.f, 4.f);
  if (n > 3) { h[0] = NAN; h[1] = INFINITY; h[2] = -0.0f; }
  float* din; void* dout;
  DEV_CHECK(cudaMalloc(&din, n * 4));
  DEV_CHECK(cudaMalloc(&dout, n * 2));
  DEV_CHECK(cudaMemcpy(din, h.data(), n * 4, cudaMemcpyHostToDevice));
  const double copy_gbs = dev::copy_bandwidth((size_t)n * 4);
  std::printf("  device-to-device copy: %.1f GB/s\n", copy_gbs);
  for (int v = 1; v <= 2; ++v) {
    DEV_CHECK(cudaMemset(dout, 0, n * 2));
    launch(v, din, dout, n);
    DEV_CHECK(cudaDeviceSynchronize());
    std::vector<uint16_t> got(n);
    DEV_CHECK(cudaMemcpy(got.data(), dout, n * 2, cudaMemcpyDeviceToHost));
    long long mismatches = 0;
    for (long long i = 0; i < n; ++i) mismatches += got[i] != bf16_cpu(h[i]);
    std::printf("  version %d: %lld of %lld differ from the CPU bits%s\n", v, mismatches, n,
                v == 1 ? " (expected: the hardware returns a canonical NaN)" : "");
    if (v == 2 && mismatches) throw std::runtime_error("production conversion is not bit-identical to the CPU reference");
    const float ms = dev::time_ms([&] { launch(v, din, dout, n); });
    const double gbs = n * 6.0 / (ms * 1e6);
    std::printf("  version %d: %.3f ms, %.1f GB/s, %.2f of copy\n", v, ms, gbs, gbs / copy_gbs);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
