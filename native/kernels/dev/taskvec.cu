// Dev harness for the task-vector kernels (production: ../taskvec.cu, version 2):
// tau = theta - base (bf16 in, f32 out) and theta = base + tau (f32 + bf16 -> bf16).
//   ./taskvec [n]   default n = 4096*14336 (a Llama-3-8B down_proj)
#include "harness.cuh"
#include "../taskvec.cu"

// ---- version 1: one element per thread, scalar loads ----------------------------------------
__global__ void task_vector_bf16_v1(TaskVectorArgs a) {
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < a.n)
    a.tau[i] = __bfloat162float(static_cast<const __nv_bfloat16*>(a.theta)[i]) - __bfloat162float(static_cast<const __nv_bfloat16*>(a.base)[i]);
}

__global__ void apply_task_vector_bf16_v1(ApplyTaskVectorArgs a) {
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < a.n)
    static_cast<__nv_bfloat16*>(a.theta)[i] =
        cqd::from_float<__nv_bfloat16>(__bfloat162float(static_cast<const __nv_bfloat16*>(a.base)[i]) + a.tau[i]);
}

int main(int argc, char** argv) try {
  dev::require_device();
  const long long n = argc > 1 ? std::atoll(argv[1]) : 4096LL * 14336;
  std::printf("task vectors bf16, n = %lld\n", n);
  dev::HostRng rng(4);
  std::vector<__nv_bfloat16> th(n), bs(n);
  std::vector<double> ref_tau(n), got(n);
  for (long long i = 0; i < n; ++i) {
    bs[i] = __float2bfloat16(rng.uniform(-0.05f, 0.05f));
    th[i] = __float2bfloat16(__bfloat162float(bs[i]) + rng.uniform(-0.01f, 0.01f));
    ref_tau[i] = (double)__bfloat162float(th[i]) - __bfloat162float(bs[i]);
  }
  void *dth, *dbs, *dout;
  float* dtau;
  DEV_CHECK(cudaMalloc(&dth, n * 2));
  DEV_CHECK(cudaMalloc(&dbs, n * 2));
  DEV_CHECK(cudaMalloc(&dout, n * 2));
  DEV_CHECK(cudaMalloc(&dtau, n * 4));
  DEV_CHECK(cudaMemcpy(dth, th.data(), n * 2, cudaMemcpyHostToDevice));
  DEV_CHECK(cudaMemcpy(dbs, bs.data(), n * 2, cudaMemcpyHostToDevice));
  const double copy_gbs = dev::copy_bandwidth((size_t)n * 4);
  std::printf("  device-to-device copy: %.1f GB/s\n", copy_gbs);
  TaskVectorArgs tv{dth, dbs, dtau, n};
  ApplyTaskVectorArgs ap{dbs, dtau, dout, n};
  const int block = 256;
  for (int v = 1; v <= 2; ++v) {
    auto fwd = [&] {
      if (v == 1) task_vector_bf16_v1<<<(unsigned)((n + block - 1) / block), block>>>(tv);
      else task_vector_bf16<<<dev::grid_for(n / 8 + 1, block), block>>>(tv);
    };
    auto inv = [&] {
      if (v == 1) apply_task_vector_bf16_v1<<<(unsigned)((n + block - 1) / block), block>>>(ap);
      else apply_task_vector_bf16<<<dev::grid_for(n / 8 + 1, block), block>>>(ap);
    };
    DEV_CHECK(cudaMemset(dtau, 0xff, n * 4));
    fwd();
    DEV_CHECK(cudaDeviceSynchronize());
    std::vector<float> ht(n);
    DEV_CHECK(cudaMemcpy(ht.data(), dtau, n * 4, cudaMemcpyDeviceToHost));
    for (long long i = 0; i < n; ++i) got[i] = ht[i];
    dev::validate(v == 1 ? "version 1 tau" : "version 2 tau", ref_tau, got, 1e-7);
    DEV_CHECK(cudaMemset(dout, 0xff, n * 2));
    inv();
    DEV_CHECK(cudaDeviceSynchronize());
    std::vector<__nv_bfloat16> hb(n);
    DEV_CHECK(cudaMemcpy(hb.data(), dout, n * 2, cudaMemcpyDeviceToHost));
    std::vector<double> ref_theta(n);
    for (long long i = 0; i < n; ++i) { ref_theta[i] = (double)__bfloat162float(bs[i]) + ht[i]; got[i] = __bfloat162float(hb[i]); }
    dev::validate(v == 1 ? "version 1 theta" : "version 2 theta", ref_theta, got, 4e-3);
    const float ms_f = dev::time_ms(fwd), ms_i = dev::time_ms(inv);
    const double gbs_f = n * 8.0 / (ms_f * 1e6), gbs_i = n * 8.0 / (ms_i * 1e6);
    std::printf("  version %d: tau %.3f ms %.1f GB/s (%.2f of copy); apply %.3f ms %.1f GB/s (%.2f of copy)\n",
                v, ms_f, gbs_f, gbs_f / copy_gbs, ms_i, gbs_i, gbs_i / copy_gbs);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
