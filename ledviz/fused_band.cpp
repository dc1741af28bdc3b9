// The band's elementwise chain of ledviz's blocked inference attention, in one pass per row.
//
// ledviz/fused.py compiles this file with the system's C++ compiler on first use (cached), and
// calls it through ctypes with raw pointers it has checked. Without a compiler ledviz keeps its
// PyTorch operations, which compute the same numbers.
//
// One call handles one head of one chunk of query blocks. The chunk's score rows (n rows of
// xp + c + 2w columns: the x global columns, padded to xp, then the row's block of c + 2w keys)
// are turned into probabilities in place: the masked softmax of each row over its x global
// columns and its 2w + 1 window slots (block columns t .. t + 2w for row t of its block), in
// float32, scaled by the head's weight; every other column of the row becomes 0 (so the buffer
// can be multiplied by the value spans as it is). Optionally each row's probabilities are also
// written in LED's layout (x global columns, then the 2w + 1 slots) into `dest`, in its own
// dtype, and per-row statistics into `stats`.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>
#if defined(__F16C__) || defined(__AVX512BF16__) || defined(__AMX_BF16__)
#include <immintrin.h>
#endif
#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#define LEDVIZ_AMX 1
#endif
#if defined(__AVX512BF16__) && defined(__AVX512F__)
#define LEDVIZ_DPBF16 1
#endif
#if defined(LEDVIZ_AMX) || defined(LEDVIZ_DPBF16)
#define LEDVIZ_PACKED 1  // the bfloat16 band's products from packed keys and values, in this file
#endif

namespace {

// F32_AS_BF16: float32 storage whose values are read rounded to bfloat16 (what a bfloat16 product's
// output would hold)
enum Dtype { F32 = 0, BF16 = 1, F16 = 2, F32_AS_BF16 = 3 };

// entries at or below this bias are masked (the Python side passes -1e30 for masked keys)
constexpr float MASKED = -1e29f;

inline uint16_t to_bf16_bits(uint32_t u) {  // round to nearest even (scores and probabilities: never NaN)
    u += 0x7FFFu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
}

inline uint16_t to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return to_bf16_bits(u);
}

inline uint16_t to_f16(float f) {
    _Float16 h = _Float16(f);
    uint16_t u;
    std::memcpy(&u, &h, 2);
    return u;
}

// 16 floats: GCC/Clang vector extensions, lowered to whatever vector width the CPU has
typedef float f16x __attribute__((vector_size(64)));
typedef int32_t i16x __attribute__((vector_size(64)));
constexpr int64_t LANES = 16;

inline f16x splat(float a) { return f16x{} + a; }

// e^x for x <= 0, 16 at a time (Cephes' expf: relative error about 1e-7), 0 below -87
inline f16x exp_nonpositive(f16x x) {
    const f16x lo = splat(-87.0f);
    f16x xc = x < lo ? lo : x;
    const f16x round = splat(12582912.0f);  // 1.5 * 2^23: adding and subtracting it rounds to an integer
    f16x n = (xc * 1.44269504088896341f + round) - round;
    f16x r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    f16x p = splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    i16x bits = (__builtin_convertvector(n, i16x) + 127) << 23;
    f16x scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return x < lo ? splat(0.0f) : p * scale;
}

// erf(x) as x P(x^2) / Q(x^2) on |x| <= 4 (1 beyond: erf(4) = 1 - 1.5e-8): a rational fitted for this
// kernel by least squares (Loeb's iteration) on 20,000 points of [0, 4]; largest absolute error 3.8e-7
// in float32, far below a bfloat16 step of the GELU it feeds. The two polynomials' coefficients:
constexpr float ERF_P[6] = {1.1283791065216064f, 1.857631504535675e-01f, 5.2165236324071884e-02f,
                            3.578850533813238e-03f, 2.8271134942770004e-04f, 2.109064098476665e-06f};
constexpr float ERF_Q[6] = {1.0f, 4.979614317417145e-01f, 1.1221860349178314e-01f, 1.4588458463549614e-02f,
                            1.1213748948648572e-03f, 3.8597554521402344e-05f};

// GELU in its erf form, x (1 + erf(x / sqrt 2)) / 2, of one float (the tail of a row)
inline float gelu1(float x) {
    const float z = std::fmin(std::fmax(x * 0.70710678118654752f, -4.0f), 4.0f), s = z * z;
    float p = ERF_P[5], q = ERF_Q[5];
    for (int i = 4; i >= 0; --i) {
        p = p * s + ERF_P[i];
        q = q * s + ERF_Q[i];
    }
    const float e = std::fmin(std::fmax(z * p / q, -1.0f), 1.0f);
    return std::isnan(x) ? x : x * (e + 1.0f) * 0.5f;
}

inline f16x load16(const float* p) {
    f16x v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

inline void store16(float* p, f16x v) { std::memcpy(p, &v, sizeof v); }

// 16 bfloat16 values as floats
inline f16x bf16_load16(const uint16_t* p) {
    typedef uint16_t u16x __attribute__((vector_size(32)));
    u16x h;
    std::memcpy(&h, p, sizeof h);
    const i16x bits = __builtin_convertvector(h, i16x) << 16;
    f16x v;
    std::memcpy(&v, &bits, sizeof v);
    return v;
}

// read `count` values of a row (dtype dt) plus their biases into v
template <typename S>
inline void gather(const S* __restrict src, Dtype dt, const float* __restrict bias, int64_t count, float* __restrict v) {
    if constexpr (sizeof(S) == 4) {
        if (dt == F32_AS_BF16) {
#pragma omp simd
            for (int64_t k = 0; k < count; ++k) {
                uint32_t u;
                std::memcpy(&u, src + k, 4);
                u = uint32_t(to_bf16_bits(u)) << 16;
                float f;
                std::memcpy(&f, &u, 4);
                v[k] = f + bias[k];
            }
        } else {
#pragma omp simd
            for (int64_t k = 0; k < count; ++k) v[k] = src[k] + bias[k];
        }
    } else if (dt == BF16) {
#pragma omp simd
        for (int64_t k = 0; k < count; ++k) {
            uint32_t u = uint32_t(src[k]) << 16;
            float f;
            std::memcpy(&f, &u, 4);
            v[k] = f + bias[k];
        }
    } else {
        int64_t k = 0;
#if defined(__F16C__)
        for (; k + 8 <= count; k += 8) {  // 8 at a time with the CPU's conversion
            __m256 f = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k)));
            _mm256_storeu_ps(v + k, _mm256_add_ps(f, _mm256_loadu_ps(bias + k)));
        }
