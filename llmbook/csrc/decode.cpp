// One decoding step of a llama-style GPT (batch 1, one thread) in plain C++.
// llmbook.generate builds it with torch.utils.cpp_extension.load and calls it
// through ctypes: no torch headers, so it compiles in a few seconds.
// Weights are float32, or int8 with one float scale per output row.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>
#include <immintrin.h>

extern "C" {
struct Mat {               // y = W x with W (rows, cols), row-major
  const void* w;           // float32, or int8 when s is set
  const float* s;          // (rows,) scales of int8 rows, or null
  int64_t rows, cols;
};
struct Layer {
  const float* g1; Mat qkv, o;    // attention: norm gain, (q k v) rows, out
  const float* g2; Mat gu, down;  // SwiGLU: norm gain, (gate up) rows, down
  float* k; float* v;             // cache (n_kv_head, max_len, head_dim)
};
struct Model {
  int64_t n_layer, d, n_head, n_kv_head, head_dim, hidden, vocab, max_len;
  float eps;
  const float* emb;               // (vocab, d) token embeddings
  const float* cos; const float* sin;  // (max_len, head_dim) RoPE tables
  const float* gf; Mat head;      // final norm gain, (vocab, d) lm_head
  Layer* layers;
};
}

#if defined(__AVX512F__)
static inline float hsum(__m512 a) { return _mm512_reduce_add_ps(a); }
#elif defined(__AVX2__) && defined(__FMA__)
static inline float hsum(__m256 a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_hadd_ps(s, s); s = _mm_hadd_ps(s, s);
  return _mm_cvtss_f32(s);
}
#endif

// One row of W dotted with x. Rows are read one after the other, front to
// back: a single forward stream is what the hardware prefetcher follows best
// (interleaving four rows ran at half the speed). Two sums hide FMA latency.
static float row_f32(const float* w, const float* x, int64_t C) {
  int64_t c = 0; float y = 0.f;
#if defined(__AVX512F__)
  __m512 a0 = _mm512_setzero_ps(), a1 = a0;
  for (; c + 32 <= C; c += 32) {
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c), _mm512_loadu_ps(x + c), a0);
    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c + 16),
                         _mm512_loadu_ps(x + c + 16), a1);
  }
  y = hsum(_mm512_add_ps(a0, a1));
#elif defined(__AVX2__) && defined(__FMA__)
  __m256 a0 = _mm256_setzero_ps(), a1 = a0;
  for (; c + 16 <= C; c += 16) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + c), _mm256_loadu_ps(x + c), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + c + 8),
                         _mm256_loadu_ps(x + c + 8), a1);
  }
  y = hsum(_mm256_add_ps(a0, a1));
#endif
  for (; c < C; c++) y += w[c] * x[c];
  return y;
}

// int8 row: each weight widened to float before its multiply-add
static float row_i8(const int8_t* w, const float* x, int64_t C) {
  int64_t c = 0; float y = 0.f;
#if defined(__AVX512F__)
  __m512 a0 = _mm512_setzero_ps(), a1 = a0;
  for (; c + 32 <= C; c += 32) {
    __m256i b = _mm256_loadu_si256((const __m256i*)(w + c));  // 32 weights
    __m512 w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
        _mm256_castsi256_si128(b)));
    __m512 w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
        _mm256_extracti128_si256(b, 1)));
    a0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + c), a0);
    a1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + c + 16), a1);
  }
  y = hsum(_mm512_add_ps(a0, a1));
#elif defined(__AVX2__) && defined(__FMA__)
  __m256 a0 = _mm256_setzero_ps(), a1 = a0;
  for (; c + 16 <= C; c += 16) {
    __m128i b = _mm_loadu_si128((const __m128i*)(w + c));  // 16 weights
    __m256 w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
    __m256 w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
        _mm_unpackhi_epi64(b, b)));
    a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + c), a0);
    a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + c + 8), a1);
  }
  y = hsum(_mm256_add_ps(a0, a1));
#endif
  for (; c < C; c++) y += float(w[c]) * x[c];
  return y;
}

// y = W x, or y += W x when add is set
static void matvec(const Mat& m, const float* x, float* y, bool add = false) {
  const int64_t C = m.cols;
  for (int64_t r = 0; r < m.rows; r++) {
    float t = m.s ? row_i8((const int8_t*)m.w + r * C, x, C) * m.s[r]
                  : row_f32((const float*)m.w + r * C, x, C);
    y[r] = add ? y[r] + t : t;
  }
}

// out = x / rms(x) * g  (RMSNorm, Zhang & Sennrich 2019)
static void rmsnorm(const float* x, const float* g, float* out, int64_t d,
                    float eps) {
  float ss = 0.f;
  for (int64_t i = 0; i < d; i++) ss += x[i] * x[i];
  float r = 1.f / std::sqrt(ss / d + eps);
  for (int64_t i = 0; i < d; i++) out[i] = x[i] * r * g[i];
}

// rotate one head by its position's angles (RoPE, rotate-half layout)
static void rope(float* h, const float* cos, const float* sin, int64_t hs) {
  const int64_t m = hs / 2;
  for (int64_t i = 0; i < m; i++) {
    float a = h[i], b = h[i + m];
    h[i] = a * cos[i] - b * sin[i];
    h[i + m] = b * cos[i + m] + a * sin[i + m];
  }
}

