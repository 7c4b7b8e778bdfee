#include "retailface/int8_scan.hpp"

#include <algorithm>
#include <cmath>

#include "retailface/kernels.hpp"

namespace retailface {

namespace {

// Symmetric int8 rounding of one vector: out = round(v / scale) with scale = max|v| / 127.
struct Rounded {
  float scale = 1.f;
  float error = 0.f;  // |v - scale * out|
  float norm = 0.f;   // |v|
  float rounded_norm = 0.f;  // |scale * out|
};

Rounded round_to_int8(const float* vector, size_t dim, int8_t* out) {
  Rounded rounded;
  float largest = 0.f;
  for (size_t i = 0; i < dim; ++i) largest = std::max(largest, std::fabs(vector[i]));
  if (largest > 0.f) rounded.scale = largest / 127.f;
  double error = 0, norm = 0, rounded_norm = 0;
  for (size_t i = 0; i < dim; ++i) {
    float value = std::nearbyint(vector[i] / rounded.scale);
    value = std::clamp(value, -127.f, 127.f);
    out[i] = static_cast<int8_t>(value);
    double restored = static_cast<double>(value) * rounded.scale;
    error += (vector[i] - restored) * (vector[i] - restored);
    norm += static_cast<double>(vector[i]) * vector[i];
    rounded_norm += restored * restored;
  }
  rounded.error = static_cast<float>(std::sqrt(error));
  rounded.norm = static_cast<float>(std::sqrt(norm));
  rounded.rounded_norm = static_cast<float>(std::sqrt(rounded_norm));
  return rounded;
}

}  // namespace

void QuantizedRows::build(const Slots& store, const std::vector<uint32_t>& slots, size_t dim) {
  size_t count = slots.size();
  quantized.resize(count * dim);
  scales.resize(count);
  errors.resize(count);
  norms.resize(count);
  slot_subjects.resize(count);
  for (size_t i = 0; i < count; ++i) {
    uint32_t slot = slots[i];
    Rounded rounded = round_to_int8(store.vector_of(slot), dim, quantized.data() + i * dim);
    scales[i] = rounded.scale;
    errors[i] = rounded.error;
    norms[i] = rounded.norm;
    slot_subjects[i] = store.subject_of(slot);
  }
}

size_t QuantizedRows::bytes() const {
  return quantized.size() + (scales.size() + errors.size() + norms.size()) * sizeof(float) +
         slot_subjects.size() * sizeof(int64_t);
}

void int8_scan(const Slots& store, const std::vector<uint32_t>& slots, const QuantizedRows& rows, size_t dim,
               const float* query, TopSubjects& best) {
  // u.v = q.t + q.(v - t) + (u - q).v for the rounded query q and template t, so
  // |u.v - q.t| <= |q| |v - t| + |u - q| |v|: q.t comes from the int8 scan, and the bound says which
  // templates could still be among the best. Only those are scored in float.
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
  const float *scales = rows.scales.data(), *errors = rows.errors.data(), *norms = rows.norms.data();
  for (size_t i = 0; i < count; ++i) {  // branch-free: the compiler vectorises it
    float approx = q.scale * scales[i] * static_cast<float>(dots[i]);
    float slack = q.rounded_norm * errors[i] + q.error * norms[i] + kFloatSlack;
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
