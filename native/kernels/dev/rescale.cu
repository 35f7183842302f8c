// Dev harness for the singular-value rescale s <- s * (1 + w_max * u) with Philox draws
// (production: ../mutate.cu sv_rescale, version 1) and the column scaling U diag(delta).
//   ./rescale [k] [rows]   default k = 256 singular values, rows = 14336
// The CPU reference draws with its own copy of Philox4x32-10 written from the paper's round
// function, so a change to the kernel header cannot silently agree with itself.
#include "harness.cuh"
#include "../mutate.cu"

static void philox_cpu(uint32_t c[4], uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = (uint64_t)0xD2511F53u * c[0], p1 = (uint64_t)0xCD9E8D57u * c[2];
    const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ k1;
    c[0] = n0; c[1] = (uint32_t)p1; c[2] = n2; c[3] = (uint32_t)p0;
    k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
  }
}

int main(int argc, char** argv) try {
  dev::require_device();
  const long long k = argc > 1 ? std::atoll(argv[1]) : 256;
  const long long rows = argc > 2 ? std::atoll(argv[2]) : 14336;
  const unsigned long long seed = 0x0123456789abcdefull;
  const uint32_t stream = 5, generation = 17;
  const float wmax = 0.3f;
  std::printf("sv_rescale k = %lld; scale_columns %lld x %lld\n", k, rows, k);
  dev::HostRng rng(3);
  std::vector<float> s(k);
  for (auto& x : s) x = rng.uniform(0.f, 10.f);
  std::vector<double> ref_s(k), ref_d(k);
  for (long long i = 0; i < k; ++i) {
    uint32_t c[4] = {(uint32_t)(i / 4), (uint32_t)((unsigned long long)(i / 4) >> 32), stream, generation};
    philox_cpu(c, (uint32_t)seed, (uint32_t)(seed >> 32));
    const float r = wmax * ((float)(c[i % 4] >> 8) * (1.0f / 16777216.0f));
    ref_d[i] = (double)r * s[i];
    ref_s[i] = (double)s[i] * (1.0 + r);
  }
  float *ds, *dd;
  DEV_CHECK(cudaMalloc(&ds, k * 4));
  DEV_CHECK(cudaMalloc(&dd, k * 4));
  DEV_CHECK(cudaMemcpy(ds, s.data(), k * 4, cudaMemcpyHostToDevice));
  DEV_CHECK(cudaMemset(dd, 0xff, k * 4));
  RescaleArgs a{ds, dd, k, seed, stream, generation, wmax};
  sv_rescale<<<dev::grid_for((k + 3) / 4, 128), 128>>>(a);
  DEV_CHECK(cudaDeviceSynchronize());
  std::vector<float> hs(k), hd(k);
  DEV_CHECK(cudaMemcpy(hs.data(), ds, k * 4, cudaMemcpyDeviceToHost));
  DEV_CHECK(cudaMemcpy(hd.data(), dd, k * 4, cudaMemcpyDeviceToHost));
  dev::validate("version 1 s", ref_s, std::vector<double>(hs.begin(), hs.end()), 1e-6);
  dev::validate("version 1 delta", ref_d, std::vector<double>(hd.begin(), hd.end()), 1e-6);

  // U diag(delta), column-major rows x k.
  std::vector<float> u(rows * k);
  for (auto& x : u) x = rng.uniform(-1.f, 1.f);
  std::vector<double> ref_u(rows * k);
  for (long long c = 0; c < k; ++c)
    for (long long r = 0; r < rows; ++r) ref_u[c * rows + r] = (double)u[c * rows + r] * hd[c];
  float *du, *dout;
  DEV_CHECK(cudaMalloc(&du, rows * k * 4));
  DEV_CHECK(cudaMalloc(&dout, rows * k * 4));
  DEV_CHECK(cudaMemcpy(du, u.data(), rows * k * 4, cudaMemcpyHostToDevice));
  DEV_CHECK(cudaMemset(dout, 0xff, rows * k * 4));
  ScaleColumnsArgs sc{du, dd, dout, rows, (int)k, 1};
  auto run = [&] { scale_columns_f32<<<dev::grid_for(rows * k, 256), 256>>>(sc); };
  run();
  DEV_CHECK(cudaDeviceSynchronize());
  std::vector<float> hu(rows * k);
  DEV_CHECK(cudaMemcpy(hu.data(), dout, rows * k * 4, cudaMemcpyDeviceToHost));
  dev::validate("scale_columns", ref_u, std::vector<double>(hu.begin(), hu.end()), 1e-6);
  const double copy_gbs = dev::copy_bandwidth((size_t)rows * k * 4);
  const float ms = dev::time_ms(run);
  const double gbs = rows * k * 8.0 / (ms * 1e6);
  std::printf("  scale_columns: %.3f ms, %.1f GB/s, %.2f of copy (%.1f GB/s)\n", ms, gbs, gbs / copy_gbs, copy_gbs);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