#endif
        for (; k < count; ++k) {
            _Float16 h;
            std::memcpy(&h, src + k, 2);
            v[k] = float(h) + bias[k];
        }
    }
}

#if defined(__AVX512BF16__)
// v * scale rounded to bfloat16 with the CPU's conversion (round to nearest even, as to_bf16; it reads
// float32 subnormals as 0, which no probability or activation here comes near)
inline void put_bf16(uint16_t* __restrict dst, const float* __restrict v, float scale, int64_t count) {
    const __m512 sc = _mm512_set1_ps(scale);
    int64_t k = 0;
    for (; k + 16 <= count; k += 16) {
        const __m256bh h = _mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_loadu_ps(v + k), sc));
        __m256i bits;
        std::memcpy(&bits, &h, sizeof bits);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + k), bits);
    }
    if (k < count) {
        const __mmask16 m = __mmask16((1u << (count - k)) - 1u);
        const __m256bh h = _mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, v + k), sc));
        __m256i bits;
        std::memcpy(&bits, &h, sizeof bits);
        _mm256_mask_storeu_epi16(dst + k, m, bits);
    }
}
#endif

template <typename S>
inline void put(S* __restrict dst, Dtype dt, const float* __restrict v, float scale, int64_t count) {
    if constexpr (sizeof(S) == 4) {
#pragma omp simd
        for (int64_t k = 0; k < count; ++k) dst[k] = v[k] * scale;
    } else if (dt == BF16) {
#if defined(__AVX512BF16__)
        put_bf16(dst, v, scale, count);
#else
#pragma omp simd
        for (int64_t k = 0; k < count; ++k) dst[k] = to_bf16(v[k] * scale);
#endif
    } else {
        int64_t k = 0;
#if defined(__F16C__)
        const __m256 sc = _mm256_set1_ps(scale);
        for (; k + 8 <= count; k += 8) {  // 8 at a time with the CPU's conversion (round to nearest even)
            __m128i h = _mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(v + k), sc), _MM_FROUND_TO_NEAREST_INT);
            _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + k), h);
        }
#endif
        for (; k < count; ++k) dst[k] = to_f16(v[k] * scale);
    }
}

// n rows of scores (src, dtype st, row stride `stride`) -> probabilities in dst (dtype pt, row stride
// dst_stride; dst may be src itself: each row is read whole before it is written), dest and stats
template <typename S, typename P, typename D>
void band_softmax_impl(const S* src, Dtype st, int64_t stride, P* dst, Dtype pt, int64_t dst_stride, int64_t n,
                       int64_t x, int64_t xp, int64_t c, int64_t w, const float* key_bias, const float* global_bias,
                       const uint8_t* row_zero, float weight, D* dest, Dtype dt, int64_t dest_rows,
                       int64_t dest_stride, float* stats, const float* global_pos, int64_t row0) {
    const int64_t slots = 2 * w + 1, span = c + 2 * w, width = x + slots;
    const int64_t padded = (width + LANES - 1) / LANES * LANES;
    std::vector<float> buf(2 * padded + 2 * LANES, 0.0f);
    float* __restrict v = buf.data();       // the row's biased scores; masked past the row
    float* __restrict e = v + padded;       // e^(score - max), then zeros (read by the statistics' vectors)
    f16x iota;
    for (int l = 0; l < LANES; ++l) iota[l] = float(l);
    for (int64_t k = width; k < padded; ++k) v[k] = 2 * MASKED;
    for (int64_t i = 0; i < n; ++i) {
        const S* in = src + i * stride;
        P* row = dst + i * dst_stride;
        const int64_t t = i % c, j = i / c;
        D* out = (dest != nullptr && i < dest_rows) ? dest + i * dest_stride : nullptr;
        if (row_zero[i]) {
            std::memset(row, 0, sizeof(P) * (xp + span));
            if (out) std::memset(out, 0, sizeof(D) * width);
            if (stats) std::memset(stats + 4 * i, 0, sizeof(float) * 4);
            continue;
        }
        float sum = 0.0f, ex = 0.0f, all_dist = 0.0f;
#if defined(__AVX512F__)
        if (sizeof(S) == 4 && st == F32) {
            // float32 scores: the band read where it is, twice (the max, then the exponentials, with the
            // statistics' sums when asked), instead of copied first and read from the copy
            const float* band = reinterpret_cast<const float*>(in) + xp + t;
            const float* kb = key_bias + j * c + t;
            float m = -3.0e38f;
            for (int64_t g = 0; g < x; ++g) {
                v[g] = float(in[g]) + global_bias[g];
                m = v[g] > m ? v[g] : m;
            }
            __m512 mx0 = _mm512_set1_ps(-3.0e38f), mx1 = mx0;
            int64_t k = 0;
            for (; k + 32 <= slots; k += 32) {
                mx0 = _mm512_max_ps(mx0, _mm512_add_ps(_mm512_loadu_ps(band + k), _mm512_loadu_ps(kb + k)));
                mx1 = _mm512_max_ps(mx1, _mm512_add_ps(_mm512_loadu_ps(band + k + 16), _mm512_loadu_ps(kb + k + 16)));
            }
            for (; k < slots; k += LANES) {
                const __mmask16 mk = slots - k >= LANES ? __mmask16(0xFFFF) : __mmask16((1u << (slots - k)) - 1u);
                const __m512 a = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, band + k), _mm512_maskz_loadu_ps(mk, kb + k));
                mx0 = _mm512_mask_max_ps(mx0, mk, mx0, a);
            }
            const float mb = _mm512_reduce_max_ps(_mm512_max_ps(mx0, mx1));
            m = mb > m ? mb : m;
            if (m <= MASKED) {  // nothing to attend to: a row of zeros
                std::memset(row, 0, sizeof(P) * (xp + span));
                if (out) std::memset(out, 0, sizeof(D) * width);
                if (stats) std::memset(stats + 4 * i, 0, sizeof(float) * 4);
                continue;
            }
            // with the statistics, the sums the general path below makes: e (s - max) for the entropy, and
            // e |k - x - w| over the row's columns k (the global columns' terms corrected after it)
            for (int64_t g = 0; g < x; ++g) {
                e[g] = exp_nonpositive(splat(v[g] - m))[0];
                sum += e[g];
                if (stats) {
                    ex += e[g] * (v[g] - m);
                    all_dist += e[g] * std::fabs(float(g - x - w));
                }
            }
            const f16x mm = splat(m), zero = splat(0.0f);
            f16x s0 = zero, s1 = zero, x0 = zero, x1 = zero, d0 = zero, d1 = zero;
            // 16 slots' exponentials from their biased scores a (0 in the lanes mk leaves out), stored and summed
            auto slots16 = [&](f16x a, int64_t at, __mmask16 mk, f16x& s_acc, f16x& x_acc, f16x& d_acc, auto with_stats) {
                const f16x sh = a - mm;
                f16x ek = exp_nonpositive(sh);
                if (mk != __mmask16(0xFFFF)) {
                    __m512 ev;
                    std::memcpy(&ev, &ek, sizeof ev);
                    ev = _mm512_maskz_mov_ps(mk, ev);
                    std::memcpy(&ek, &ev, sizeof ek);
                }
                __m512 ev;
                std::memcpy(&ev, &ek, sizeof ev);
                _mm512_mask_storeu_ps(e + x + at, mk, ev);
                s_acc += ek;
                if constexpr (decltype(with_stats)::value) {  // a masked entry: 0 x a finite shift
                    const f16x off = iota + float(at - w);
                    x_acc += ek * sh;
                    d_acc += ek * (off < 0.0f ? -off : off);
                }
            };
            auto band_pass = [&](auto with_stats) {
                int64_t k = 0;
                for (; k + 32 <= slots; k += 32) {
                    slots16(load16(band + k) + load16(kb + k), k, __mmask16(0xFFFF), s0, x0, d0, with_stats);
                    slots16(load16(band + k + 16) + load16(kb + k + 16), k + 16, __mmask16(0xFFFF), s1, x1, d1,
                            with_stats);
                }
                for (; k < slots; k += LANES) {
                    const __mmask16 mk = slots - k >= LANES ? __mmask16(0xFFFF) : __mmask16((1u << (slots - k)) - 1u);
                    const __m512 a = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, band + k), _mm512_maskz_loadu_ps(mk, kb + k));
                    f16x af;
                    std::memcpy(&af, &a, sizeof af);
                    slots16(af, k, mk, s0, x0, d0, with_stats);
                }
            };
            if (stats)
                band_pass(std::true_type{});
            else
                band_pass(std::false_type{});
            const f16x st2 = s0 + s1, xs = x0 + x1, ds = d0 + d1;
            for (int l = 0; l < LANES; ++l) {
                sum += st2[l];
                ex += xs[l];
                all_dist += ds[l];
            }
        } else
