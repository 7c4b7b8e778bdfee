// The gallery's stored form of a template: int8 with one scale per template (scale * row approximates the
// L2-normalised vector, largest component at +-127). It is what every plan scores: the float vector a
// template was enrolled with is not kept. |v - scale * row| <= scale * sqrt(dim) / 2 (about 0.01 for a
// 128-d face template), and a score moves by at most that times |query|.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace retailface {

// Symmetric rounding of one vector: row = round(v / scale), scale = max|v| / 127 (1 for a zero vector).
struct Rounded {
  float scale = 1.f;
  float error = 0.f;         // |v - scale * row|
  float norm = 0.f;          // |v|
  float rounded_norm = 0.f;  // |scale * row|
};

inline Rounded round_to_int8(const float* vector, size_t dim, int8_t* row) {
  Rounded rounded;
  float largest = 0.f;
  for (size_t i = 0; i < dim; ++i) largest = std::max(largest, std::fabs(vector[i]));
  if (largest > 0.f) rounded.scale = largest / 127.f;
  double error = 0, norm = 0, rounded_norm = 0;
  for (size_t i = 0; i < dim; ++i) {
    float value = std::clamp(std::nearbyint(vector[i] / rounded.scale), -127.f, 127.f);
    row[i] = static_cast<int8_t>(value);
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

inline void restore_int8(const int8_t* row, float scale, size_t dim, float* vector) {
  for (size_t i = 0; i < dim; ++i) vector[i] = scale * static_cast<float>(row[i]);
}

}  // namespace retailface
