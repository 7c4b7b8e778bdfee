// The int8 scan: the exact plan for filters (kFilteredScan). The allowed templates' stored rows, packed
// with the cached filter, are scanned with an int8 query and a bound on its rounding, and every template the
// bound cannot rule out is re-scored with the float query, so the result is the exact one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "retailface/slots.hpp"
#include "retailface/top_subjects.hpp"

namespace retailface {

// Row i describes slots[i] of a filter: its stored int8 row and scale, the norm of the template, and the
// subject, packed so that a scan reads one contiguous block instead of a cache line per template.
struct QuantizedRows {
  std::vector<int8_t> quantized;
  std::vector<float> scales, norms;
  std::vector<int64_t> slot_subjects;

  void build(const Slots& store, const std::vector<uint32_t>& slots, size_t dim);
  size_t bytes() const;  // of the rows, not of the struct
};

// Offers to `best` every template of `slots` (rows: their QuantizedRows) that may be among its best, scored in float.
void int8_scan(const Slots& store, const std::vector<uint32_t>& slots, const QuantizedRows& rows, size_t dim,
               const float* query, TopSubjects& best);

}  // namespace retailface