#endif
        {
            gather(in, st, global_bias, x, v);
            gather(in + xp + t, st, key_bias + j * c + t, slots, v + x);
            // four independent accumulators in each reduction: one would wait on its own latency
            f16x mv[4] = {splat(-3.0e38f), splat(-3.0e38f), splat(-3.0e38f), splat(-3.0e38f)};
            for (int64_t k = 0, u = 0; k < padded; k += LANES, u = (u + 1) & 3) {
                f16x a = load16(v + k);
                mv[u] = a > mv[u] ? a : mv[u];
            }
            for (int u = 1; u < 4; ++u) mv[0] = mv[u] > mv[0] ? mv[u] : mv[0];
            float m = mv[0][0];
            for (int l = 1; l < LANES; ++l) m = mv[0][l] > m ? mv[0][l] : m;
            if (m <= MASKED) {  // nothing to attend to: a row of zeros
                std::memset(row, 0, sizeof(P) * (xp + span));
                if (out) std::memset(out, 0, sizeof(D) * width);
                if (stats) std::memset(stats + 4 * i, 0, sizeof(float) * 4);
                continue;
            }
            const f16x mm = splat(m), zero = splat(0.0f);
            f16x sumv[4] = {zero, zero, zero, zero}, exv[4] = {zero, zero, zero, zero}, dv[4] = {zero, zero, zero, zero};
            if (stats) {
                // with the statistics' sums: e (s - max) for the entropy (masked scores are finite, so a
                // masked entry adds 0 x finite), and e |k - x - w| for the band's distances (the global
                // columns' wrong terms are taken out below)
                for (int64_t k = 0, u = 0; k < padded; k += LANES, u = (u + 1) & 3) {
                    const f16x sh = load16(v + k) - mm;
                    const f16x ek = exp_nonpositive(sh);
                    const f16x off = iota + float(k - x - w);
                    store16(e + k, ek);
                    sumv[u] += ek;
                    exv[u] += ek * sh;
                    dv[u] += ek * (off < 0.0f ? -off : off);
                }
            } else {
                for (int64_t k = 0, u = 0; k < padded; k += LANES, u = (u + 1) & 3) {
                    const f16x ek = exp_nonpositive(load16(v + k) - mm);
                    store16(e + k, ek);
                    sumv[u] += ek;
                }
            }
            const f16x sums = (sumv[0] + sumv[1]) + (sumv[2] + sumv[3]), exs = (exv[0] + exv[1]) + (exv[2] + exv[3]);
            const f16x ds = (dv[0] + dv[1]) + (dv[2] + dv[3]);
            for (int l = 0; l < LANES; ++l) {
                sum += sums[l];
                ex += exs[l];
                all_dist += ds[l];
            }

        }
        const float scale = weight / sum;
        // the row in place: global columns, zeros up to the block, zeros, the band, zeros
        put(row, pt, e, scale, x);
        std::memset(row + x, 0, sizeof(P) * (xp - x + t));
        put(row + xp + t, pt, e + x, scale, slots);
        std::memset(row + xp + t + slots, 0, sizeof(P) * (span - t - slots));
        if (out) {
            if (sizeof(D) == sizeof(P) && dt == pt) {  // the same values as the row's: copied, not converted again
                std::memcpy(out, row, sizeof(P) * x);
                std::memcpy(out + x, row + xp + t, sizeof(P) * slots);
            } else {
                put(out, dt, e, scale, width);
            }
        }
        if (stats) {
            // entropy -sum q log q with q = scale e: -(log(scale) sum q + scale sum e (s - max))
            float qsum = sum * scale;
            float entropy = scale > 0.0f ? -(std::log(scale) * qsum + scale * ex) : 0.0f;
            float dist = all_dist, gmass = 0.0f;
            const float here = float(row0 + i);
            for (int64_t g = 0; g < x; ++g) {  // the global columns: their own distances
                dist += e[g] * (std::fabs(here - global_pos[g]) - std::fabs(float(g - x - w)));
                gmass += e[g];
            }
            stats[4 * i + 0] = dist * scale;
            stats[4 * i + 1] = entropy;
            stats[4 * i + 2] = gmass * scale;
            stats[4 * i + 3] = e[x + w] * scale;
        }
    }
}

