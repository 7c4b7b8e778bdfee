// The int8 scan: the exact plan for filters (kFilteredScan). The allowed templates' int8 copies, packed
// with the cached filter, are scanned with a bound on the rounding, and every template the bound cannot
// rule out is re-scored in float, so the result is the exact one at a quarter of the memory traffic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "retailface/slots.hpp"
#include "retailface/top_subjects.hpp"

namespace retailface {

// Row i describes slots[i] of a filter: int8 copy of the vector (scale * row approximates it), the norm of
// what the rounding lost and of the vector, and the subject, packed so that a scan reads one contiguous
// block instead of a cache line per template.
struct QuantizedRows {
  std::vector<int8_t> quantized;
  std::vector<float> scales, errors, norms;
  std::vector<int64_t> slot_subjects;

  void build(const Slots& store, const std::vector<uint32_t>& slots, size_t dim);
  size_t bytes() const;  // of the rows, not of the struct
};

// Offers to `best` every template of `slots` (rows: their QuantizedRows) that may be among its best, scored in float.
void int8_scan(const Slots& store, const std::vector<uint32_t>& slots, const QuantizedRows& rows, size_t dim,
               const float* query, TopSubjects& best);

}  // namespace retailface
