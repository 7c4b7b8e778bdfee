#include "retailface/kernels.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <string>

namespace retailface::kernels {

namespace {

// --- baseline (x86-64-v3: AVX2 + FMA, scalar popcnt) -------------------------------------------

float dot_baseline(const float* a, const float* b, size_t dim) {
  size_t i = 0;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (; i + 16 <= dim; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  __m256 acc = _mm256_add_ps(acc0, acc1);
  __m128 sum = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  sum = _mm_hadd_ps(sum, sum);
  sum = _mm_hadd_ps(sum, sum);
  float result = _mm_cvtss_f32(sum);
  for (; i < dim; ++i) result += a[i] * b[i];
  return result;
}

float dot_i8_baseline(const float* a, const int8_t* row, size_t dim) {
  size_t i = 0;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (; i + 16 <= dim; i += 16) {
    __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + i));
    __m256 low = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes));
    __m256 high = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(bytes, 8)));
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), low, acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), high, acc1);
  }
  __m256 acc = _mm256_add_ps(acc0, acc1);
  __m128 sum = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  sum = _mm_hadd_ps(sum, sum);
  sum = _mm_hadd_ps(sum, sum);
  float result = _mm_cvtss_f32(sum);
  for (; i < dim; ++i) result += a[i] * static_cast<float>(row[i]);
  return result;
}

inline uint32_t lane_distance(const uint64_t* block, const uint64_t* query, size_t lane) {
  uint32_t distance = 0;
  for (size_t word = 0; word < kHalfWords; ++word)
    distance += static_cast<uint32_t>(__builtin_popcountll(block[word * kLanes + lane] ^ query[word]));
  return distance;
}

void hamming_first_baseline(const uint64_t* first, const uint64_t* query, size_t block_count, uint16_t* out) {
  for (size_t block = 0; block < block_count; ++block)
    for (size_t lane = 0; lane < kLanes; ++lane)
      out[block * kLanes + lane] = static_cast<uint16_t>(lane_distance(first + block * kHalfBlockWords, query, lane));
}

void hamming_second_baseline(const uint64_t* second, const uint64_t* query, size_t block_count, uint16_t* out) {
  for (size_t slot = 0; slot < block_count * kLanes; ++slot) out[slot] = static_cast<uint16_t>(second_distance(second, slot, query));
}

void hamming_within_baseline(const uint64_t* first, const uint64_t* second, size_t block_begin, size_t block_end,
                             const uint64_t* queries, size_t query_count, const uint32_t* first_limits,
                             const uint32_t* limits, Candidates* out) {
  for (size_t block = block_begin; block < block_end; ++block) {
    for (size_t q = 0; q < query_count; ++q) {
      const uint64_t* query = queries + q * kCodeWords;
      for (size_t lane = 0; lane < kLanes; ++lane) {
        uint32_t near = lane_distance(first + block * kHalfBlockWords, query, lane);
        if (near > first_limits[q]) continue;
        uint32_t distance = second == nullptr ? near : near + second_distance(second, block * kLanes + lane, query + kHalfWords);
        if (distance <= limits[q]) out[q].emplace_back(static_cast<uint16_t>(distance), static_cast<uint32_t>(block * kLanes + lane));
      }
    }
  }
}

void dots_i8_baseline(const int8_t* rows, size_t count, size_t dim, const int8_t* query, int32_t* out) {
  size_t vector_dim = dim / 16 * 16;
  for (size_t r = 0; r < count; ++r) {
    const int8_t* row = rows + r * dim;
    __m256i acc = _mm256_setzero_si256();
    for (size_t i = 0; i < vector_dim; i += 16) {
      __m256i a = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + i)));
      __m256i b = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(query + i)));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
    }
    __m128i sum = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    sum = _mm_hadd_epi32(sum, sum);
    sum = _mm_hadd_epi32(sum, sum);
    int32_t result = _mm_cvtsi128_si32(sum);
    for (size_t i = vector_dim; i < dim; ++i) result += int32_t{row[i]} * int32_t{query[i]};
    out[r] = result;
  }
}

// --- AVX-512 (F + BW + VL + VPOPCNTDQ) ---------------------------------------------------------

#define RF_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vpopcntdq")))

RF_AVX512 float dot_avx512(const float* a, const float* b, size_t dim) {
  size_t i = 0;
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  for (; i + 32 <= dim; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
  }
  for (; i + 16 <= dim; i += 16) acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
  float result = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  for (; i < dim; ++i) result += a[i] * b[i];
  return result;
}