template <typename S, typename P>
int dispatch_dest(const S* src, Dtype st, int64_t stride, P* dst, Dtype pt, int64_t dst_stride, int64_t n, int64_t x,
                  int64_t xp, int64_t c, int64_t w, const float* key_bias, const float* global_bias,
                  const uint8_t* row_zero, float weight, void* dest, int dest_dtype, int64_t dest_rows,
                  int64_t dest_stride, float* stats, const float* global_pos, int64_t row0) {
    if (dest == nullptr || dest_dtype == F32) {
        band_softmax_impl(src, st, stride, dst, pt, dst_stride, n, x, xp, c, w, key_bias, global_bias, row_zero,
                          weight, static_cast<float*>(dest), F32, dest_rows, dest_stride, stats, global_pos, row0);
        return 0;
    }
    if (dest_dtype != BF16 && dest_dtype != F16) return 2;
    band_softmax_impl(src, st, stride, dst, pt, dst_stride, n, x, xp, c, w, key_bias, global_bias, row_zero, weight,
                      static_cast<uint16_t*>(dest), Dtype(dest_dtype), dest_rows, dest_stride, stats, global_pos,
                      row0);
    return 0;
}

// ledviz_band_softmax's rows for the c rows [r, r + c) of a chunk, one query block of the whole-head kernels:
// their scores `src` (float32, rows `width` apart) become probabilities in `dst` (dtype pt; may be src), and
// `dest`'s rows of the chunk, its statistics' rows, take theirs
template <typename P>
int block_probabilities(const float* src, Dtype st, P* dst, Dtype pt, int64_t width, int64_t r, int64_t x, int64_t xp,
                        int64_t c, int64_t w, const float* key_bias, const float* global_bias, const uint8_t* row_zero,
                        float weight, void* dest, int dest_dtype, int64_t dest_rows, int64_t dest_stride, float* stats,
                        const float* global_pos, int64_t row0) {
    const int64_t rows_dest = dest_rows > r ? (dest_rows - r < c ? dest_rows - r : c) : 0;
    return dispatch_dest(src, st, width, dst, pt, width, c, x, xp, c, w, key_bias + r, global_bias, row_zero + r,
                         weight,
                         rows_dest ? static_cast<char*>(dest) + r * dest_stride * (dest_dtype == F32 ? 4 : 2) : nullptr,
                         dest_dtype, rows_dest, dest_stride, stats ? stats + 4 * r : nullptr, global_pos, row0 + r);
}

#if defined(LEDVIZ_AMX)
// The band's two products on the CPU's matrix unit (AMX), for one head of a chunk of query blocks, with
// the keys and values packed once per call in the layouts the unit reads (MKL's product repacks both
// operands on every block). Tiles: 0-3 accumulate a 32 x 32 float32 corner of the result, 4-5 hold 32
// rows of the left operand, 6-7 two 16-column slices of the right one (pairs of bfloat16 along k).
struct TileConfig {
    uint8_t palette = 1, start_row = 0, reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
};

inline void amx_configure() {
    TileConfig cfg;
    for (int t = 0; t < 8; ++t) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    _tile_loadconfig(&cfg);
}

// C (32 x 32 float32 at c, rows ldc bytes apart) = sum over ksteps of A (32 rows x 32 bf16 at a + 32 s,
// rows lda bytes apart) x B (16 pairs x 32 columns at b + s * bstep, rows ldb bytes apart, the second
// 16 columns at b + half)
inline void amx_corner(float* c, int64_t ldc, const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb,
                       int64_t bstep, int64_t half, int64_t k0, int64_t k1) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t s = k0; s < k1; ++s) {
        _tile_loadd(4, a + 32 * s, lda);
        _tile_loadd(5, reinterpret_cast<const char*>(a + 32 * s) + 16 * lda, lda);
        _tile_loadd(6, b + s * bstep, ldb);
        _tile_loadd(7, b + s * bstep + half, ldb);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, c, ldc);
    _tile_stored(1, c + 16, ldc);
    _tile_stored(2, reinterpret_cast<char*>(c) + 16 * ldc, ldc);
    _tile_stored(3, reinterpret_cast<char*>(c) + 16 * ldc + 64, ldc);
}
#endif

#if defined(LEDVIZ_DPBF16)
// What amx_corner computes (the same operands in the same layouts), with AVX-512 BF16's vector dot products
// (vdpbf16ps: 16 float32 sums of bfloat16 pairs), for CPUs that have those but no matrix unit (AMD's Zen 4
// and later, Intel's Cooper Lake): eight rows of the corner at a time, their 32 columns in 16 registers,
// each row's bfloat16 pair broadcast against a row of pairs of the right operand.
inline void dp_corner(float* c, int64_t ldc, const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb,
                      int64_t bstep, int64_t half, int64_t k0, int64_t k1) {
    for (int64_t m0 = 0; m0 < 32; m0 += 8) {
        __m512 acc0[8], acc1[8];
        for (int i = 0; i < 8; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
        for (int64_t s = k0; s < k1; ++s) {
            const char* bs = reinterpret_cast<const char*>(b + s * bstep);
            const char* as = reinterpret_cast<const char*>(a + 32 * s) + m0 * lda;
            for (int p = 0; p < 16; ++p) {
                const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bs + p * ldb);
                const __m512bh b1 = (__m512bh)_mm512_loadu_si512(bs + p * ldb + 2 * half);
#pragma GCC unroll 8
                for (int i = 0; i < 8; ++i) {
                    int32_t pair;
                    std::memcpy(&pair, as + i * lda + 4 * p, 4);
                    const __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
                    acc0[i] = _mm512_dpbf16_ps(acc0[i], av, b0);
                    acc1[i] = _mm512_dpbf16_ps(acc1[i], av, b1);
                }
            }
        }
        for (int i = 0; i < 8; ++i) {
            float* row = reinterpret_cast<float*>(reinterpret_cast<char*>(c) + (m0 + i) * ldc);
            _mm512_storeu_ps(row, acc0[i]);
            _mm512_storeu_ps(row + 16, acc1[i]);
        }
    }
}
#endif

