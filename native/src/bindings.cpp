#include <pybind11/pybind11.h>
#include <hnswlib/hnswlib.h>

namespace py = pybind11;

PYBIND11_MODULE(_matcher, m) {
  m.doc() = "RetailFace native matcher (C++ gallery over hnswlib)";
  m.attr("HNSWLIB_VERSION") = "0.8.0";
}
