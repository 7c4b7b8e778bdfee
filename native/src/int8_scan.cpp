#include "retailface/int8_scan.hpp"

#include <algorithm>
#include <cmath>

#include "retailface/kernels.hpp"
#include "retailface/quantize.hpp"

namespace retailface {

void QuantizedRows::build(const Slots& store, const std::vector<uint32_t>& slots, size_t dim) {
  // The stored rows themselves, packed: the scan then reads one contiguous block. They are exact (the stored
  // form is what every plan scores), so only the query's rounding needs a bound.
  size_t count = slots.size();
  quantized.resize(count * dim);
  scales.resize(count);
  norms.resize(count);
  slot_subjects.resize(count);
  for (size_t i = 0; i < count; ++i) {
    uint32_t slot = slots[i];
    const int8_t* row = store.row_of(slot);
    std::copy(row, row + dim, quantized.data() + i * dim);
    scales[i] = store.scale_of(slot);
    double norm = 0;
    for (size_t d = 0; d < dim; ++d) norm += static_cast<double>(row[d]) * row[d];
    norms[i] = scales[i] * static_cast<float>(std::sqrt(norm));
    slot_subjects[i] = store.subject_of(slot);
  }
}

size_t QuantizedRows::bytes() const {
  return quantized.size() + (scales.size() + norms.size()) * sizeof(float) +
         slot_subjects.size() * sizeof(int64_t);
}

void int8_scan(const Slots& store, const std::vector<uint32_t>& slots, const QuantizedRows& rows, size_t dim,
               const float* query, TopSubjects& best) {
  // u.v = q.v + (u - q).v for the rounded query q and the stored template v, so |u.v - q.v| <= |u - q| |v|:
  // q.v comes from the int8 scan, and the bound says which templates could still be among the best. Only
  // those are scored with the float query.
  size_t count = slots.size();
  // Per-thread buffers, bound once: each access to a thread_local costs a TLS lookup.
  thread_local std::vector<int8_t> rounded_buffer;
  thread_local std::vector<int32_t> dot_buffer;
  thread_local std::vector<float> lower_buffer, upper_buffer;
  auto& rounded_query = rounded_buffer;
  auto& dots = dot_buffer;
  auto& lower = lower_buffer;
  auto& upper = upper_buffer;
  rounded_query.resize(dim);
  dots.resize(count);
  lower.resize(count);
  upper.resize(count);
  Rounded q = round_to_int8(query, dim, rounded_query.data());
  kernels::dots_i8(rows.quantized.data(), count, dim, rounded_query.data(), dots.data());
  // Float rounding of the scores themselves (1e-6 at most here) is covered many times over.
  constexpr float kFloatSlack = 1e-4f;
  const float *scales = rows.scales.data(), *norms = rows.norms.data();
  for (size_t i = 0; i < count; ++i) {  // branch-free: the compiler vectorises it
    float approx = q.scale * scales[i] * static_cast<float>(dots[i]);
    float slack = q.error * norms[i] + kFloatSlack;
    lower[i] = approx - slack;
    upper[i] = approx + slack;
  }
  // The best subjects by the score each is sure to reach. Skipping a template that only ties the floor
  // can only lower the floor, which keeps the result exact.
  TopSubjects sure(best.capacity());
  float floor = sure.floor();
  for (size_t i = 0; i < count; ++i) {
    if (lower[i] > floor) {
      sure.offer(rows.slot_subjects[i], 0, lower[i]);
      floor = sure.floor();
    }
  }
  for (size_t i = 0; i < count; ++i) {
    if (upper[i] < floor) continue;  // certainly below `capacity` other subjects
    uint32_t slot = slots[i];
    best.offer(rows.slot_subjects[i], store.template_of(slot), store.similarity(slot, query));
  }
}

}  // namespace retailface
