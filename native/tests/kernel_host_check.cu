// Runs the host-callable parts of the production kernels' headers on the CPU, so that machines
// without a GPU still check them: the Philox4x32-10 generator (against Random123's known-answer
// vectors, checked by the managed tests) and the float32 -> bfloat16 rounding (compared by the
// managed tests with CycleQD.Tensors.DTypeConversion.SingleToBF16).
// Output, one record per line:
//   philox <c0> <c1> <c2> <c3> <k0> <k1> -> <x0> <x1> <x2> <x3>     (hex)
//   block <seed> <stream> <generation> <block> -> <x0> <x1> <x2> <x3>
//   bf16 <float32 bits> <bfloat16 bits>                              (hex)
//   segment_layout <sizeof> <offsets of base parents out n first_block>  (MergeSegment, decimal)
//   gseg <vec> <segment> <n> <first_block>                           (grouped merge plan, decimal)
//   gblock <vec> <block> <segment>                                   (find_segment)
//   grange <vec> <segment> <begin> <end>                             (group_thread_range, non-empty)
#include <cstddef>
#include <cstdio>
#include <cstring>
#include "../kernels/common.cuh"
#include "../kernels/merge_group.cuh"
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

  // The grouped merge's mapping on a mix of sizes (a single element, odd tails, exact multiples of a
  // block's V * 256 elements and one past them), for 4-byte (V = 4) and 2-byte (V = 8) storage.
  std::printf("segment_layout %zu %zu %zu %zu %zu %zu\n", sizeof(cqd::MergeSegment), offsetof(cqd::MergeSegment, base),
              offsetof(cqd::MergeSegment, parents), offsetof(cqd::MergeSegment, out), offsetof(cqd::MergeSegment, n),
              offsetof(cqd::MergeSegment, first_block));
  const long long sizes[] = {1, 7, 1024, 1025, 2048, 4099, 3, 8197};
  constexpr int count = sizeof(sizes) / sizeof(sizes[0]);
  for (int vec : {4, 8}) {
    cqd::MergeSegment segs[count] = {};
    long long blocks = 0;
    const long long per_block = (long long)vec * cqd::kGroupThreads;
    for (int i = 0; i < count; ++i) {
      segs[i].n = sizes[i];
      segs[i].first_block = blocks;
      blocks += (sizes[i] + per_block - 1) / per_block;
      std::printf("gseg %d %d %lld %lld\n", vec, i, segs[i].n, segs[i].first_block);
    }
    for (long long b = 0; b < blocks; ++b) {
      const int s = cqd::find_segment(segs, count, b);
      std::printf("gblock %d %lld %d\n", vec, b, s);
      for (int t = 0; t < cqd::kGroupThreads; ++t) {
        long long begin, end;
        cqd::group_thread_range(segs[s], b, t, vec, begin, end);
        if (begin < end) std::printf("grange %d %d %lld %lld\n", vec, s, begin, end);
      }
    }
  }
  return 0;
}