#if defined(LEDVIZ_PACKED)
// the products' units of ledviz_band_attention_bf16 (its `unit` argument; 0: MKL's product through `gemm`)
constexpr int UNIT_AMX = 1, UNIT_DPBF16 = 2;

// a 32 x 32 corner (see amx_corner) on the unit chosen
inline void packed_corner(int unit, float* c, int64_t ldc, const uint16_t* a, int64_t lda, const uint16_t* b,
                          int64_t ldb, int64_t bstep, int64_t half, int64_t k0, int64_t k1) {
#if defined(LEDVIZ_AMX)
    if (unit == UNIT_AMX) return amx_corner(c, ldc, a, lda, b, ldb, bstep, half, k0, k1);
#endif
#if defined(LEDVIZ_DPBF16)
    if (unit == UNIT_DPBF16) return dp_corner(c, ldc, a, lda, b, ldb, bstep, half, k0, k1);
#endif
}
#endif

// MKL's cblas_gemm_bf16bf16f32 (row major): C (m, n) f32 = alpha A (m, k) bf16 x B (k, n) bf16 + beta C
typedef void (*gemm_bf16_fn)(int layout, int transa, int transb, int m, int n, int k, float alpha,
                             const uint16_t* a, int lda, const uint16_t* b, int ldb, float beta, float* c, int ldc);
constexpr int ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112;

// MKL's Fortran sgemm_ (column major, every argument by address), as PyTorch's library exports it
typedef void (*sgemm_fn)(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                         const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                         const float* beta, float* c, const int* ldc);

// row major C (m, n) = A (m, k) x op(B) + beta C through sgemm_: op(B) = B (k, n), or with trans_b B (n, k)
// transposed; rows lda, ldb, ldc apart (a row-major C = A op(B) is the column-major C^T = op(B)^T A^T)
inline void sgemm_rows(sgemm_fn f, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                       const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
    const char ta = 'N', tb = trans_b ? 'T' : 'N';
    const float one = 1.0f;
    const int mi = int(m), ni = int(n), ki = int(k), la = int(lda), lb = int(ldb), lc = int(ldc);
    f(&tb, &ta, &ni, &mi, &ki, &one, b, &lb, a, &la, &beta, c, &lc);
}

}  // namespace

