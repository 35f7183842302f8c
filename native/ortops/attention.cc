// CycleQD's operators for ONNX Runtime's CPU provider (domain "ai.cycleqd"), loaded by
// CycleQD.Onnx (CpuOperators) into the sessions of the fused Llama graph.
//
// CachedAttention: a Llama layer's attention over a KV buffer that is both the past input and the
// present output (bound to the same memory). Its inputs and outputs are those of ONNX Runtime's
// GroupQueryAttention, so one decoder drives either operator:
//   inputs  q [B, S, H*D], k [B, S, KV*D], v [B, S, KV*D] (float32),
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
// attended). Inside each (row, kv head) block of past_key the keys are stored transposed (D rows of
// C positions), so that the scores of consecutive positions are computed side by side; the buffer
// keeps its declared shape and only this operator reads it.
//
// Why it exists: at head_dim 8 and batch 64, ONNX Runtime's CPU GroupQueryAttention spends most of a
// decoding step in two small matrix products per (row, head); here one task per (row, kv head)
// computes the query heads that share it with vector loops (docs/perf.md).
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <exception>
#include <string>
#include <vector>

namespace {

constexpr const char* kDomain = "ai.cycleqd";

// e^x for x <= 0 (softmax arguments after the maximum is subtracted), relative error about 2e-7.
// Plain arithmetic (rounding by the 1.5 * 2^23 trick, no library call) so that loops calling it vectorize.
inline float ExpNonPositive(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float round = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low mantissa bits
  const float shifted = x * 1.4426950408889634f + round;
  const float n = shifted - round;
  // x - n*ln2 in two parts (Cody-Waite) keeps r exact to float precision.
  float r = x - n * 0.693145751953125f;
  r = r - n * 1.428606765330187e-06f;
  // e^r on |r| <= ln2/2: degree-6 Taylor polynomial.
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  bits = (bits - 0x4B400000 + 127) << 23;  // the integer n, biased, in the exponent field
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); i++) text += (i > 0 ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

struct Shape {
  int64_t batch, seq, heads, kv_heads, head_dim, capacity;
};

struct Work {
  Shape s;
  bool prompt;
  float scale;
  const float* q;
  const float* k;
  const float* v;
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

constexpr int kLanes = 8;  // independent partial results, so that reductions vectorize

// scores[p] = sum_i q[i] * kt[i * cap + p], p < len.
template <int D>
void Scores(const float* q, const float* __restrict kt, int64_t cap, int64_t d_runtime, int64_t len, float* __restrict scores) {
  const int64_t d = D > 0 ? D : d_runtime;
  for (int64_t p = 0; p < len; p++) scores[p] = 0.0f;
  for (int64_t i = 0; i < d; i++) {
    const float qi = q[i];
    const float* __restrict row = kt + i * cap;
    for (int64_t p = 0; p < len; p++) scores[p] += qi * row[p];
  }
}

// Replaces scores[p] by e^(scores[p] - max) and returns their sum.
inline float SoftmaxNumerators(float* __restrict scores, int64_t len) {
  float m[kLanes];
  for (int j = 0; j < kLanes; j++) m[j] = scores[0];
  int64_t p = 0;
  for (; p + kLanes <= len; p += kLanes)
    for (int j = 0; j < kLanes; j++) m[j] = scores[p + j] > m[j] ? scores[p + j] : m[j];
  float max = m[0];
  for (int j = 1; j < kLanes; j++) max = m[j] > max ? m[j] : max;
  for (; p < len; p++) max = scores[p] > max ? scores[p] : max;
  float part[kLanes] = {};
  p = 0;
  for (; p + kLanes <= len; p += kLanes)
    for (int j = 0; j < kLanes; j++) {
      const float e = ExpNonPositive(scores[p + j] - max);
      scores[p + j] = e;
      part[j] += e;
    }
  float sum = 0.0f;
  for (; p < len; p++) {
    const float e = ExpNonPositive(scores[p] - max);
    scores[p] = e;
    sum += e;
  }
  for (int j = 0; j < kLanes; j++) sum += part[j];
  return sum;
}

// Eight floats that the compiler keeps in one vector register (or two on 128-bit machines).
typedef float Float8 __attribute__((vector_size(32)));

inline Float8 Load8(const float* p) {
  Float8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// acc[i] = sum_p weights[p] * v[p * d + i], for d a multiple of 8 (D = 0: any d, plain loops).
// Independent partial sums (over interleaved positions when a row is one vector) keep the
// multiply-adds from waiting on each other.
template <int D>
void WeightedSum(const float* __restrict weights, const float* __restrict v, int64_t d_runtime, int64_t len, float* __restrict acc) {
  if constexpr (D > 0 && D % 8 == 0) {
    constexpr int kVectors = D / 8;
    constexpr int kChains = kVectors >= 4 ? 1 : 4 / kVectors;
    Float8 part[kChains][kVectors] = {};
    int64_t p = 0;
    for (; p + kChains <= len; p += kChains)
      for (int c = 0; c < kChains; c++)
        for (int j = 0; j < kVectors; j++) part[c][j] += weights[p + c] * Load8(v + (p + c) * D + j * 8);
    for (; p < len; p++)
      for (int j = 0; j < kVectors; j++) part[0][j] += weights[p] * Load8(v + p * D + j * 8);
    for (int j = 0; j < kVectors; j++) {
      Float8 total = part[0][j];
      for (int c = 1; c < kChains; c++) total += part[c][j];
      std::memcpy(acc + j * 8, &total, sizeof total);
    }
  } else {
    const int64_t d = D > 0 ? D : d_runtime;
    for (int64_t i = 0; i < d; i++) acc[i] = 0.0f;
    for (int64_t p = 0; p < len; p++)
      for (int64_t i = 0; i < d; i++) acc[i] += weights[p] * v[p * d + i];
  }
}

// Appends row b's new keys (transposed) and values for kv head kvh, then attends its query heads.
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
  // Append the new tokens' key (turned to its position, transposed) and value.
  for (int64_t t = 0; t < s.seq; t++) {
    const int64_t src = (b * s.seq + t) * s.kv_heads * d + kvh * d;
    const float* key = w.k + src;
    float turned[D > 0 ? D : 512];
    if (w.cos != nullptr) {
      Rotate(key, d, w.cos + (start + t) * half, w.sin + (start + t) * half, 1.0f, turned);
      key = turned;
    }
    for (int64_t i = 0; i < d; i++) kt[i * cap + start + t] = key[i];
    std::memcpy(vc + (start + t) * d, w.v + src, sizeof(float) * d);
  }
  for (int64_t t = 0; t < s.seq; t++) {
    const int64_t len = std::min(start + t, last) + 1;  // positions attended
    for (int64_t g = 0; g < group; g++) {
      const int64_t h = kvh * group + g;
      const float* qh = w.q + (b * s.seq + t) * s.heads * d + h * d;
      float* o = w.out + (b * s.seq + t) * s.heads * d + h * d;
      float qs[D > 0 ? D : 512];
      if (w.cos != nullptr)
        Rotate(qh, d, w.cos + (start + t) * half, w.sin + (start + t) * half, w.scale, qs);
      else
        for (int64_t i = 0; i < d; i++) qs[i] = qh[i] * w.scale;
      Scores<D>(qs, kt, cap, d, len, scores);
      const float inv = 1.0f / SoftmaxNumerators(scores, len);
      float acc[D > 0 ? D : 512];
      WeightedSum<D>(scores, vc, d, len, acc);
      for (int64_t i = 0; i < d; i++) o[i] = acc[i] * inv;
    }
  }
}

void AttendTask(void* data, size_t index) {
  const Work& w = *static_cast<const Work*>(data);
  const int64_t b = static_cast<int64_t>(index) / w.s.kv_heads, kvh = static_cast<int64_t>(index) % w.s.kv_heads;
  thread_local std::vector<float> scores;
  if (scores.size() < static_cast<size_t>(w.s.capacity)) scores.resize(static_cast<size_t>(w.s.capacity));
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
    try {
      Compute(context);
      return nullptr;
    } catch (const Ort::Exception& e) {
      return Ort::GetApi().CreateStatus(e.GetOrtErrorCode(), e.what());
    } catch (const std::exception& e) {
      return Ort::GetApi().CreateStatus(ORT_FAIL, e.what());
    }
  }

  void Compute(OrtKernelContext* context) {
    Ort::KernelContext ctx(context);
    auto q = ctx.GetInput(0), k = ctx.GetInput(1), v = ctx.GetInput(2);
    auto past_k = ctx.GetInput(3), past_v = ctx.GetInput(4), seqlens = ctx.GetInput(5), total = ctx.GetInput(6);
    auto qs = q.GetTensorTypeAndShapeInfo().GetShape();
    auto ks = k.GetTensorTypeAndShapeInfo().GetShape();
    auto cs = past_k.GetTensorTypeAndShapeInfo().GetShape();
    if (qs.size() != 3 || ks.size() != 3 || cs.size() != 4)
      throw Ort::Exception("CachedAttention: q, k, v must be [batch, seq, hidden] and the KV buffers [batch, kv_heads, capacity, head_dim]", ORT_INVALID_ARGUMENT);
    Shape s{qs[0], qs[1], heads_, kv_heads_, cs[3], cs[2]};
    if (qs[2] != heads_ * s.head_dim || ks[0] != s.batch || ks[1] != s.seq || ks[2] != kv_heads_ * s.head_dim ||
        cs[0] != s.batch || cs[1] != kv_heads_ || s.head_dim > 512 ||
        past_v.GetTensorTypeAndShapeInfo().GetShape() != cs ||
        v.GetTensorTypeAndShapeInfo().GetShape() != ks ||
        seqlens.GetTensorTypeAndShapeInfo().GetElementCount() != static_cast<size_t>(s.batch))
      throw Ort::Exception("CachedAttention: input shapes disagree with num_heads " + std::to_string(heads_) + ", kv_num_heads " +
                               std::to_string(kv_heads_) + " and each other: q " + ShapeText(qs) + ", k " + ShapeText(ks) + ", v " +
                               ShapeText(v.GetTensorTypeAndShapeInfo().GetShape()) + ", past_key " + ShapeText(cs) + ", past_value " +
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
    auto out = ctx.GetOutput(0, qs);
    auto present_k = ctx.GetOutput(1, cs);
    auto present_v = ctx.GetOutput(2, cs);
    float* kc = present_k.GetTensorMutableData<float>();
    float* vc = present_v.GetTensorMutableData<float>();
    if (kc != past_k.GetTensorData<float>() || vc != past_v.GetTensorData<float>())
      throw Ort::Exception("CachedAttention appends in place: bind present_key and present_value to the past_key and past_value buffers", ORT_INVALID_ARGUMENT);
    Work w{s, prompt, scale_ != 0.0f ? scale_ : 1.0f / std::sqrt(static_cast<float>(s.head_dim)),
           q.GetTensorData<float>(), k.GetTensorData<float>(), v.GetTensorData<float>(), kc, vc, lens,
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
    try {
      *kernel = new CachedAttentionKernel(api, info);
      return nullptr;
    } catch (const Ort::Exception& e) {
      return Ort::GetApi().CreateStatus(e.GetOrtErrorCode(), e.what());
    } catch (const std::exception& e) {
      return Ort::GetApi().CreateStatus(ORT_FAIL, e.what());
    }
  }
  const char* GetName() const { return "CachedAttention"; }
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }
  size_t GetInputTypeCount() const { return 9; }
  ONNXTensorElementDataType GetInputType(size_t index) const {
    return index == 5 || index == 6 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  // cos_cache and sin_cache (inputs 7 and 8) may be left out.
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const {
    return index >= 7 ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
  }
  size_t GetOutputTypeCount() const { return 3; }
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
  static CachedAttentionOp op;
  // A domain must outlive every session that uses it: one, made once, kept for the process.
  static std::mutex lock;
  static Ort::CustomOpDomain* domain = nullptr;
  OrtStatus* status = nullptr;
  try {
    std::lock_guard<std::mutex> guard(lock);
    if (domain == nullptr) {
      domain = new Ort::CustomOpDomain(kDomain);
      domain->Add(&op);
    }
    Ort::UnownedSessionOptions(options).Add(static_cast<OrtCustomOpDomain*>(*domain));
  } catch (const Ort::Exception& e) {
    status = Ort::GetApi().CreateStatus(e.GetOrtErrorCode(), e.what());
  }
  return status;
}
