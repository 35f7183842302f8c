// Dev harness for the fused merge (production: ../merge.cu, included as version 2).
//   ./merge [n]     default n = 14336*4096 (a Llama-3-8B gate_proj); bf16 storage, 2 parents
// CPU reference in float64, each version validated before it is timed, GB/s and the ratio to the
// device-to-device copy bandwidth printed.
#include "harness.cuh"
#include "../merge.cu"

// ---- CPU reference -------------------------------------------------------------------------
static void merge_cpu(const std::vector<float>& base, const std::vector<std::vector<float>>& parents,
                      const std::vector<double>& coef, std::vector<double>& out) {
  for (size_t i = 0; i < base.size(); ++i) {
    double acc = base[i];
    for (size_t p = 0; p < parents.size(); ++p) acc += coef[p] * ((double)parents[p][i] - base[i]);
    out[i] = acc;
  }
}

// ---- version 1: one element per thread, scalar loads ----------------------------------------
__global__ void merge_bf16_v1(MergeArgs a) {
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= a.n) return;
  const __nv_bfloat16* base = static_cast<const __nv_bfloat16*>(a.base);
  const float b = __bfloat162float(base[i]);
  float acc = b;
  for (int p = 0; p < a.num_parents; ++p)
    acc += a.coef[p] * (__bfloat162float(static_cast<const __nv_bfloat16*>(a.parents[p])[i]) - b);
  static_cast<__nv_bfloat16*>(a.out)[i] = cqd::from_float<__nv_bfloat16>(acc);
}

// ---- version 2: the production kernel (16-byte vectors, grid-stride, unrolled parents) -------

// ---- version 3: version 2 with two vectors per thread per step, all loads issued before any
// math, for more bytes in flight per thread (candidate; aligned pointers and 2 parents only) ----
__global__ void merge_bf16_v3(MergeArgs a) {
  using namespace cqd;
  const long long stride = (long long)gridDim.x * blockDim.x;
  const long long nvec = a.n / 8;
  const uint4* base = static_cast<const uint4*>(a.base);
  const uint4* p0 = static_cast<const uint4*>(a.parents[0]);
  const uint4* p1 = static_cast<const uint4*>(a.parents[1]);
  uint4* out = static_cast<uint4*>(a.out);
  const float c0 = a.coef[0], c1 = a.coef[1];
  for (long long v = (long long)blockIdx.x * blockDim.x + threadIdx.x; v < nvec; v += 2 * stride) {
    const bool second = v + stride < nvec;
    Pack16 b[2], x[2], y[2], o[2];
    b[0].u = __ldg(base + v); x[0].u = __ldg(p0 + v); y[0].u = __ldg(p1 + v);
    if (second) { b[1].u = __ldg(base + v + stride); x[1].u = __ldg(p0 + v + stride); y[1].u = __ldg(p1 + v + stride); }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      if (h == 1 && !second) break;
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const float bb = to_float(b[h].b[k]);
        float acc = fmaf(c0, to_float(x[h].b[k]) - bb, bb);
        acc = fmaf(c1, to_float(y[h].b[k]) - bb, acc);
        o[h].b[k] = from_float<__nv_bfloat16>(acc);
      }
      out[v + h * stride] = o[h].u;
    }
  }
  for (long long i = nvec * 8 + (long long)blockIdx.x * blockDim.x + threadIdx.x; i < a.n; i += stride) {
    const __nv_bfloat16* bs = static_cast<const __nv_bfloat16*>(a.base);
    const float bb = to_float(bs[i]);
    float acc = fmaf(c0, to_float(static_cast<const __nv_bfloat16*>(a.parents[0])[i]) - bb, bb);
    acc = fmaf(c1, to_float(static_cast<const __nv_bfloat16*>(a.parents[1])[i]) - bb, acc);
    static_cast<__nv_bfloat16*>(a.out)[i] = from_float<__nv_bfloat16>(acc);
  }
}

static void launch(int version, const MergeArgs& a) {
  const int block = 256;
  switch (version) {
    case 1: merge_bf16_v1<<<(unsigned)((a.n + block - 1) / block), block>>>(a); break;
    case 2: merge_bf16<<<dev::grid_for(a.n / 8 + 1, block), block>>>(a); break;
    case 3: merge_bf16_v3<<<dev::grid_for(a.n / 16 + 1, block), block>>>(a); break;
    default: throw std::runtime_error("no such version");
  }
}

int main(int argc, char** argv) try {
  dev::require_device();
  const long long n = argc > 1 ? std::atoll(argv[1]) : 14336LL * 4096;
  const int np = 2;
  std::printf("merge bf16, n = %lld, %d parents\n", n, np);
  dev::HostRng rng(1);
  std::vector<float> base(n);
  std::vector<std::vector<float>> parents(np, std::vector<float>(n));
  std::vector<__nv_bfloat16> hb(n), hp(n);
  for (long long i = 0; i < n; ++i) { hb[i] = __float2bfloat16(rng.uniform(-0.05f, 0.05f)); base[i] = __bfloat162float(hb[i]); }
  void *db, *dp[np], *dout;
  DEV_CHECK(cudaMalloc(&db, n * 2));
  DEV_CHECK(cudaMemcpy(db, hb.data(), n * 2, cudaMemcpyHostToDevice));
  for (int p = 0; p < np; ++p) {
    for (long long i = 0; i < n; ++i) { hp[i] = __float2bfloat16(base[i] + rng.uniform(-0.01f, 0.01f)); parents[p][i] = __bfloat162float(hp[i]); }
    DEV_CHECK(cudaMalloc(&dp[p], n * 2));
    DEV_CHECK(cudaMemcpy(dp[p], hp.data(), n * 2, cudaMemcpyHostToDevice));
  }
  DEV_CHECK(cudaMalloc(&dout, n * 2));
  std::vector<double> coef = {0.6, 0.4}, ref(n), got(n);
  merge_cpu(base, parents, coef, ref);

  MergeArgs a{};
  a.base = db; a.out = dout; a.n = n; a.num_parents = np;
  for (int p = 0; p < np; ++p) { a.parents[p] = dp[p]; a.coef[p] = (float)coef[p]; }

  const double copy_gbs = dev::copy_bandwidth((size_t)n * 2);
  std::printf("  device-to-device copy: %.1f GB/s\n", copy_gbs);
  const double bytes = (double)n * 2 * (np + 2);
  for (int v = 1; v <= 3; ++v) {
    DEV_CHECK(cudaMemset(dout, 0xff, n * 2));  // poison: 0xffff is a bf16 NaN
    launch(v, a);
    DEV_CHECK(cudaDeviceSynchronize());
    std::vector<__nv_bfloat16> h(n);
    DEV_CHECK(cudaMemcpy(h.data(), dout, n * 2, cudaMemcpyDeviceToHost));
    for (long long i = 0; i < n; ++i) got[i] = __bfloat162float(h[i]);
    char name[32];
    std::snprintf(name, sizeof name, "version %d", v);
    dev::validate(name, ref, got, 4e-3);
    const float ms = dev::time_ms([&] { launch(v, a); });
    const double gbs = bytes / (ms * 1e6);
    std::printf("  version %d: %.3f ms, %.1f GB/s, %.2f of copy\n", v, ms, gbs, gbs / copy_gbs);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
