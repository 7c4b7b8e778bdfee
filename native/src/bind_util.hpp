// What the binding files share: numpy arrays in without copies (and without silent conversions), vectors out
// without copies.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

namespace retailface {

namespace py = pybind11;

// Only C-contiguous arrays of the exact dtype are accepted: a silent conversion would copy
// (and could hide a caller passing float64 embeddings).
template <typename T>
using Strict = py::array_t<T, py::array::c_style>;

// The array's data; ndim -1 accepts any number of dimensions.
template <typename T>
const T* checked(const py::array& array, const char* name, py::ssize_t ndim) {
  if (!py::isinstance<Strict<T>>(array) || !(array.flags() & py::array::c_style)) {
    throw py::value_error(std::string(name) + " must be a C-contiguous numpy array of " +
                          py::str(py::dtype::of<T>()).cast<std::string>());
  }
  if (ndim >= 0 && array.ndim() != ndim) {
    throw py::value_error(std::string(name) + " must have " + std::to_string(ndim) + " dimension(s), got " +
                          std::to_string(array.ndim()));
  }
  return static_cast<const T*>(array.data());
}

// The vector as a numpy array that owns it (no copy).
template <typename T>
py::array_t<T> to_numpy(std::vector<T>&& values, std::vector<py::ssize_t> shape) {
  auto* owned = new std::vector<T>(std::move(values));
  py::capsule release(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(shape, owned->data(), release);
}

// Defined in id_table_bindings.cpp: retailface._matcher.IdTable.
void bind_id_table(py::module_& m);

}  // namespace retailface