extern "C" {

// the interface version ledviz/fused.py checks after loading
int ledviz_band_version() { return 9; }

// Whether ledviz_band_attention_bf16 can run its products on the matrix unit (AMX) or with AVX-512 BF16's dot
// products (the same packed layouts) for these shapes:
// head size a multiple of 32, query blocks of a multiple of 32 rows, w a multiple of 16.
int ledviz_amx_shape(int64_t hd, int64_t c, int64_t w) { return hd % 32 == 0 && c % 32 == 0 && w % 16 == 0; }

// 1 where this build has the AMX path and the system lets this process use the matrix unit, else 0.
int ledviz_amx_ready() {
#if defined(LEDVIZ_AMX)
    // ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA: granted once per process (PyTorch's oneDNN asks too)
    static const int ready = syscall(SYS_arch_prctl, 0x1023, 18) == 0 ? 1 : 0;
    return ready;
#else
    return 0;
#endif
}

// 1 where this build has AVX-512 BF16's dot products (ledviz_band_attention_bf16's unit 2), else 0.
int ledviz_dpbf16_ready() {
#if defined(LEDVIZ_DPBF16)
    return 1;
#else
    return 0;
#endif
}

// returns 0, or 1 for an unknown scores dtype, 2 for an unknown dest dtype
int ledviz_band_softmax(void* scores, int scores_dtype, int64_t n, int64_t stride, int64_t x, int64_t xp,
                        int64_t c, int64_t w, const float* key_bias, const float* global_bias,
                        const uint8_t* row_zero, float weight, void* dest, int dest_dtype, int64_t dest_rows,
                        int64_t dest_stride, float* stats, const float* global_pos, int64_t row0) {
    if (scores_dtype == F32) {
        float* s = static_cast<float*>(scores);
        return dispatch_dest(s, F32, stride, s, F32, stride, n, x, xp, c, w, key_bias, global_bias, row_zero, weight,
                             dest, dest_dtype, dest_rows, dest_stride, stats, global_pos, row0);
    }
    if (scores_dtype == BF16 || scores_dtype == F16) {
        uint16_t* s = static_cast<uint16_t*>(scores);
        return dispatch_dest(s, Dtype(scores_dtype), stride, s, Dtype(scores_dtype), stride, n, x, xp, c, w, key_bias,
                             global_bias, row_zero, weight, dest, dest_dtype, dest_rows, dest_stride, stats,
                             global_pos, row0);
    }
    return 1;
}

// One head of a chunk of query blocks in bfloat16, products included, through `gemm` (MKL's
// cblas_gemm_bf16bf16f32: bfloat16 operands, float32 results), or where `gemm` is null on `unit`: 1 the CPU's
// matrix unit (AMX), 2 AVX-512 BF16's dot products (the caller checked ledviz_amx_ready or
// ledviz_dpbf16_ready, and ledviz_amx_shape; returns 3 otherwise), the keys and values packed once per call,
// and only the 32-key slices that reach a row's window multiplied. Block by block, in buffers that
// stay in cache: the scores in float32 (q against the x global keys and the block's key span),
// the probabilities (ledviz_band_softmax's rows, rounded once to bfloat16), then the output rows
// = probabilities x (global values, value span), written in bfloat16 to `out`.
// q: (blocks * c, hd) rows of stride ldq; k, v: the keys / values between their margins, rows of
// stride ldk (block jj's span starts at row jj * c); kg, vg: (x, hd) rows of stride ldg; out:
// out_rows rows of stride ld_out. round_scores: read the scores rounded to bfloat16, as PyTorch's bfloat16
// product returns them (the same probabilities as ledviz_band_softmax after torch.mm), else in float32
// (more accurate). Returns 0, 2 for an unknown dest dtype, or 3 (null gemm) where the matrix unit cannot run.
int ledviz_band_attention_bf16(void* gemm_ptr, const uint16_t* q, int64_t ldq, const uint16_t* k, const uint16_t* v,
                               int64_t ldk, const uint16_t* kg, const uint16_t* vg, int64_t ldg, int64_t blocks,
                               int64_t hd, int64_t x, int64_t c, int64_t w, const float* key_bias,
                               const float* global_bias, const uint8_t* row_zero, float weight, void* dest,
                               int dest_dtype, int64_t dest_rows, int64_t dest_stride, float* stats,
                               const float* global_pos, int64_t row0, uint16_t* out, int64_t out_rows,
                               int64_t ld_out, int round_scores, int unit) {
    gemm_bf16_fn gemm = reinterpret_cast<gemm_bf16_fn>(gemm_ptr);
    const int64_t span = c + 2 * w, xp = (x + 15) / 16 * 16, width = xp + span;
    std::vector<float> scores(c * width), head(c * hd);
    std::vector<uint16_t> probs(c * width);
#if defined(LEDVIZ_PACKED)
    // gemm null: the packed products on `unit` (the caller checked ledviz_amx_shape and the unit's readiness)
    const int64_t keys = (blocks - 1) * c + span;
    std::vector<uint16_t> kpack, vpack;
    std::vector<float> kglob;  // the global keys in float32, (x, hd)
    if (gemm == nullptr) {
        if (!ledviz_amx_shape(hd, c, w)) return 3;
        if (!(unit == UNIT_AMX && ledviz_amx_ready()) && !(unit == UNIT_DPBF16 && ledviz_dpbf16_ready())) return 3;
        // keys as (hd / 2) rows of (key, pair) and values as (keys / 2) rows of (column, pair)
        kpack.resize(hd * keys);
        vpack.resize(hd * keys);
        uint32_t* kp = reinterpret_cast<uint32_t*>(kpack.data());
        for (int64_t key0 = 0; key0 < keys; key0 += 64) {  // 64 keys at a time: their rows stay in cache
            const int64_t key1 = key0 + 64 < keys ? key0 + 64 : keys;
            for (int64_t pr = 0; pr < hd / 2; ++pr) {
                for (int64_t key = key0; key < key1; ++key) {
                    uint32_t pair;
                    std::memcpy(&pair, k + key * ldk + 2 * pr, 4);
                    kp[pr * keys + key] = pair;
                }
            }
        }
        for (int64_t pr = 0; pr < keys / 2; ++pr) {
            const uint16_t *r0 = v + 2 * pr * ldk, *r1 = r0 + ldk;
            uint16_t* o = vpack.data() + pr * 2 * hd;
            for (int64_t col = 0; col < hd; ++col) {
                o[2 * col] = r0[col];
                o[2 * col + 1] = r1[col];
            }
        }
        kglob.resize(x * hd);
        for (int64_t g = 0; g < x; ++g)
            for (int64_t d = 0; d < hd; ++d) {
                const uint32_t u = uint32_t(kg[g * ldg + d]) << 16;
                std::memcpy(kglob.data() + g * hd + d, &u, 4);
            }
#if defined(LEDVIZ_AMX)
        if (unit == UNIT_AMX) amx_configure();
#endif
    }
#else
    if (gemm == nullptr) return 3;
#endif
    for (int64_t jj = 0; jj < blocks; ++jj) {
        const uint16_t* qb = q + jj * c * ldq;
        if (gemm != nullptr) {
            if (x) gemm(ROW_MAJOR, NO_TRANS, TRANS, int(c), int(x), int(hd), 1.0f, qb, int(ldq), kg, int(ldg), 0.0f,
                        scores.data(), int(width));
            gemm(ROW_MAJOR, NO_TRANS, TRANS, int(c), int(span), int(hd), 1.0f, qb, int(ldq), k + jj * c * ldk,
                 int(ldk), 0.0f, scores.data() + xp, int(width));
        }
#if defined(LEDVIZ_PACKED)
        else {
            // 32 rows at a time against the 32-key slices of the span that reach their windows (the rest of
            // the row is never read: the softmax reads each row's 2w + 1 slots)
            for (int64_t r = 0; r < c; r += 32) {
                const int64_t last = (r + 31 + 2 * w) / 32 + 1;  // 32-key slices [r / 32, last)
                for (int64_t ks = r / 32; ks < (last < span / 32 ? last : span / 32); ++ks)
                    packed_corner(unit, scores.data() + r * width + xp + 32 * ks, width * 4, qb + r * ldq, ldq * 2,
                               kpack.data() + (jj * c + 32 * ks) * 2, keys * 4, 16 * keys * 2, 32, 0, hd / 32);
            }
            // the x global columns: dot products in float32, 16 lanes at a time (hd is a multiple of 32 here),
            // the global keys converted once per call (kglob)
            for (int64_t i = 0; i < c; ++i) {
                const uint16_t* qi = qb + i * ldq;
                for (int64_t g = 0; g < x; ++g) {
                    f16x acc = splat(0.0f);
                    for (int64_t d = 0; d < hd; d += LANES) acc += bf16_load16(qi + d) * load16(kglob.data() + g * hd + d);
                    float sum = 0.0f;
                    for (int l = 0; l < LANES; ++l) sum += acc[l];
                    scores[i * width + g] = sum;
                }
            }
        }
#endif
        const int64_t r = jj * c;  // the block's first row in the chunk
        const int rc = block_probabilities(scores.data(), round_scores ? F32_AS_BF16 : F32, probs.data(), BF16, width,
                                           r, x, xp, c, w, key_bias, global_bias, row_zero, weight, dest, dest_dtype,
                                           dest_rows, dest_stride, stats, global_pos, row0);
        if (rc) return rc;
        if (gemm != nullptr) {
            gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, int(c), int(hd), int(span), 1.0f, probs.data() + xp, int(width),
                 v + jj * c * ldk, int(ldk), 0.0f, head.data(), int(hd));
            if (x) gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, int(c), int(hd), int(x), 1.0f, probs.data(), int(width), vg,
                        int(ldg), 1.0f, head.data(), int(hd));
        }
#if defined(LEDVIZ_PACKED)
        else {
            // the probabilities are 0 outside each row's window: 32 rows need the 32-key slices that reach it
            for (int64_t r = 0; r < c; r += 32) {
                const int64_t last = (r + 31 + 2 * w) / 32 + 1;
                for (int64_t col = 0; col < hd; col += 32)
                    packed_corner(unit, head.data() + r * hd + col, hd * 4, probs.data() + r * width + xp, width * 2,
                               vpack.data() + (jj * c / 2) * 2 * hd + 2 * col, hd * 4, 16 * 2 * hd, 32, r / 32,
                               last < span / 32 ? last : span / 32);
            }
            for (int64_t i = 0; i < c; ++i) {  // plus the x global columns times their values
                for (int64_t g = 0; g < x; ++g) {
                    uint32_t pb = uint32_t(probs[i * width + g]) << 16;
                    float pg;
                    std::memcpy(&pg, &pb, 4);
                    if (pg == 0.0f) continue;
                    for (int64_t d = 0; d < hd; ++d) {
                        uint32_t b = uint32_t(vg[g * ldg + d]) << 16;
                        float fb;
                        std::memcpy(&fb, &b, 4);
                        head[i * hd + d] += pg * fb;
                    }
                }
            }
        }
#endif
        const int64_t rows_out = out_rows > r ? (out_rows - r < c ? out_rows - r : c) : 0;
        for (int64_t i = 0; i < rows_out; ++i) put(out + (r + i) * ld_out, BF16, head.data() + i * hd, 1.0f, hd);
    }
