// Philox4x32-10 (Salmon, Moraes, Dror, Shaw, SC'11), the counter-based generator shared with the
// CPU backend (CycleQD.Core.Random.Philox4x32): both sides draw identical numbers for the same
// (seed, stream, generation, index). Host-callable so that the known-answer test runs without a GPU.
//   key     = (lo32(seed), hi32(seed))
//   counter = (lo32(block), hi32(block), stream, generation); block = index of the 4-word block
//   uniform = (word >> 8) * 2^-24, in [0, 1)
#pragma once
#include <stdint.h>

namespace cqd {

struct Philox4 { uint32_t x[4]; };

__host__ __device__ __forceinline__ void mulhilo32(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = (uint64_t)a * (uint64_t)b;
  hi = (uint32_t)(p >> 32);
  lo = (uint32_t)p;
}

__host__ __device__ __forceinline__ Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) {
  const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
#pragma unroll
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo32(M0, ctr.x[0], hi0, lo0);
    mulhilo32(M1, ctr.x[2], hi1, lo1);
    Philox4 n;
    n.x[0] = hi1 ^ ctr.x[1] ^ k0;
    n.x[1] = lo1;
    n.x[2] = hi0 ^ ctr.x[3] ^ k1;
    n.x[3] = lo0;
    ctr = n;
    k0 += W0;
    k1 += W1;
  }
  return ctr;
}

// The four words of block `block` of (seed, stream, generation).
__host__ __device__ __forceinline__ Philox4 philox_block(uint64_t seed, uint32_t stream, uint32_t generation, uint64_t block) {
  Philox4 c;
  c.x[0] = (uint32_t)block;
  c.x[1] = (uint32_t)(block >> 32);
  c.x[2] = stream;
  c.x[3] = generation;
  return philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
}

__host__ __device__ __forceinline__ float philox_uniform(uint32_t word) {
  return (float)(word >> 8) * (1.0f / 16777216.0f);
}

}  // namespace cqd