RF_AVX512 float dot_i8_avx512(const float* a, const int8_t* row, size_t dim) {
  size_t i = 0;
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  for (; i + 32 <= dim; i += 32) {
    __m512 low = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + i))));
    __m512 high = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + i + 16))));
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), low, acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), high, acc1);
  }
  float result = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  for (; i < dim; ++i) result += a[i] * static_cast<float>(row[i]);
  return result;
}

RF_AVX512 inline __m512i half_distances(const uint64_t* half_block, const __m512i* query) {
  __m512i distance = _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(half_block), query[0]));
  for (size_t word = 1; word < kHalfWords; ++word)
    distance = _mm512_add_epi64(distance,
                                _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(half_block + word * kLanes), query[word])));
  return distance;
}

// A block's 8 second halves (slot-major: 2 words each, 128 bytes) against the query's, as one lane per slot: the
// query's half repeated 4 times across a register, popcounts of the two loads, then each slot's two words summed.
static_assert(kHalfWords == 2, "second_distances pairs the two words of a slot's second half");
RF_AVX512 inline __m512i second_distances(const uint64_t* second_block, __m512i query_pairs) {
  const __m512i evens = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), odds = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
  __m512i low = _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(second_block), query_pairs));
  __m512i high = _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(second_block + kLanes), query_pairs));
  return _mm512_add_epi64(_mm512_permutex2var_epi64(low, evens, high), _mm512_permutex2var_epi64(low, odds, high));
}

RF_AVX512 inline __m512i query_pairs(const uint64_t* query_half) {
  auto first = static_cast<long long>(query_half[0]), second = static_cast<long long>(query_half[1]);
  return _mm512_setr_epi64(first, second, first, second, first, second, first, second);
}

RF_AVX512 void hamming_first_avx512(const uint64_t* first, const uint64_t* query, size_t block_count, uint16_t* out) {
  __m512i broadcast[kHalfWords];
  for (size_t word = 0; word < kHalfWords; ++word) broadcast[word] = _mm512_set1_epi64(static_cast<long long>(query[word]));
  for (size_t b = 0; b < block_count; ++b)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + b * kLanes),
                     _mm512_cvtepi64_epi16(half_distances(first + b * kHalfBlockWords, broadcast)));
}

RF_AVX512 void hamming_second_avx512(const uint64_t* second, const uint64_t* query, size_t block_count, uint16_t* out) {
  __m512i pairs = query_pairs(query);
  for (size_t b = 0; b < block_count; ++b)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + b * kLanes),
                     _mm512_cvtepi64_epi16(second_distances(second + b * kHalfBlockWords, pairs)));
}

