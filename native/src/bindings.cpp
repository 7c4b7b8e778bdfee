// Python binding of the gallery: numpy buffers in without copies, the GIL released while C++ works.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "retailface/gallery.hpp"

namespace py = pybind11;
using retailface::Gallery;
using retailface::GalleryParams;

namespace {

// Only C-contiguous arrays of the exact dtype are accepted: a silent conversion would copy
// (and could hide a caller passing float64 embeddings).
template <typename T>
using Strict = py::array_t<T, py::array::c_style>;

template <typename T>
const T* checked(const py::array& array, const char* name, py::ssize_t ndim) {
  if (!py::isinstance<Strict<T>>(array) || !(array.flags() & py::array::c_style)) {
    throw py::value_error(std::string(name) + " must be a C-contiguous numpy array of " +
                          py::str(py::dtype::of<T>()).cast<std::string>());
  }
  if (array.ndim() != ndim) {
    throw py::value_error(std::string(name) + " must have " + std::to_string(ndim) + " dimension(s), got " +
                          std::to_string(array.ndim()));
  }
  return static_cast<const T*>(array.data());
}

py::array_t<int64_t> to_numpy(std::vector<int64_t>&& values, std::vector<py::ssize_t> shape) {
  auto* owned = new std::vector<int64_t>(std::move(values));
  py::capsule release(owned, [](void* p) { delete static_cast<std::vector<int64_t>*>(p); });
  return py::array_t<int64_t>(shape, owned->data(), release);
}

template <typename T>
py::array_t<T> to_numpy(std::vector<T>&& values, std::vector<py::ssize_t> shape) {
  auto* owned = new std::vector<T>(std::move(values));
  py::capsule release(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(shape, owned->data(), release);
}

struct PySearchResult {
  py::array subjects, scores, template_ids, decisions, plans;
};

}  // namespace

PYBIND11_MODULE(_matcher, m) {
  m.doc() = "RetailFace native matcher: a face gallery over hnswlib with exact and filtered plans";
  m.attr("HNSWLIB_VERSION") = "0.8.0";
  // Code path the scan kernels took on this CPU: "avx512" (with VPOPCNTDQ) or the "x86-64-v3" baseline.
  m.attr("ISA") = Gallery::isa();

  py::enum_<retailface::Decision>(m, "Decision")
      .value("MATCH", retailface::Decision::kMatch)
      .value("NO_MATCH", retailface::Decision::kNoMatch)
      .value("AMBIGUOUS", retailface::Decision::kAmbiguous);
  py::enum_<retailface::Plan>(m, "Plan")
      .value("EMPTY", retailface::Plan::kEmpty)
      .value("EXACT_SCAN", retailface::Plan::kExactScan)
      .value("GRAPH", retailface::Plan::kGraph)
      .value("FILTERED_SCAN", retailface::Plan::kFilteredScan)
      .value("FILTERED_GRAPH", retailface::Plan::kFilteredGraph)
      .value("CODE_SCAN", retailface::Plan::kCodeScan)
      .value("FILTERED_CODE_SCAN", retailface::Plan::kFilteredCodeScan);

  py::class_<PySearchResult>(m, "SearchResult")
      .def_readonly("subjects", &PySearchResult::subjects)
      .def_readonly("scores", &PySearchResult::scores)
      .def_readonly("template_ids", &PySearchResult::template_ids)
      .def_readonly("decisions", &PySearchResult::decisions)
      .def_readonly("plans", &PySearchResult::plans);

  py::class_<Gallery>(m, "Gallery")
      .def(py::init([](size_t dim, size_t capacity, size_t M, size_t ef_construction, size_t ef_search, size_t threads,
                       size_t exact_below, size_t filtered_scan_below, bool graph_for_global,
                       size_t min_candidates, size_t candidate_divisor) {
             GalleryParams params;
             params.dim = dim;
             params.capacity = capacity;
             params.M = M;
             params.ef_construction = ef_construction;
             params.ef_search = ef_search;
             params.threads = threads;
             params.exact_below = exact_below;
             params.filtered_scan_below = filtered_scan_below;
             params.graph_for_global = graph_for_global;
             params.min_candidates = min_candidates;
             params.candidate_divisor = std::max<size_t>(candidate_divisor, 1);
             return std::make_unique<Gallery>(params);
           }),
           py::arg("dim"), py::arg("capacity") = 1024, py::arg("M") = 16, py::arg("ef_construction") = 200,
           py::arg("ef_search") = 64, py::arg("threads") = 2, py::arg("exact_below") = 20000,
           py::arg("filtered_scan_below") = 4096, py::arg("graph_for_global") = false,
           py::arg("min_candidates") = 256, py::arg("candidate_divisor") = 400)
      .def(
          "add",
          [](Gallery& self, const py::array& template_ids, const py::array& subject_ids, const py::array& vectors) {
            const int64_t* templates = checked<int64_t>(template_ids, "template_ids", 1);
            const int64_t* subjects = checked<int64_t>(subject_ids, "subject_ids", 1);
            const float* data = checked<float>(vectors, "vectors", 2);
            size_t n = static_cast<size_t>(template_ids.shape(0));
            if (static_cast<size_t>(subject_ids.shape(0)) != n || static_cast<size_t>(vectors.shape(0)) != n) {
              throw py::value_error("template_ids, subject_ids and vectors must have the same length");
            }
            if (static_cast<size_t>(vectors.shape(1)) != self.dim()) {
              throw py::value_error("vectors have dimension " + std::to_string(vectors.shape(1)) + ", the gallery " +
                                    std::to_string(self.dim()));
            }
            py::gil_scoped_release release;
            self.add(templates, subjects, data, n);
          },
          py::arg("template_ids"), py::arg("subject_ids"), py::arg("vectors"))
      .def(
          "remove",
          [](Gallery& self, const py::array& template_ids) {
            const int64_t* templates = checked<int64_t>(template_ids, "template_ids", 1);
            size_t n = static_cast<size_t>(template_ids.shape(0));
            py::gil_scoped_release release;
            return self.remove(templates, n);
          },
          py::arg("template_ids"))
      .def(
          "remove_subject",
          [](Gallery& self, int64_t subject) {
            py::gil_scoped_release release;
            return self.remove_subject(subject);
          },
          py::arg("subject_id"))
      .def(
          "search",
          [](const Gallery& self, const py::array& queries, size_t top_k, float threshold, float margin,
             const std::optional<py::array>& allowed_subjects) {
            const float* data = checked<float>(queries, "queries", 2);
            if (static_cast<size_t>(queries.shape(1)) != self.dim()) {
              throw py::value_error("queries have dimension " + std::to_string(queries.shape(1)) + ", the gallery " +
                                    std::to_string(self.dim()));
            }
            const int64_t* allowed = nullptr;
            size_t allowed_count = 0;
            if (allowed_subjects.has_value()) {
              allowed = checked<int64_t>(*allowed_subjects, "allowed_subjects", 1);
              allowed_count = static_cast<size_t>(allowed_subjects->shape(0));
            }
            size_t n = static_cast<size_t>(queries.shape(0));
            retailface::SearchOutput out;
            {
              py::gil_scoped_release release;
              out = self.search(data, n, top_k, threshold, margin, allowed, allowed_count);
            }
            auto rows = static_cast<py::ssize_t>(n), cols = static_cast<py::ssize_t>(top_k);
            PySearchResult result;
            result.subjects = to_numpy(std::move(out.subjects), {rows, cols});
            result.template_ids = to_numpy(std::move(out.template_ids), {rows, cols});
            result.scores = to_numpy<float>(std::move(out.scores), {rows, cols});
            result.decisions = to_numpy<int8_t>(std::move(out.decisions), {rows});
            result.plans = to_numpy<int8_t>(std::move(out.plans), {rows});
            return result;
          },
          py::arg("queries"), py::arg("top_k") = 5, py::arg("threshold") = 0.5f, py::arg("margin") = 0.05f,
          py::arg("allowed_subjects") = py::none())
      .def("templates",
           [](const Gallery& self) {
             std::vector<int64_t> templates, subjects;
             std::vector<float> vectors;
             {
               py::gil_scoped_release release;
               self.templates(templates, subjects, vectors);
             }
             auto n = static_cast<py::ssize_t>(templates.size());
             auto dim = static_cast<py::ssize_t>(self.dim());
             return py::make_tuple(to_numpy(std::move(templates), {n}), to_numpy(std::move(subjects), {n}),
                                   to_numpy<float>(std::move(vectors), {n, dim}));
           })
      .def("set_threads", &Gallery::set_threads, py::arg("threads"))
      .def("set_ef", &Gallery::set_ef, py::arg("ef"))
      .def("set_graph_for_global", &Gallery::set_graph_for_global, py::arg("graph"))
      .def("set_candidates", &Gallery::set_candidates, py::arg("min_candidates"), py::arg("candidate_divisor"))
      .def("set_filtered_scan_share", &Gallery::set_filtered_scan_share, py::arg("share"))
      .def_property_readonly("size", &Gallery::size)
      .def_property_readonly("subject_count", &Gallery::subject_count)
      .def_property_readonly("memory_bytes", &Gallery::memory_bytes)
      .def_property_readonly("dim", &Gallery::dim)
      .def_property_readonly("params", [](const Gallery& self) {
        GalleryParams p = self.params();
        py::dict params;
        params["dim"] = p.dim;
        params["capacity"] = p.capacity;
        params["M"] = p.M;
        params["ef_construction"] = p.ef_construction;
        params["ef_search"] = p.ef_search;
        params["threads"] = p.threads;
        params["exact_below"] = p.exact_below;
        params["filtered_scan_below"] = p.filtered_scan_below;
        params["graph_for_global"] = p.graph_for_global;
        params["min_candidates"] = p.min_candidates;
        params["candidate_divisor"] = p.candidate_divisor;
        params["filtered_scan_share"] = p.filtered_scan_share;
        return params;
      });
}
