// CycleQD's operators for ONNX Runtime's CPU provider (domain "ai.cycleqd"), loaded by
// CycleQD.Onnx (CpuOperators) into the sessions of the fused Llama graph.
//
// Two operators: CachedAttention (below) and SiluMul (silu(gate) * up from one tensor holding both,
// further down).
//
// CachedAttention: a Llama layer's attention over a KV buffer that is both the past input and the
// present output (bound to the same memory). Its inputs and outputs are those of ONNX Runtime's
// GroupQueryAttention, so one decoder drives either operator:
//   inputs  q [B, S, H*D], k [B, S, KV*D], v [B, S, KV*D] (float32); or, with k and v left out,
//           q [B, S, (H+2KV)*D] holding each token's query, key and value side by side,
//           past_key, past_value [B, KV, C, D], seqlens_k int32 [B] (each row's cached plus new
//           real tokens, minus one), total_sequence_length int32 scalar,
//           optional cos_cache, sin_cache [positions, D/2]: with them, q and k arrive unturned
//           and are turned here (Hugging Face's rotate_half layout), as GroupQueryAttention's
//           do_rotary does: a prompt token at its index, a new token at its row's cached length
//   outputs out [B, S, H*D], present_key, present_value (the past buffers, written in place)
//   attributes num_heads, kv_num_heads, scale
// A prompt (S == total_sequence_length) starts every row at position 0; otherwise the S new tokens
// of row b follow its seqlens_k[b] + 1 - S cached ones. Query s of row b attends causally to the
// positions up to its own, and never past seqlens_k[b] (so the padding of a shorter prompt is never
// attended). Inside each (row, kv head) block of past_key the keys are stored in tiles of 8
// positions, each tile transposed (D rows of 8), so that the scores of 8 consecutive positions come
// out of one vector per key element and a row's keys are one contiguous run (KeyIndex); the buffer
// keeps its declared shape and only this operator reads it.
//
// Why it exists: at head_dim 8 and batch 64, ONNX Runtime's CPU GroupQueryAttention spends most of a
// decoding step in two small matrix products per (row, head); here one task per (row, kv head)
// computes the query heads that share it together, with vector loops (docs/perf.md).
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <exception>
#include <string>
#include <vector>