// Appends the kept lanes of one block (distances in 64-bit lanes) at out[fill], without a loop over the lanes or a
// branch per lane: the kept slots' numbers and distances are compressed into place. `out` has room for 8 more.
RF_AVX512 inline size_t append(Candidates::value_type* out, size_t fill, __mmask8 kept, __m512i distance, size_t block) {
  static_assert(sizeof(Candidates::value_type) == 8, "a candidate is (uint16 distance, uint32 slot) in 8 bytes");
  const __m512i slots = _mm512_add_epi64(_mm512_set1_epi64(static_cast<long long>(block * kLanes)),
                                         _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
  // As std::pair<uint16_t, uint32_t> lays them out: the distance in bytes 0-1, the slot in bytes 4-7.
  const __m512i packed = _mm512_or_si512(distance, _mm512_slli_epi64(slots, 32));
  // Compressed in a register, then one full store (the room is there): a compressing store to memory is microcoded
  // and slow on some CPUs (AMD Zen 4).
  _mm512_storeu_si512(out + fill, _mm512_maskz_compress_epi64(kept, packed));
  return fill + static_cast<size_t>(__builtin_popcount(kept));
}

// Q (the batch's query count) is a compile-time constant so that every query's first half, bound and
// mask stay in registers: a block's two loads serve all Q queries, and one branch per block (not per query)
// skips it when no query has a near lane, the common case. Only then does a query's own work begin.
template <size_t Q>
RF_AVX512 void within_avx512(const uint64_t* first, const uint64_t* second, size_t block_begin, size_t block_end,
                             const uint64_t* queries, const uint32_t* first_limits, const uint32_t* limits,
                             Candidates* out) {
  __m512i head0[Q], head1[Q], tail[Q], first_bound[Q], bound[Q];
  static_assert(kHalfWords == 2, "a first half is two words");
  for (size_t q = 0; q < Q; ++q) {
    head0[q] = _mm512_set1_epi64(static_cast<long long>(queries[q * kCodeWords]));
    head1[q] = _mm512_set1_epi64(static_cast<long long>(queries[q * kCodeWords + 1]));
    tail[q] = query_pairs(queries + q * kCodeWords + kHalfWords);
    first_bound[q] = _mm512_set1_epi64(first_limits[q]);
    bound[q] = _mm512_set1_epi64(limits[q]);
  }
  // Candidates are written in place at fill[q], with room for a whole block's kept lanes always left; the vectors
  // take their final size at the end.
  size_t fill[Q], room[Q];
  Candidates::value_type* data[Q];
  for (size_t q = 0; q < Q; ++q) {
    fill[q] = out[q].size();
    out[q].resize(std::max(out[q].capacity(), fill[q] + 4096));
    data[q] = out[q].data();
    room[q] = out[q].size() - kLanes;
  }
  // Prefetch well ahead (a DRAM stream needs several kilobytes in flight per core); the second halves too when
  // every block reads them.
  constexpr size_t kAhead = 32;
  const bool both = second != nullptr && first_limits[0] >= kCodeBits / 2;
  for (size_t b = block_begin; b < block_end; ++b) {
    if (b + kAhead < block_end) {
      const char* ahead = reinterpret_cast<const char*>(first + (b + kAhead) * kHalfBlockWords);
      _mm_prefetch(ahead, _MM_HINT_T0);
      _mm_prefetch(ahead + 64, _MM_HINT_T0);
      if (both) {
        const char* other = reinterpret_cast<const char*>(second + (b + kAhead) * kHalfBlockWords);
        _mm_prefetch(other, _MM_HINT_T0);
        _mm_prefetch(other + 64, _MM_HINT_T0);
      }
    }
    const uint64_t* first_block = first + b * kHalfBlockWords;
    const __m512i word0 = _mm512_loadu_si512(first_block), word1 = _mm512_loadu_si512(first_block + kLanes);
    __m512i near[Q];
    __mmask8 lanes[Q];
    unsigned any = 0;
    for (size_t q = 0; q < Q; ++q) {
      near[q] = _mm512_add_epi64(_mm512_popcnt_epi64(_mm512_xor_si512(word0, head0[q])),
                                 _mm512_popcnt_epi64(_mm512_xor_si512(word1, head1[q])));
      lanes[q] = _mm512_cmple_epu64_mask(near[q], first_bound[q]);
      any |= lanes[q];
    }
    if (any == 0) continue;  // the common case: no slot of this block is near in its first half for any query
    for (size_t q = 0; q < Q; ++q) {
      // No branch on this query's own mask when it has no second half to read: whether it kept a lane is close
      // to a coin toss here, and appending none costs less than a mispredicted branch.
      __mmask8 kept = lanes[q];
      if (second != nullptr && kept == 0) continue;
      __m512i distance = near[q];
      if (second != nullptr) {  // without the second halves: first-half distances (a first pass)
        distance = _mm512_add_epi64(distance, second_distances(second + b * kHalfBlockWords, tail[q]));
        kept = static_cast<__mmask8>(kept & _mm512_cmple_epu64_mask(distance, bound[q]));
        if (kept == 0) continue;
      }
      if (fill[q] > room[q]) {
        out[q].resize(2 * out[q].size());
        data[q] = out[q].data();
        room[q] = out[q].size() - kLanes;
      }
      fill[q] = append(data[q], fill[q], kept, distance, b);
    }
  }
  for (size_t q = 0; q < Q; ++q) out[q].resize(fill[q]);
}

RF_AVX512 void hamming_within_avx512(const uint64_t* first, const uint64_t* second, size_t block_begin, size_t block_end,
                                     const uint64_t* queries, size_t query_count, const uint32_t* first_limits,
                                     const uint32_t* limits, Candidates* out) {
  static_assert(kMaxQueries == 8, "one instance per batch size");
  switch (query_count) {
    case 1: return within_avx512<1>(first, second, block_begin, block_end, queries, first_limits, limits, out);
    case 2: return within_avx512<2>(first, second, block_begin, block_end, queries, first_limits, limits, out);
    case 3: return within_avx512<3>(first, second, block_begin, block_end, queries, first_limits, limits, out);
    case 4: return within_avx512<4>(first, second, block_begin, block_end, queries, first_limits, limits, out);
    case 5: return within_avx512<5>(first, second, block_begin, block_end, queries, first_limits, limits, out);
    case 6: return within_avx512<6>(first, second, block_begin, block_end, queries, first_limits, limits, out);
    case 7: return within_avx512<7>(first, second, block_begin, block_end, queries, first_limits, limits, out);
    case 8: return within_avx512<8>(first, second, block_begin, block_end, queries, first_limits, limits, out);
    default: return;
  }
}

// The query, widened to int16 once, stays in registers for every row (up to 256 dimensions; wider
// galleries take the baseline).
RF_AVX512 void dots_i8_avx512(const int8_t* rows, size_t count, size_t dim, const int8_t* query, int32_t* out) {
  constexpr size_t kMaxChunks = 8;
  size_t chunks = dim / 32;
  if (chunks > kMaxChunks) return dots_i8_baseline(rows, count, dim, query, out);
  __m512i wide_query[kMaxChunks];
  for (size_t c = 0; c < chunks; ++c)
    wide_query[c] = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(query + c * 32)));
  for (size_t r = 0; r < count; ++r) {
    const int8_t* row = rows + r * dim;
    __m512i acc = _mm512_setzero_si512();
    for (size_t c = 0; c < chunks; ++c) {
      __m512i a = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + c * 32)));
      acc = _mm512_add_epi32(acc, _mm512_madd_epi16(a, wide_query[c]));
    }
    int32_t result = _mm512_reduce_add_epi32(acc);
    for (size_t i = chunks * 32; i < dim; ++i) result += int32_t{row[i]} * int32_t{query[i]};
    out[r] = result;
  }
}