#if defined(LEDVIZ_AMX)
    if (gemm == nullptr && unit == UNIT_AMX) _tile_release();
#endif
    return 0;
}

// One head of a chunk of query blocks in float32, products included, through `sgemm` (MKL's sgemm_), block by
// block in buffers that stay in cache: the scores (q against the x global keys and the block's key span), the
// probabilities in place (ledviz_band_softmax's rows: the kept copy and the statistics as it writes them), then
// the output rows = probabilities x (global values, value span), written straight into `out` (a partial last
// block through a buffer). The arguments are ledviz_band_attention_bf16's in float32 (round_scores unused).
// Returns 0, or 2 for an unknown dest dtype.
int ledviz_band_attention_f32(void* sgemm_ptr, const float* q, int64_t ldq, const float* k, const float* v,
                              int64_t ldk, const float* kg, const float* vg, int64_t ldg, int64_t blocks, int64_t hd,
                              int64_t x, int64_t c, int64_t w, const float* key_bias, const float* global_bias,
                              const uint8_t* row_zero, float weight, void* dest, int dest_dtype, int64_t dest_rows,
                              int64_t dest_stride, float* stats, const float* global_pos, int64_t row0, float* out,
                              int64_t out_rows, int64_t ld_out, int /* round_scores */) {
    const sgemm_fn f = reinterpret_cast<sgemm_fn>(sgemm_ptr);
    const int64_t span = c + 2 * w, xp = (x + 15) / 16 * 16, width = xp + span;
    std::vector<float> scores(c * width), head(c * hd);
    for (int64_t jj = 0; jj < blocks; ++jj) {
        const float* qb = q + jj * c * ldq;
        if (x) sgemm_rows(f, true, c, x, hd, qb, ldq, kg, ldg, 0.0f, scores.data(), width);
        sgemm_rows(f, true, c, span, hd, qb, ldq, k + jj * c * ldk, ldk, 0.0f, scores.data() + xp, width);
        const int64_t r = jj * c;  // the block's first row in the chunk
        const int rc = block_probabilities(scores.data(), F32, scores.data(), F32, width, r, x, xp, c, w, key_bias,
                                           global_bias, row_zero, weight, dest, dest_dtype, dest_rows, dest_stride,
                                           stats, global_pos, row0);
        if (rc) return rc;
        const int64_t rows_out = out_rows > r ? (out_rows - r < c ? out_rows - r : c) : 0;
        float* o = rows_out == c ? out + r * ld_out : head.data();
        const int64_t ldo = rows_out == c ? ld_out : hd;
        sgemm_rows(f, false, c, hd, span, scores.data() + xp, width, v + jj * c * ldk, ldk, 0.0f, o, ldo);
        if (x) sgemm_rows(f, false, c, hd, x, scores.data(), width, vg, ldg, 1.0f, o, ldo);
        if (o == head.data())
            for (int64_t i = 0; i < rows_out; ++i) std::memcpy(out + (r + i) * ld_out, o + i * hd, sizeof(float) * hd);
    }
    return 0;
}

// The residual stream's sum and layer norm, row by row: out = LayerNorm(in + add + add_bias) with
// weight/bias (float32), eps; `add` (rows, d) in add_dtype (F32, BF16 or F16; may be null), add_bias
// (d) may be null; out may be in. With `narrow`, the result is also written there in bfloat16
// (what the next product reads). All rows contiguous (d apart). Returns 0, or 1 for an unknown dtype.
int ledviz_residual_layer_norm(const float* in, float* out, int64_t rows, int64_t d, const void* add, int add_dtype,
                               const float* add_bias, const float* weight, const float* bias, float eps,
                               uint16_t* narrow) {
    if (add != nullptr && add_dtype != F32 && add_dtype != BF16 && add_dtype != F16) return 1;
    std::vector<float> zeros(add_bias == nullptr ? d : 0, 0.0f);
    const float* ab = add_bias != nullptr ? add_bias : zeros.data();
    std::vector<float> row(d);
    for (int64_t i = 0; i < rows; ++i) {
        float* x = row.data();
        const float* src = in + i * d;
        if (add == nullptr) {
#pragma omp simd
            for (int64_t k = 0; k < d; ++k) x[k] = src[k] + ab[k];
        } else if (add_dtype == F32) {
            const float* a = static_cast<const float*>(add) + i * d;
#pragma omp simd
            for (int64_t k = 0; k < d; ++k) x[k] = src[k] + a[k] + ab[k];
        } else {
            gather(static_cast<const uint16_t*>(add) + i * d, Dtype(add_dtype), ab, d, x);
#pragma omp simd
            for (int64_t k = 0; k < d; ++k) x[k] += src[k];
        }
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t k = 0; k < d; ++k) sum += x[k];
        const float mean = sum / float(d);
        float var = 0.0f;
#pragma omp simd reduction(+ : var)
        for (int64_t k = 0; k < d; ++k) var += (x[k] - mean) * (x[k] - mean);
        const float rstd = 1.0f / std::sqrt(var / float(d) + eps);
        float* o = out + i * d;
#pragma omp simd
        for (int64_t k = 0; k < d; ++k) o[k] = (x[k] - mean) * rstd * weight[k] + bias[k];
        if (narrow != nullptr) put(narrow + i * d, BF16, o, 1.0f, d);
    }
    return 0;
}

