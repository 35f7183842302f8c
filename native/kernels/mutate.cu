// SVD-based mutation pieces (tau = U diag(s) V^T; s <- s * (1 + r), r = w_max * u, u ~ U[0,1)):
//   sv_rescale          s_i <- s_i * (1 + r_i), and delta_i = r_i * s_i (old s), the diagonal of the
//                       low-rank update tau += U diag(delta) V^T that cuBLAS applies afterwards;
//                       u_i is word (i mod 4) of Philox block i / 4 of (seed, stream = tensor
//                       index, generation), identical to the CPU backend's draw.
//   scale_columns_f32   U diag(delta) for a batch of column-major rows x cols matrices (cuBLAS
//                       layout): out[b][c][r] = in[b][c][r] * scale[b][c].
//   gaussian_fill_f32   standard normal test matrix for the randomized range finder (Box-Muller
//                       on a Philox stream; only needs to be random, not identical to the CPU).
//                       Its normals are NOT the CPU backend's: float logf/sincospif, 1 - u instead
//                       of (k + 1) 2^-24, both branches of a pair, four per block instead of two.
//   add_scaled_noise_*  the Gaussian mutation x <- store(x + sigma * z) with z drawn on the host by
//                       the CPU backend's code (Philox4x32.FillNormal: float64 Box-Muller through
//                       .NET's Math.Log/Cos, which CUDA's log/cos are not guaranteed to reproduce
//                       bit for bit) and uploaded; sigma * z and the sum are rounded separately
//                       (__fmul_rn, __fadd_rn: no contraction into an FMA), as the CPU does.
#include "common.cuh"
#include "philox.cuh"

struct RescaleArgs {
  float* s;                  // [n] singular values, rescaled in place
  float* delta;              // [n] r_i * s_i (before rescale); may be null
  long long n;
  unsigned long long seed;
  unsigned int stream;       // tensor index
  unsigned int generation;
  float w_max;
};

struct ScaleColumnsArgs {
  const float* in;           // [batch][cols][rows]: column-major rows x cols, back to back
  const float* scale;        // [batch][cols]
  float* out;                // same layout as in; may equal in
  long long rows;
  int cols;
  int batch;
};

struct ScaledNoiseArgs {
  void* x;                   // [n] weights in their storage type, updated in place
  const float* noise;        // [n] standard normals
  long long n;
  float sigma;
};

struct GaussianArgs {
  float* out;                // [n]
  long long n;
  unsigned long long seed;
  unsigned int stream;
  unsigned int generation;
};

extern "C" __global__ void sv_rescale(RescaleArgs a) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long blk = (long long)blockIdx.x * blockDim.x + threadIdx.x; blk * 4 < a.n; blk += stride) {
    const cqd::Philox4 w = cqd::philox_block(a.seed, a.stream, a.generation, (unsigned long long)blk);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const long long i = blk * 4 + k;
      if (i < a.n) {
        const float r = a.w_max * cqd::philox_uniform(w.x[k]);
        const float s = a.s[i];
        if (a.delta) a.delta[i] = r * s;
        a.s[i] = s * (1.0f + r);
      }
    }
  }
}

extern "C" __global__ void scale_columns_f32(ScaleColumnsArgs a) {
  const long long per = a.rows * a.cols;
  const long long total = per * a.batch;
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
    const long long b = i / per;
    const long long c = (i - b * per) / a.rows;
    a.out[i] = a.in[i] * a.scale[b * a.cols + c];
  }
}

extern "C" __global__ void gaussian_fill_f32(GaussianArgs a) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long blk = (long long)blockIdx.x * blockDim.x + threadIdx.x; blk * 4 < a.n; blk += stride) {
    const cqd::Philox4 w = cqd::philox_block(a.seed, a.stream, a.generation, (unsigned long long)blk);
#pragma unroll
    for (int k = 0; k < 4; k += 2) {
      // 1 - u keeps the logarithm's argument in (0, 1].
      const float u1 = 1.0f - cqd::philox_uniform(w.x[k]);
      const float u2 = cqd::philox_uniform(w.x[k + 1]);
      const float rad = sqrtf(-2.0f * logf(u1));
      float sn, cs;
      sincospif(2.0f * u2, &sn, &cs);
      const long long i = blk * 4 + k;
      if (i < a.n) a.out[i] = rad * cs;
      if (i + 1 < a.n) a.out[i + 1] = rad * sn;
    }
  }
}

template <typename T>
__device__ __forceinline__ void add_scaled_noise_impl(const ScaledNoiseArgs& a) {
  T* x = static_cast<T*>(a.x);
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < a.n; i += stride)
    x[i] = cqd::from_float<T>(__fadd_rn(__fmul_rn(a.noise[i], a.sigma), cqd::to_float(x[i])));
}

extern "C" __global__ void add_scaled_noise_f32(ScaledNoiseArgs a) { add_scaled_noise_impl<float>(a); }
extern "C" __global__ void add_scaled_noise_f16(ScaledNoiseArgs a) { add_scaled_noise_impl<__half>(a); }
extern "C" __global__ void add_scaled_noise_bf16(ScaledNoiseArgs a) { add_scaled_noise_impl<__nv_bfloat16>(a); }