struct Dispatch {
  float (*dot)(const float*, const float*, size_t);
  float (*dot_i8)(const float*, const int8_t*, size_t);
  void (*hamming_first)(const uint64_t*, const uint64_t*, size_t, uint16_t*);
  void (*hamming_second)(const uint64_t*, const uint64_t*, size_t, uint16_t*);
  void (*hamming_within)(const uint64_t*, const uint64_t*, size_t, size_t, const uint64_t*, size_t, const uint32_t*,
                         const uint32_t*, Candidates*);
  void (*dots_i8)(const int8_t*, size_t, size_t, const int8_t*, int32_t*);
  const char* isa;
};

Dispatch choose() {
  __builtin_cpu_init();
  // RETAILFACE_MATCHER_ISA=x86-64-v3 forces the baseline (tests compare both paths on one machine).
  const char* forced = std::getenv("RETAILFACE_MATCHER_ISA");
  bool baseline_only = forced != nullptr && std::string(forced) == "x86-64-v3";
  if (!baseline_only && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vpopcntdq")) {
    return {dot_avx512, dot_i8_avx512, hamming_first_avx512, hamming_second_avx512, hamming_within_avx512, dots_i8_avx512, "avx512"};
  }
  return {dot_baseline, dot_i8_baseline, hamming_first_baseline, hamming_second_baseline, hamming_within_baseline, dots_i8_baseline, "x86-64-v3"};
}

const Dispatch kDispatch = choose();

}  // namespace

float dot(const float* a, const float* b, size_t dim) { return kDispatch.dot(a, b, dim); }
float dot_i8(const float* a, const int8_t* row, size_t dim) { return kDispatch.dot_i8(a, row, dim); }
void hamming_first(const uint64_t* first, const uint64_t* query_half, size_t block_count, uint16_t* out) {
  kDispatch.hamming_first(first, query_half, block_count, out);
}
void hamming_second(const uint64_t* second, const uint64_t* query_half, size_t block_count, uint16_t* out) {
  kDispatch.hamming_second(second, query_half, block_count, out);
}
void hamming_within(const uint64_t* first, const uint64_t* second, size_t block_begin, size_t block_end,
                    const uint64_t* queries, size_t query_count, const uint32_t* first_limits, const uint32_t* limits,
                    Candidates* out) {
  kDispatch.hamming_within(first, second, block_begin, block_end, queries, query_count, first_limits, limits, out);
}
void dots_i8(const int8_t* rows, size_t count, size_t dim, const int8_t* query, int32_t* out) {
  kDispatch.dots_i8(rows, count, dim, query, out);
}
const char* isa() { return kDispatch.isa; }

}  // namespace retailface::kernels
