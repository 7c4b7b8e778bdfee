// Hot loops of the gallery, chosen once at load time from what the CPU offers: AVX-512 (with
// VPOPCNTDQ for the code scan) where present, the x86-64-v3 baseline the module is built for otherwise.
// Runtime dispatch keeps one wheel correct on every machine while the fast path runs where it can.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace retailface::kernels {

// A code is 256 bits (4 words), stored as two halves of 128 bits in two arrays, so that a scan can read the
// first halves alone and fetch a second half only where the first was near. The first halves of 8 slots are
// stored word-major ("blocked"): word w of lane j of block b lives at first[b * kHalfBlockWords + w * kLanes +
// j], so one 512-bit load reads the same word of 8 slots. The second halves are stored slot-major: word w of
// slot s at second[s * kHalfWords + w], so that fetching one slot's second half is one cache line (4 slots
// share a line); a streaming pass reads a block's 8 as two 512-bit loads.
constexpr size_t kCodeBits = 256;
constexpr size_t kCodeWords = kCodeBits / 64;
constexpr size_t kHalfWords = kCodeWords / 2;
constexpr size_t kLanes = 8;
constexpr size_t kHalfBlockWords = kHalfWords * kLanes;

// <a, b> for float vectors of length dim.
float dot(const float* a, const float* b, size_t dim);
// <a, row> for a float vector and an int8 row of length dim (the gallery's stored form; times its scale).
float dot_i8(const float* a, const int8_t* row, size_t dim);

// Hamming distances over one half: the query's half (kHalfWords words) against every slot of blocks
// [0, block_count) of the first halves (hamming_first) or the second halves (hamming_second), written to out
// (block_count * kLanes values).
void hamming_first(const uint64_t* first, const uint64_t* query_half, size_t block_count, uint16_t* out);
void hamming_second(const uint64_t* second, const uint64_t* query_half, size_t block_count, uint16_t* out);
// One slot's second-half distance.
inline uint32_t second_distance(const uint64_t* second, size_t slot, const uint64_t* query_half) {
  uint32_t distance = 0;
  for (size_t word = 0; word < kHalfWords; ++word)
    distance += static_cast<uint32_t>(__builtin_popcountll(second[slot * kHalfWords + word] ^ query_half[word]));
  return distance;
}

// Up to kMaxQueries queries share one pass over the codes: memory, not arithmetic, bounds a scan of
// a large gallery, so a batch reads each code once for several queries.
constexpr size_t kMaxQueries = 8;
using Candidates = std::vector<std::pair<uint16_t, uint32_t>>;  // (distance, slot)

// For each query q < query_count (its whole code at queries + q * kCodeWords), appends to out[q] every slot
// of blocks [block_begin, block_end) whose first-half distance is within first_limits[q] and whole distance
// within limits[q]. A block's second halves are read only when some lane passed the first.
void hamming_within(const uint64_t* first, const uint64_t* second, size_t block_begin, size_t block_end,
                    const uint64_t* queries, size_t query_count, const uint32_t* first_limits, const uint32_t* limits,
                    Candidates* out);

// Quantized rows: for each of `count` int8 rows of length dim (row r at rows + r * dim), the exact
// integer dot product with the int8 query, written to out[r]. A store's filtered scan reads these
// instead of float rows: a quarter of the memory, and a bound on the rounding makes the result exact.
void dots_i8(const int8_t* rows, size_t count, size_t dim, const int8_t* query, int32_t* out);

// Name of the code path in use ("avx512" or "x86-64-v3"), reported in the gallery's stats.
const char* isa();

}  // namespace retailface::kernels