// out[b, r, :C] += the sum over `heads` of src[b, h, r, :C] (src in src_dtype: F32, BF16 or F16), in
// one streaming pass: each stretch of a row's sums stays in registers while every head is added.
// Rows have unit stride; the other strides are in elements. Returns 0, or 1 for an unknown dtype.
int ledviz_head_sum(float* out, int64_t out_sb, int64_t out_sr, const void* src, int src_dtype, int64_t src_sb,
                    int64_t src_sh, int64_t src_sr, int64_t batch, const int64_t* heads, int64_t n_heads,
                    int64_t rows, int64_t cols) {
    if (src_dtype != F32 && src_dtype != BF16 && src_dtype != F16) return 1;
    // a row at a time, a stretch of its columns in registers while every head is added in turn (the
    // same order of additions as adding whole heads one after another, so the same sums)
    std::vector<float> tmp(cols + LANES);
    for (int64_t b = 0; b < batch; ++b) {
        for (int64_t r = 0; r < rows; ++r) {
            float* __restrict o = out + b * out_sb + r * out_sr;
            const int64_t at = b * src_sb + r * src_sr;
            int64_t c0 = 0;
#if defined(__AVX512F__)
            constexpr int64_t CH = 8 * 16;  // 8 registers of 16 sums
            constexpr int64_t AHEAD = 2;  // rows: the same stretch of each head this far on is prefetched
                                          // (12 heads of 16,384 x 1,025 float16: 12 -> 15.7 GB/s here)
            __m512 acc[8];
            if (src_dtype != F32) {
                const uint16_t* base = static_cast<const uint16_t*>(src) + at;
                const bool bf = src_dtype == BF16;
                for (; c0 + CH <= cols; c0 += CH) {
                    for (int j = 0; j < 8; ++j) acc[j] = _mm512_loadu_ps(o + c0 + 16 * j);
                    for (int64_t hk = 0; hk < n_heads; ++hk) {
                        const uint16_t* in = base + heads[hk] * src_sh + c0;
                        if (r + AHEAD < rows)  // asked for early: the CPU's own prefetch stops at each 4 KB page
                            for (int j = 0; j < 4; ++j)
                                _mm_prefetch(reinterpret_cast<const char*>(in + AHEAD * src_sr + 32 * j), _MM_HINT_T0);
                        for (int j = 0; j < 8; ++j) {
                            const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + 16 * j));
                            const __m512 v = bf ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16))
                                                : _mm512_cvtph_ps(raw);
                            acc[j] = _mm512_add_ps(acc[j], v);
                        }
                    }
                    for (int j = 0; j < 8; ++j) _mm512_storeu_ps(o + c0 + 16 * j, acc[j]);
                }
            } else {
                const float* base = static_cast<const float*>(src) + at;
                for (; c0 + CH <= cols; c0 += CH) {
                    for (int j = 0; j < 8; ++j) acc[j] = _mm512_loadu_ps(o + c0 + 16 * j);
                    for (int64_t hk = 0; hk < n_heads; ++hk) {
                        const float* in = base + heads[hk] * src_sh + c0;
                        for (int j = 0; j < 8; ++j) acc[j] = _mm512_add_ps(acc[j], _mm512_loadu_ps(in + 16 * j));
                    }
                    for (int j = 0; j < 8; ++j) _mm512_storeu_ps(o + c0 + 16 * j, acc[j]);
                }
            }
#endif
            const int64_t rest = cols - c0;
            if (rest == 0) continue;
            for (int64_t hk = 0; hk < n_heads; ++hk) {
                const int64_t h_at = at + heads[hk] * src_sh + c0;
                if (src_dtype == F32) {
                    const float* __restrict in = static_cast<const float*>(src) + h_at;
#pragma omp simd
                    for (int64_t c = 0; c < rest; ++c) o[c0 + c] += in[c];
                } else {
                    gather(static_cast<const uint16_t*>(src) + h_at, Dtype(src_dtype), o + c0, rest, tmp.data());
                    std::memcpy(o + c0, tmp.data(), sizeof(float) * rest);
                }
            }
        }
    }
    return 0;
}

// GELU in its erf form (gelu1) of (rows, cols) contiguous bfloat16 values plus a float32 bias of cols
// (the feed-forward's first product, made without its bias), in place: each sum in float32, rounded once
// to nearest even. Returns 0.
int ledviz_bias_gelu_bf16(uint16_t* data, int64_t rows, int64_t cols, const float* bias) {
    for (int64_t i = 0; i < rows; ++i) {
        uint16_t* row = data + i * cols;
        int64_t k = 0;
#if defined(__AVX512BF16__)
        const __m512 half_sqrt2 = _mm512_set1_ps(0.70710678118654752f), lim = _mm512_set1_ps(4.0f),
                     nlim = _mm512_set1_ps(-4.0f), one = _mm512_set1_ps(1.0f), none = _mm512_set1_ps(-1.0f),
                     half = _mm512_set1_ps(0.5f), two = _mm512_set1_ps(2.0f);
        for (; k + 16 <= cols; k += 16) {
            const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + k));
            const __m512 x = _mm512_add_ps(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16)),
                                           _mm512_loadu_ps(bias + k));
            const __m512 z = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(x, half_sqrt2), nlim), lim);
            const __m512 s = _mm512_mul_ps(z, z);
            __m512 p = _mm512_set1_ps(ERF_P[5]), q = _mm512_set1_ps(ERF_Q[5]);
            for (int j = 4; j >= 0; --j) {
                p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(ERF_P[j]));
                q = _mm512_fmadd_ps(q, s, _mm512_set1_ps(ERF_Q[j]));
            }
            // 1 / q (q in [1, 26]) from the CPU's 14-bit estimate and one Newton step: about 2e-8 relative
            __m512 r = _mm512_rcp14_ps(q);
            r = _mm512_mul_ps(r, _mm512_fnmadd_ps(q, r, two));
            const __m512 e = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_mul_ps(z, p), r), none), one);
            // x (1 + e) / 2; a NaN x stays NaN (z, and so e, is clamped to a number by min / max)
            const __m256bh h = _mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_mul_ps(x, half), _mm512_add_ps(e, one)));
            __m256i bits;
            std::memcpy(&bits, &h, sizeof bits);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(row + k), bits);
        }
#endif
        for (; k < cols; ++k) {
            uint32_t u = uint32_t(row[k]) << 16;
            float x;
            std::memcpy(&x, &u, 4);
            row[k] = to_bf16(gelu1(x + bias[k]));
        }
    }
    return 0;
}

}  // extern "C"