namespace {

constexpr const char* kDomain = "ai.cycleqd";

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); i++) text += (i > 0 ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

// Runs body and hands ONNX Runtime what a custom operator's entry points return: null, or the
// status of the exception that ended it (an Ort::Exception keeps its error code).
template <typename Body>
OrtStatusPtr StatusOf(Body&& body) {
  try {
    body();
    return nullptr;
  } catch (const Ort::Exception& e) {
    return Ort::GetApi().CreateStatus(e.GetOrtErrorCode(), e.what());
  } catch (const std::exception& e) {
    return Ort::GetApi().CreateStatus(ORT_FAIL, e.what());
  }
}

struct Shape {
  int64_t batch, seq, heads, kv_heads, head_dim, capacity;
};

struct Work {
  Shape s;
  bool prompt;
  float scale;  // the attention scale times log2 e: scores in base 2
  const float* q;
  const float* k;
  const float* v;
  int64_t q_stride;   // floats from one token's query to the next: H*D, or (H+2KV)*D when packed with k and v
  int64_t kv_stride;  // the same for keys and values: KV*D, or (H+2KV)*D when packed
  float* key_cache;
  float* value_cache;
  const int32_t* seqlens;
  float* out;
  const float* cos;  // [positions, D/2], or null: q and k arrive already turned
  const float* sin;
};

// Turns x (head_dim d, Hugging Face's rotate_half layout: first half paired with second half) by
// position pos of the cos/sin tables, into out: out1 = x1 cos - x2 sin, out2 = x2 cos + x1 sin.
inline void Rotate(const float* x, int64_t d, const float* cos_row, const float* sin_row, float scale, float* out) {
  const int64_t half = d / 2;
  for (int64_t i = 0; i < half; i++) {
    const float a = x[i], b = x[i + half];
    out[i] = (a * cos_row[i] - b * sin_row[i]) * scale;
    out[i + half] = (b * cos_row[i] + a * sin_row[i]) * scale;
  }
}

constexpr int kLanes = 8;  // floats in one Float8

// Eight floats (eight int32) that the compiler keeps in one vector register, or two on 128-bit machines.
typedef float Float8 __attribute__((vector_size(32)));
typedef int32_t Int8 __attribute__((vector_size(32)));

inline Float8 Load8(const float* p) {
  Float8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline Float8 Splat8(float x) { return Float8{x, x, x, x, x, x, x, x}; }

inline Float8 Max8(Float8 a, Float8 b) {
#if defined(__AVX__)
  return _mm256_max_ps(a, b);
#else
  return a > b ? a : b;
#endif
}

// 2^x for x <= 0 in each lane, relative error about 2e-7: n = x rounded, r = x - n (exact, |r| <= 1/2),
// 2^r = e^(r ln2) by its degree-6 Taylor polynomial, and 2^n built in the exponent field. The scores
// arrive in base 2 (the query is scaled by log2 e as well), which saves the range reduction's
// multiplications. Written on vectors: the compiler left the same code as a scalar function
// unvectorized, and the softmax then took most of the operator's time.
inline Float8 Exp2NonPositive8(Float8 x) {
  x = Max8(x, Splat8(-126.0f));  // 2^-126: the smallest normal float
  const Float8 round = Splat8(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer in the low mantissa bits
  const Float8 shifted = x + round;
  const Float8 r = x - (shifted - round);
  Float8 p = Splat8(1.5403530393381606e-4f);  // ln2^6 / 6!
  p = p * r + 1.3333558146428443e-3f;         // ln2^5 / 5!
  p = p * r + 9.6181291076284772e-3f;         // ln2^4 / 4!
  p = p * r + 5.5504108664821580e-2f;         // ln2^3 / 3!
  p = p * r + 0.24022650695910071f;           // ln2^2 / 2!
  p = p * r + 0.69314718055994531f;           // ln2
  p = p * r + 1.0f;
  Int8 bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  bits = (bits - (0x4B400000 - 127)) << 23;  // the integer n, biased, in the exponent field
  Float8 scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// Where element i of position p's key lives in a (row, kv head) block of keys with capacity cap:
// positions in tiles of kLanes, each tile transposed (d rows of kLanes floats), so that the scores of
// a tile come out of one vector per key element and a row's keys are one contiguous run of memory.
// When cap is not a multiple of kLanes, the last tile is d rows of its narrower width.
inline int64_t KeyIndex(int64_t p, int64_t i, int64_t d, int64_t cap) {
  const int64_t tile = p / kLanes * kLanes;
  const int64_t width = std::min<int64_t>(kLanes, cap - tile);
  return tile * d + i * width + (p - tile);
}

// scores[g * cap + p] = sum_i q[g * d + i] * key(p)[i] for the G query heads g of one KV head and
// p < len, over the tiled keys kt (KeyIndex): each key vector is loaded once for all G heads.
// G = 1 runs two chains of multiply-adds over the key elements so that they do not wait on each other.
template <int D, int G>
void Scores(const float* q, const float* __restrict kt, int64_t cap, int64_t d_runtime, int64_t len, float* __restrict scores) {
  const int64_t d = D > 0 ? D : d_runtime;
  constexpr int kChains = G == 1 ? 2 : 1;
  for (int64_t tile = 0; tile < len; tile += kLanes) {
    if (tile + kLanes > cap) {
      // The narrower last tile of a capacity that is not a multiple of kLanes.
      for (int g = 0; g < G; g++)
        for (int64_t p = tile; p < len; p++) {
          float sum = 0.0f;
          for (int64_t i = 0; i < d; i++) sum += q[g * d + i] * kt[KeyIndex(p, i, d, cap)];
          scores[g * cap + p] = sum;
        }
      break;
    }
    const float* t = kt + tile * d;
    Float8 acc[kChains][G];
    for (int c = 0; c < kChains; c++)
      for (int g = 0; g < G; g++) acc[c][g] = Splat8(0.0f);
    int64_t i = 0;
    for (; i + kChains <= d; i += kChains)
      for (int c = 0; c < kChains; c++) {
        const Float8 key = Load8(t + (i + c) * kLanes);
        for (int g = 0; g < G; g++) acc[c][g] += q[g * d + i + c] * key;
      }
    for (; i < d; i++) {
      const Float8 key = Load8(t + i * kLanes);
      for (int g = 0; g < G; g++) acc[0][g] += q[g * d + i] * key;
    }
    for (int g = 0; g < G; g++) {
      Float8 sum = acc[0][g];
      for (int c = 1; c < kChains; c++) sum += acc[c][g];
      float* out = scores + g * cap;
      if (tile + kLanes <= len) {
        std::memcpy(out + tile, &sum, sizeof sum);
      } else {
        for (int64_t p = tile; p < len; p++) out[p] = sum[p - tile];
      }
    }
  }
}

// Replaces scores[p] by 2^(scores[p] - max) and returns their sum (the scores are in base 2).
inline float SoftmaxNumerators(float* __restrict scores, int64_t len) {
  const int64_t full = len / kLanes * kLanes;
  float max = scores[0];
  if (full > 0) {
    Float8 m = Load8(scores);
    for (int64_t p = kLanes; p < full; p += kLanes) m = Max8(m, Load8(scores + p));
    for (int j = 0; j < kLanes; j++) max = m[j] > max ? m[j] : max;
  }
  for (int64_t p = full; p < len; p++) max = scores[p] > max ? scores[p] : max;
  const Float8 top = Splat8(max);
  Float8 sums = Splat8(0.0f);
  for (int64_t p = 0; p < full; p += kLanes) {
    const Float8 e = Exp2NonPositive8(Load8(scores + p) - top);
    std::memcpy(scores + p, &e, sizeof e);
    sums += e;
  }
  float sum = 0.0f;
  for (int j = 0; j < kLanes; j++) sum += sums[j];
  if (full < len) {
    // The last len - full scores, in one vector whose unused lanes are neither stored nor summed.
    Float8 tail = top;
    for (int64_t p = full; p < len; p++) tail[p - full] = scores[p];
    const Float8 e = Exp2NonPositive8(tail - top);
    for (int64_t p = full; p < len; p++) {
      scores[p] = e[p - full];
      sum += e[p - full];
    }
  }
  return sum;
}

// acc[g * d + i] = sum_p weights[g * cap + p] * v[p * d + i] for the G query heads g of one KV
// head: each value vector is loaded once for all G heads. For d a multiple of 8 the sums run in
// 8-wide vectors, a block of them at a time so that the partial sums stay in registers, with
// independent partial sums over interleaved positions where a block holds few; D = 0 (any d) runs
// plain loops.
template <int D, int G>
void WeightedSum(const float* __restrict weights, int64_t cap, const float* __restrict v, int64_t d_runtime, int64_t len, float* __restrict acc) {
  if constexpr (D > 0 && D % 8 == 0) {
    constexpr int kVectors = D / 8;
    constexpr int kBlock = kVectors < 8 / G ? kVectors : (8 / G > 0 ? 8 / G : 1);  // vectors per block
    constexpr int kChains = G * kBlock >= 4 ? 1 : 4 / (G * kBlock);
    static_assert(kVectors % kBlock == 0, "head_dim / 8 must be a multiple of the block");
    for (int jb = 0; jb < kVectors; jb += kBlock) {
      Float8 part[kChains][G][kBlock];
      for (int c = 0; c < kChains; c++)
        for (int g = 0; g < G; g++)
          for (int j = 0; j < kBlock; j++) part[c][g][j] = Splat8(0.0f);
      int64_t p = 0;
      for (; p + kChains <= len; p += kChains)
        for (int c = 0; c < kChains; c++)
          for (int j = 0; j < kBlock; j++) {
            const Float8 value = Load8(v + (p + c) * D + (jb + j) * 8);
            for (int g = 0; g < G; g++) part[c][g][j] += weights[g * cap + p + c] * value;
          }
      for (; p < len; p++)
        for (int j = 0; j < kBlock; j++) {
          const Float8 value = Load8(v + p * D + (jb + j) * 8);
          for (int g = 0; g < G; g++) part[0][g][j] += weights[g * cap + p] * value;
        }
      for (int g = 0; g < G; g++)
        for (int j = 0; j < kBlock; j++) {
          Float8 total = part[0][g][j];
          for (int c = 1; c < kChains; c++) total += part[c][g][j];
          std::memcpy(acc + g * D + (jb + j) * 8, &total, sizeof total);
        }
    }
  } else {
    const int64_t d = D > 0 ? D : d_runtime;
    for (int g = 0; g < G; g++) {
      float* a = acc + g * d;
      const float* wg = weights + g * cap;
      for (int64_t i = 0; i < d; i++) a[i] = 0.0f;
      for (int64_t p = 0; p < len; p++)
        for (int64_t i = 0; i < d; i++) a[i] += wg[p] * v[p * d + i];
    }
  }
}

// Attends the G query heads [h0, h0 + G) of token t of row b to the first len positions of their
// KV head's block (kt tiled keys, vc values), writing their outputs. scores: G * cap floats.
template <int D, int G>
void AttendHeads(const Work& w, int64_t b, int64_t t, int64_t h0, int64_t position, int64_t len, const float* kt, const float* vc, float* scores) {
  const Shape& s = w.s;
  const int64_t d = D > 0 ? D : s.head_dim;
  const int64_t cap = s.capacity;
  const int64_t half = d / 2;
  float qs[G * (D > 0 ? D : 512)];
  for (int g = 0; g < G; g++) {
    const float* qh = w.q + (b * s.seq + t) * w.q_stride + (h0 + g) * d;
    if (w.cos != nullptr)
      Rotate(qh, d, w.cos + position * half, w.sin + position * half, w.scale, qs + g * d);
    else
      for (int64_t i = 0; i < d; i++) qs[g * d + i] = qh[i] * w.scale;
  }
  Scores<D, G>(qs, kt, cap, d, len, scores);
  float inv[G];
  for (int g = 0; g < G; g++) inv[g] = 1.0f / SoftmaxNumerators(scores + g * cap, len);
  float acc[G * (D > 0 ? D : 512)];
  WeightedSum<D, G>(scores, cap, vc, d, len, acc);
  for (int g = 0; g < G; g++) {
    float* o = w.out + (b * s.seq + t) * s.heads * d + (h0 + g) * d;
    for (int64_t i = 0; i < d; i++) o[i] = acc[g * d + i] * inv[g];
  }
}

// Appends row b's new keys (turned, tiled) and values for kv head kvh, then attends its query heads:
// all of them together where there are 2, 4 or 8, else one at a time. scores: group * cap floats.
template <int D>
void AttendGroup(const Work& w, int64_t b, int64_t kvh, float* scores) {
  const Shape& s = w.s;
  const int64_t d = D > 0 ? D : s.head_dim;
  const int64_t cap = s.capacity;
  const int64_t group = s.heads / s.kv_heads;
  const int64_t last = w.seqlens[b];  // index of the row's last real position
  const int64_t start = w.prompt ? 0 : last + 1 - s.seq;
  float* kt = w.key_cache + (b * s.kv_heads + kvh) * cap * d;
  float* vc = w.value_cache + (b * s.kv_heads + kvh) * cap * d;
  const int64_t half = d / 2;
  // Append the new tokens' key (turned to its position, tiled) and value.
  for (int64_t t = 0; t < s.seq; t++) {
    const int64_t src = (b * s.seq + t) * w.kv_stride + kvh * d;
    const float* key = w.k + src;
    float turned[D > 0 ? D : 512];
    if (w.cos != nullptr) {
      Rotate(key, d, w.cos + (start + t) * half, w.sin + (start + t) * half, 1.0f, turned);
      key = turned;
    }
    for (int64_t i = 0; i < d; i++) kt[KeyIndex(start + t, i, d, cap)] = key[i];
    std::memcpy(vc + (start + t) * d, w.v + src, sizeof(float) * d);
  }
  for (int64_t t = 0; t < s.seq; t++) {
    const int64_t len = std::min(start + t, last) + 1;  // positions attended
    const int64_t h0 = kvh * group;
    switch (group) {
      case 2: AttendHeads<D, 2>(w, b, t, h0, start + t, len, kt, vc, scores); break;
      case 4: AttendHeads<D, 4>(w, b, t, h0, start + t, len, kt, vc, scores); break;
      case 8: AttendHeads<D, 8>(w, b, t, h0, start + t, len, kt, vc, scores); break;
      default:
        for (int64_t g = 0; g < group; g++) AttendHeads<D, 1>(w, b, t, h0 + g, start + t, len, kt, vc, scores);
    }
  }
}

void AttendTask(void* data, size_t index) {
  const Work& w = *static_cast<const Work*>(data);
  const int64_t b = static_cast<int64_t>(index) / w.s.kv_heads, kvh = static_cast<int64_t>(index) % w.s.kv_heads;
  thread_local std::vector<float> scores;
  const size_t needed = static_cast<size_t>(w.s.capacity * (w.s.heads / w.s.kv_heads));
  if (scores.size() < needed) scores.resize(needed);
  switch (w.s.head_dim) {
    case 8: AttendGroup<8>(w, b, kvh, scores.data()); break;
    case 16: AttendGroup<16>(w, b, kvh, scores.data()); break;
    case 32: AttendGroup<32>(w, b, kvh, scores.data()); break;
    case 64: AttendGroup<64>(w, b, kvh, scores.data()); break;
    case 128: AttendGroup<128>(w, b, kvh, scores.data()); break;
    default: AttendGroup<0>(w, b, kvh, scores.data()); break;
  }
}

struct CachedAttentionKernel {
  CachedAttentionKernel(const OrtApi& /*api*/, const OrtKernelInfo* info) {
    Ort::ConstKernelInfo ki(info);
    heads_ = ki.GetAttribute<int64_t>("num_heads");
    kv_heads_ = ki.GetAttribute<int64_t>("kv_num_heads");
    scale_ = ki.GetAttribute<float>("scale");
    if (heads_ <= 0 || kv_heads_ <= 0 || heads_ % kv_heads_ != 0)
      throw Ort::Exception("CachedAttention: num_heads must be a positive multiple of kv_num_heads", ORT_INVALID_ARGUMENT);
  }

  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    return StatusOf([&] { Compute(context); });
  }

  void Compute(OrtKernelContext* context) {
    Ort::KernelContext ctx(context);
    auto q = ctx.GetInput(0), k = ctx.GetInput(1), v = ctx.GetInput(2);
    auto past_k = ctx.GetInput(3), past_v = ctx.GetInput(4), seqlens = ctx.GetInput(5), total = ctx.GetInput(6);
    // Without k and v, q is packed: [batch, seq, (num_heads + 2 kv_num_heads) * head_dim], each
    // token's query, key and value side by side (one matrix product makes all three).
    const bool packed = k == nullptr;
    if (packed != (v == nullptr))
      throw Ort::Exception("CachedAttention: k and v come together (both absent: q holds query, key and value)", ORT_INVALID_ARGUMENT);
    auto qs = q.GetTensorTypeAndShapeInfo().GetShape();
    auto ks = packed ? std::vector<int64_t>{} : k.GetTensorTypeAndShapeInfo().GetShape();
    auto vs = packed ? std::vector<int64_t>{} : v.GetTensorTypeAndShapeInfo().GetShape();
    auto cs = past_k.GetTensorTypeAndShapeInfo().GetShape();
    if (qs.size() != 3 || (!packed && ks.size() != 3) || cs.size() != 4)
      throw Ort::Exception("CachedAttention: q, k, v must be [batch, seq, hidden] and the KV buffers [batch, kv_heads, capacity, head_dim]", ORT_INVALID_ARGUMENT);
    Shape s{qs[0], qs[1], heads_, kv_heads_, cs[3], cs[2]};
    const int64_t q_width = (packed ? heads_ + 2 * kv_heads_ : heads_) * s.head_dim;
    if (qs[2] != q_width || (!packed && (ks[0] != s.batch || ks[1] != s.seq || ks[2] != kv_heads_ * s.head_dim || vs != ks)) ||
        cs[0] != s.batch || cs[1] != kv_heads_ || s.head_dim > 512 ||
        past_v.GetTensorTypeAndShapeInfo().GetShape() != cs ||
        seqlens.GetTensorTypeAndShapeInfo().GetElementCount() != static_cast<size_t>(s.batch))
      throw Ort::Exception("CachedAttention: input shapes disagree with num_heads " + std::to_string(heads_) + ", kv_num_heads " +
                               std::to_string(kv_heads_) + " and each other: q " + ShapeText(qs) +
                               (packed ? std::string(" (packed with k and v)") : ", k " + ShapeText(ks) + ", v " + ShapeText(vs)) +
                               ", past_key " + ShapeText(cs) + ", past_value " +
                               ShapeText(past_v.GetTensorTypeAndShapeInfo().GetShape()) + ", seqlens_k of " +
                               std::to_string(seqlens.GetTensorTypeAndShapeInfo().GetElementCount()) + " (head_dim at most 512)",
                           ORT_INVALID_ARGUMENT);
    const int32_t total_len = *total.GetTensorData<int32_t>();
    // Optional cos_cache, sin_cache [positions, head_dim / 2]: turn q and k inside, as
    // GroupQueryAttention's do_rotary does (a prompt token's position is its index, a new token's
    // is the row's cached length).
    const float* cos = nullptr;
    const float* sin = nullptr;
    if (ctx.GetInputCount() > 7) {
      auto cos_cache = ctx.GetInput(7), sin_cache = ctx.GetInput(8);
      if (cos_cache == nullptr || sin_cache == nullptr)
        throw Ort::Exception("CachedAttention: cos_cache and sin_cache come together", ORT_INVALID_ARGUMENT);
      auto rs = cos_cache.GetTensorTypeAndShapeInfo().GetShape();
      if (rs.size() != 2 || rs[1] * 2 != s.head_dim || s.head_dim % 2 != 0 || sin_cache.GetTensorTypeAndShapeInfo().GetShape() != rs)
        throw Ort::Exception("CachedAttention: cos_cache and sin_cache must be [positions, head_dim / 2]", ORT_INVALID_ARGUMENT);
      if (rs[0] < s.capacity)
        throw Ort::Exception("CachedAttention: the rotary tables have " + std::to_string(rs[0]) + " positions, fewer than the KV capacity " + std::to_string(s.capacity), ORT_INVALID_ARGUMENT);
      cos = cos_cache.GetTensorData<float>();
      sin = sin_cache.GetTensorData<float>();
    }
    const bool prompt = s.seq == total_len;
    const int32_t* lens = seqlens.GetTensorData<int32_t>();
    for (int64_t b = 0; b < s.batch; b++) {
      const int64_t last = lens[b];
      const int64_t start = prompt ? 0 : last + 1 - s.seq;
      if (last < 0 || last >= total_len || start < 0 || start + s.seq > s.capacity || last >= s.capacity)
        throw Ort::Exception("CachedAttention: seqlens_k[" + std::to_string(b) + "] = " + std::to_string(last) +
                                 " does not fit total_sequence_length " + std::to_string(total_len) + ", " +
                                 std::to_string(s.seq) + " new tokens and a KV capacity of " + std::to_string(s.capacity),
                             ORT_INVALID_ARGUMENT);
    }
    auto out = ctx.GetOutput(0, std::vector<int64_t>{s.batch, s.seq, heads_ * s.head_dim});
    auto present_k = ctx.GetOutput(1, cs);
    auto present_v = ctx.GetOutput(2, cs);
    float* kc = present_k.GetTensorMutableData<float>();
    float* vc = present_v.GetTensorMutableData<float>();
    if (kc != past_k.GetTensorData<float>() || vc != past_v.GetTensorData<float>())
      throw Ort::Exception("CachedAttention appends in place: bind present_key and present_value to the past_key and past_value buffers", ORT_INVALID_ARGUMENT);
    // The query is scaled by log2 e too, so that the scores come out in base 2 (Exp2NonPositive8).
    const float scale = (scale_ != 0.0f ? scale_ : 1.0f / std::sqrt(static_cast<float>(s.head_dim))) * 1.4426950408889634f;
    const float* qd = q.GetTensorData<float>();
    Work w{s, prompt, scale, qd,
           packed ? qd + heads_ * s.head_dim : k.GetTensorData<float>(),
           packed ? qd + (heads_ + kv_heads_) * s.head_dim : v.GetTensorData<float>(),
           q_width, packed ? q_width : kv_heads_ * s.head_dim, kc, vc, lens,
           out.GetTensorMutableData<float>(), cos, sin};
    const size_t tasks = static_cast<size_t>(s.batch * s.kv_heads);
    ctx.ParallelFor(AttendTask, tasks, 0, &w);
  }

 private:
  int64_t heads_ = 0, kv_heads_ = 0;
  float scale_ = 0.0f;
};

struct CachedAttentionOp : Ort::CustomOpBase<CachedAttentionOp, CachedAttentionKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const {
    return StatusOf([&] { *kernel = new CachedAttentionKernel(api, info); });
  }
  const char* GetName() const { return "CachedAttention"; }
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }
  size_t GetInputTypeCount() const { return 9; }
  ONNXTensorElementDataType GetInputType(size_t index) const {
    return index == 5 || index == 6 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  // k and v (inputs 1 and 2: q then holds all three) and cos_cache and sin_cache (inputs 7 and 8) may be left out.
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const {
    return index == 1 || index == 2 || index >= 7 ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
  }
  size_t GetOutputTypeCount() const { return 3; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

// SiluMul: a Llama MLP's gate, from one matrix product that made gate and up side by side.
//   input  x [..., 2I] float32: gate = x[..., :I], up = x[..., I:]
//   output [..., I] = silu(gate) * up, silu(a) = a / (1 + e^-a)
// It replaces two operators (the activation and the product), and, with the packed product, the
// second matrix product too.
inline Float8 Silu8(Float8 a) {
  const Float8 magnitude = Max8(a, -a);
  const Float8 e = Exp2NonPositive8(magnitude * -1.4426950408889634f);  // e^-|a| in (0, 1]
  const Float8 one = Splat8(1.0f);
  // sigmoid(a) = 1 / (1 + e^-a) for a >= 0, e^a / (1 + e^a) for a < 0: never e^+|a|, which could overflow.
  const Float8 sigmoid = (a >= 0.0f ? one : e) / (one + e);
  return a * sigmoid;
}

struct SiluMulWork {
  const float* x;
  float* out;
  int64_t width;  // I
};

void SiluMulRow(void* data, size_t row) {
  const SiluMulWork& w = *static_cast<const SiluMulWork*>(data);
  const float* gate = w.x + static_cast<int64_t>(row) * 2 * w.width;
  const float* up = gate + w.width;
  float* out = w.out + static_cast<int64_t>(row) * w.width;
  int64_t i = 0;
  for (; i + kLanes <= w.width; i += kLanes) {
    const Float8 r = Silu8(Load8(gate + i)) * Load8(up + i);
    std::memcpy(out + i, &r, sizeof r);
  }
  for (; i < w.width; i++) out[i] = Silu8(Splat8(gate[i]))[0] * up[i];
}

struct SiluMulKernel {
  SiluMulKernel(const OrtApi& /*api*/, const OrtKernelInfo* /*info*/) {}

  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    return StatusOf([&] { Compute(context); });
  }

  void Compute(OrtKernelContext* context) {
    Ort::KernelContext ctx(context);
    auto x = ctx.GetInput(0);
    auto shape = x.GetTensorTypeAndShapeInfo().GetShape();
    if (shape.empty() || shape.back() % 2 != 0)
      throw Ort::Exception("SiluMul: the last axis holds gate and up side by side and must be even; x is " + ShapeText(shape), ORT_INVALID_ARGUMENT);
    const int64_t width = shape.back() / 2;
    shape.back() = width;
    auto out = ctx.GetOutput(0, shape);
    const int64_t rows = width == 0 ? 0 : static_cast<int64_t>(out.GetTensorTypeAndShapeInfo().GetElementCount()) / width;
    SiluMulWork w{x.GetTensorData<float>(), out.GetTensorMutableData<float>(), width};
    // Threads only for a large input: a decoding step's few thousand values take microseconds,
    // less than waking a thread.
    if (rows * width >= (1 << 16))
      ctx.ParallelFor(SiluMulRow, static_cast<size_t>(rows), 0, &w);
    else
      for (int64_t r = 0; r < rows; r++) SiluMulRow(&w, static_cast<size_t>(r));
  }
};

struct SiluMulOp : Ort::CustomOpBase<SiluMulOp, SiluMulKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const {
    return StatusOf([&] { *kernel = new SiluMulKernel(api, info); });
  }
  const char* GetName() const { return "SiluMul"; }
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }
  size_t GetInputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetInputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

}  // namespace

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    // An ONNX Runtime older than the headers this was built with: say so through its oldest API.
    const OrtApi* oldest = api_base->GetApi(1);
    const std::string message = std::string("libcycleqd_ortops.so needs ONNX Runtime API version ") +
                                std::to_string(ORT_API_VERSION) + " or later; this ONNX Runtime is " + api_base->GetVersionString() +
                                " (set CYCLEQD_CPU_ATTENTION=group-query to use GroupQueryAttention)";
    return oldest != nullptr ? oldest->CreateStatus(ORT_FAIL, message.c_str()) : nullptr;
  }
  Ort::InitApi(api);
  static CachedAttentionOp attention;
  static SiluMulOp silu_mul;
  // A domain must outlive every session that uses it: one, made once, kept for the process.
  static std::mutex lock;
  static Ort::CustomOpDomain* domain = nullptr;
  return StatusOf([&] {
    std::lock_guard<std::mutex> guard(lock);
    if (domain == nullptr) {
      domain = new Ort::CustomOpDomain(kDomain);
      domain->Add(&attention);
      domain->Add(&silu_mul);
    }
    Ort::UnownedSessionOptions(options).Add(static_cast<OrtCustomOpDomain*>(*domain));
  });
}
