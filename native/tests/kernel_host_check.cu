// Runs the host-callable parts of the production kernels' headers on the CPU, so that machines
// without a GPU still check them: the Philox4x32-10 generator (against Random123's known-answer
// vectors, checked by the managed tests) and the float32 -> bfloat16 rounding (compared by the
// managed tests with CycleQD.Tensors.DTypeConversion.SingleToBF16).
// Output, one record per line:
//   philox <c0> <c1> <c2> <c3> <k0> <k1> -> <x0> <x1> <x2> <x3>     (hex)
//   block <seed> <stream> <generation> <block> -> <x0> <x1> <x2> <x3>
//   bf16 <float32 bits> <bfloat16 bits>                              (hex)
#include <cstdio>
#include <cstring>
#include "../kernels/common.cuh"
#include "../kernels/philox.cuh"

static void philox_line(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  cqd::Philox4 c{{c0, c1, c2, c3}};
  cqd::Philox4 r = cqd::philox4x32_10(c, k0, k1);
  std::printf("philox %08x %08x %08x %08x %08x %08x -> %08x %08x %08x %08x\n", c0, c1, c2, c3, k0, k1, r.x[0], r.x[1], r.x[2], r.x[3]);
}

int main() {
  philox_line(0, 0, 0, 0, 0, 0);
  philox_line(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu);
  philox_line(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u);

  const unsigned long long seeds[] = {0ull, 42ull, 0x0123456789abcdefull};
  for (unsigned long long seed : seeds)
    for (uint32_t stream : {0u, 7u})
      for (uint32_t gen : {0u, 1199u})
        for (unsigned long long block : {0ull, 1ull, 0x100000000ull}) {
          cqd::Philox4 r = cqd::philox_block(seed, stream, gen, block);
          std::printf("block %016llx %08x %08x %016llx -> %08x %08x %08x %08x\n", seed, stream, gen, block, r.x[0], r.x[1], r.x[2], r.x[3]);
        }

  // Special values, ties in both directions, and a sweep of pseudo-random bit patterns.
  const uint32_t special[] = {0x00000000u, 0x80000000u, 0x3f800000u, 0x3f808000u, 0x3f818000u, 0x3f80ffffu,
                              0x7f7fffffu, 0xff7fffffu, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u,
                              0xff800001u, 0x7fffffffu, 0x00000001u, 0x807fffffu};
  for (uint32_t u : special) {
    float f; std::memcpy(&f, &u, 4);
    std::printf("bf16 %08x %04x\n", u, cqd::f32_to_bf16_bits(f));
  }
  for (uint32_t i = 0; i < 4096; ++i) {
    const uint32_t u = cqd::philox_block(0x5eedull, 0, 0, i).x[0];
    float f; std::memcpy(&f, &u, 4);
    std::printf("bf16 %08x %04x\n", u, cqd::f32_to_bf16_bits(f));
  }
  return 0;
}