// one query head attends to the cached positions 0..pos of its kv head
static void attend(const float* q, const float* K, const float* V, float* y,
                   float* w, int64_t pos, int64_t hs) {
  const float scale = 1.f / std::sqrt((float)hs);
  float mx = -INFINITY;
  for (int64_t t = 0; t <= pos; t++) {
    w[t] = row_f32(K + t * hs, q, hs) * scale;  // q . k_t / sqrt(hs)
    mx = w[t] > mx ? w[t] : mx;
  }
  float sum = 0.f;
  for (int64_t t = 0; t <= pos; t++) {
    w[t] = std::exp(w[t] - mx); sum += w[t];
  }
  for (int64_t i = 0; i < hs; i++) y[i] = 0.f;
  for (int64_t t = 0; t <= pos; t++) {
    const float p = w[t] / sum;
    for (int64_t i = 0; i < hs; i++) y[i] += p * V[t * hs + i];
  }
}

static void block(const Model& m, const Layer& L, float* x, int64_t pos,
                  std::vector<float>& buf) {
  const int64_t d = m.d, hs = m.head_dim, nh = m.n_head, nkv = m.n_kv_head;
  float* xb = buf.data();                // (d) normalised x
  float* qkv = xb + d;                   // (nh + 2 nkv) * hs
  float* y = qkv + (nh + 2 * nkv) * hs;  // (nh * hs) attention output
  float* h = y + nh * hs;                // (2 hidden) gate, up
  float* w = h + 2 * m.hidden;           // (max_len) attention weights
  rmsnorm(x, L.g1, xb, d, m.eps);
  matvec(L.qkv, xb, qkv);
  const float *cos = m.cos + pos * hs, *sin = m.sin + pos * hs;
  for (int64_t j = 0; j < nh + nkv; j++) rope(qkv + j * hs, cos, sin, hs);
  float *k = qkv + nh * hs, *v = k + nkv * hs;
  for (int64_t j = 0; j < nkv; j++)      // store this position's keys/values
    for (int64_t i = 0; i < hs; i++) {
      L.k[(j * m.max_len + pos) * hs + i] = k[j * hs + i];
      L.v[(j * m.max_len + pos) * hs + i] = v[j * hs + i];
    }
  for (int64_t j = 0; j < nh; j++) {     // query head j reads kv head j/group
    int64_t kv = j / (nh / nkv);
    attend(qkv + j * hs, L.k + kv * m.max_len * hs, L.v + kv * m.max_len * hs,
           y + j * hs, w, pos, hs);
  }
  matvec(L.o, y, x, true);               // x += o_proj(y)
  rmsnorm(x, L.g2, xb, d, m.eps);
  matvec(L.gu, xb, h);
  for (int64_t i = 0; i < m.hidden; i++) {  // SwiGLU: silu(gate) * up
    float g = h[i];
    h[i] = g / (1.f + std::exp(-g)) * h[m.hidden + i];
  }
  matvec(L.down, h, x, true);            // x += down_proj(h)
}

extern "C" {
// feed token at position pos (its keys/values join the cache); logits (vocab)
void llmbook_step(const Model* m, int64_t token, int64_t pos, float* logits) {
  const int64_t d = m->d;
  std::vector<float> x(m->emb + token * d, m->emb + (token + 1) * d);
  std::vector<float> buf(2 * d + (m->n_head + 2 * m->n_kv_head) * m->head_dim
                         + m->n_head * m->head_dim + 2 * m->hidden
                         + m->max_len);
  for (int64_t l = 0; l < m->n_layer; l++)
    block(*m, m->layers[l], x.data(), pos, buf);
  rmsnorm(x.data(), m->gf, buf.data(), d, m->eps);
  matvec(m->head, buf.data(), logits);
}

// the step's matrix-vector products alone, on a dummy vector (for profiling)
void llmbook_matvecs(const Model* m) {
  std::vector<const Mat*> ws{&m->head};
  for (int64_t l = 0; l < m->n_layer; l++) {
    const Layer& L = m->layers[l];
    ws.insert(ws.end(), {&L.qkv, &L.o, &L.gu, &L.down});
  }
  int64_t n = 0;
  for (const Mat* w : ws) n = std::max(n, std::max(w->rows, w->cols));
  std::vector<float> x(n, 0.01f), y(n);
  for (const Mat* w : ws) matvec(*w, x.data(), y.data());
}

// sum of n floats with several independent vector sums: a streaming read
double llmbook_stream_sum(const float* a, int64_t n) {
  int64_t i = 0; double tail = 0;
#if defined(__AVX512F__)
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (; i + 64 <= n; i += 64) {
    s0 = _mm512_add_ps(s0, _mm512_loadu_ps(a + i));
    s1 = _mm512_add_ps(s1, _mm512_loadu_ps(a + i + 16));
    s2 = _mm512_add_ps(s2, _mm512_loadu_ps(a + i + 32));
    s3 = _mm512_add_ps(s3, _mm512_loadu_ps(a + i + 48));
  }
  tail = hsum(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
#elif defined(__AVX2__) && defined(__FMA__)
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_add_ps(s0, _mm256_loadu_ps(a + i));
    s1 = _mm256_add_ps(s1, _mm256_loadu_ps(a + i + 8));
    s2 = _mm256_add_ps(s2, _mm256_loadu_ps(a + i + 16));
    s3 = _mm256_add_ps(s3, _mm256_loadu_ps(a + i + 24));
  }
  tail = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
#endif
  for (; i < n; i++) tail += a[i];
  return tail;
}
}
