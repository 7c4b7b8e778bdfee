// Python binding of the gallery: numpy buffers in without copies, the GIL released while C++ works.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <type_traits>

#include "bind_util.hpp"
#include "retailface/gallery.hpp"
#include "retailface/quantize.hpp"

namespace py = pybind11;
using retailface::checked;
using retailface::to_numpy;
using retailface::Gallery;
using retailface::GalleryParams;

namespace {

// Every field of GalleryParams under its Python name: the one list that the constructor's keywords, the
// `params` property and DEFAULT_PARAMS are made from. The defaults themselves live in gallery_types.hpp.
template <typename Params, typename Visit>
void for_each_param(Params& params, Visit&& visit) {
  visit("dim", params.dim);
  visit("capacity", params.capacity);
  visit("M", params.M);
  visit("ef_construction", params.ef_construction);
  visit("ef_search", params.ef_search);
  visit("threads", params.threads);
  visit("exact_below", params.exact_below);
  visit("filtered_scan_below", params.filtered_scan_below);
  visit("graph_for_global", params.graph_for_global);
  visit("min_candidates", params.min_candidates);
  visit("candidate_divisor", params.candidate_divisor);
  visit("first_pass_divisor", params.first_pass_divisor);
  visit("first_pass_share", params.first_pass_share);
  visit("filtered_scan_share", params.filtered_scan_share);
  visit("hnsw_graph", params.hnsw_graph);
}

py::dict to_dict(const GalleryParams& params) {
  py::dict dict;
  for_each_param(params, [&](const char* name, const auto& value) { dict[name] = value; });
  return dict;
}

// Gallery(dim, **params): every keyword names a GalleryParams field; the ones not given keep its default.
GalleryParams from_keywords(size_t dim, const py::kwargs& keywords) {
  GalleryParams params;
  params.dim = dim;
  py::dict known = to_dict(params);
  for (const auto& item : keywords) {
    if (!known.contains(item.first)) {
      throw py::type_error("Gallery() got an unexpected keyword argument '" + py::str(item.first).cast<std::string>() +
                           "'");
    }
  }
  for_each_param(params, [&](const char* name, auto& value) {
    if (!keywords.contains(name)) return;
    try {
      value = keywords[name].cast<std::decay_t<decltype(value)>>();
    } catch (const py::cast_error&) {
      throw py::type_error(std::string("Gallery(): ") + name + " must be a " +
                           (std::is_same_v<std::decay_t<decltype(value)>, bool> ? "bool" : "non-negative int"));
    }
  });
  return params;
}

// Rows (vectors, queries) must have the gallery's dimension.
void check_dim(const Gallery& gallery, const py::array& rows, const char* name) {
  if (static_cast<size_t>(rows.shape(1)) != gallery.dim()) {
    throw py::value_error(std::string(name) + " have dimension " + std::to_string(rows.shape(1)) + ", the gallery " +
                          std::to_string(gallery.dim()));
  }
}

struct PySearchResult {
  py::array subjects, scores, template_ids, decisions, plans;
};

}  // namespace

PYBIND11_MODULE(_matcher, m) {
  m.doc() = "RetailFace native matcher: a face gallery over hnswlib with exact and filtered plans";
  m.attr("HNSWLIB_VERSION") = RETAILFACE_HNSWLIB_VERSION;
  // Code path the scan kernels took on this CPU: "avx512" (with VPOPCNTDQ) or the "x86-64-v3" baseline.
  m.attr("ISA") = Gallery::isa();
  // Words (uint64) of one template's sign code: the width of the `codes` that `stored` gives and `restore` takes.
  m.attr("CODE_WORDS") = retailface::kernels::kCodeWords;
  // The defaults of every Gallery parameter (M, ef_construction, ef_search, threads, capacity...).
  m.attr("DEFAULT_PARAMS") = to_dict(GalleryParams{});

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
      .def(py::init([](size_t dim, const py::kwargs& params) {
             return std::make_unique<Gallery>(from_keywords(dim, params));
           }),
           py::arg("dim"))
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
            check_dim(self, vectors, "vectors");
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
            check_dim(self, queries, "queries");
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
            result.scores = to_numpy(std::move(out.scores), {rows, cols});
            result.decisions = to_numpy(std::move(out.decisions), {rows});
            result.plans = to_numpy(std::move(out.plans), {rows});
            return result;
          },
          py::arg("queries"), py::arg("top_k") = 5, py::arg("threshold") = 0.5f, py::arg("margin") = 0.05f,
          py::arg("allowed_subjects") = py::none())
      .def(
          "restore",
          [](Gallery& self, const py::array& template_ids, const py::array& subject_ids, const py::array& rows,
             const py::array& scales, const py::array& codes) {
            const int64_t* templates = checked<int64_t>(template_ids, "template_ids", 1);
            const int64_t* subjects = checked<int64_t>(subject_ids, "subject_ids", 1);
            const int8_t* row_data = checked<int8_t>(rows, "rows", 2);
            const float* scale_data = checked<float>(scales, "scales", 1);
            const uint64_t* code_data = checked<uint64_t>(codes, "codes", 2);
            size_t n = static_cast<size_t>(template_ids.shape(0));
            if (static_cast<size_t>(subject_ids.shape(0)) != n || static_cast<size_t>(rows.shape(0)) != n ||
                static_cast<size_t>(scales.shape(0)) != n || static_cast<size_t>(codes.shape(0)) != n) {
              throw py::value_error("template_ids, subject_ids, rows, scales and codes must have the same length");
            }
            check_dim(self, rows, "rows");
            if (static_cast<size_t>(codes.shape(1)) != retailface::kernels::kCodeWords) {
              throw py::value_error("codes must have " + std::to_string(retailface::kernels::kCodeWords) + " words per template");
            }
            py::gil_scoped_release release;
            self.restore(templates, subjects, row_data, scale_data, code_data, n);
          },
          py::arg("template_ids"), py::arg("subject_ids"), py::arg("rows"), py::arg("scales"), py::arg("codes"))
      // Every live template in stored form: template_ids, subject_ids, rows (int8 n x dim), scales, codes
      // (uint64 n x words); `restore` takes them back as they are.
      .def("stored",
           [](const Gallery& self) {
             retailface::StoredTemplates stored;
             {
               py::gil_scoped_release release;
               stored = self.stored();
             }
             auto n = static_cast<py::ssize_t>(stored.template_ids.size());
             auto dim = static_cast<py::ssize_t>(self.dim());
             py::dict out;
             out["template_ids"] = to_numpy(std::move(stored.template_ids), {n});
             out["subject_ids"] = to_numpy(std::move(stored.subject_ids), {n});
             out["rows"] = to_numpy(std::move(stored.rows), {n, dim});
             out["scales"] = to_numpy(std::move(stored.scales), {n});
             out["codes"] = to_numpy(std::move(stored.codes), {n, static_cast<py::ssize_t>(retailface::kernels::kCodeWords)});
             return out;
           })
      // Every live template as the gallery scores it (the stored form, as float): template ids, subject ids, vectors.
      .def("templates",
           [](const Gallery& self) {
             retailface::StoredTemplates stored;
             {
               py::gil_scoped_release release;
               stored = self.stored();
             }
             size_t n = stored.template_ids.size(), dim = self.dim();
             std::vector<float> vectors(n * dim);
             for (size_t i = 0; i < n; ++i)
               retailface::restore_int8(stored.rows.data() + i * dim, stored.scales[i], dim, vectors.data() + i * dim);
             auto rows = static_cast<py::ssize_t>(n);
             return py::make_tuple(to_numpy(std::move(stored.template_ids), {rows}), to_numpy(std::move(stored.subject_ids), {rows}),
                                   to_numpy(std::move(vectors), {rows, static_cast<py::ssize_t>(dim)}));
           })
      .def("set_threads", &Gallery::set_threads, py::arg("threads"))
      .def("set_ef", &Gallery::set_ef, py::arg("ef"))
      .def(
          "set_graph_for_global",
          [](Gallery& self, bool graph) {
            py::gil_scoped_release release;  // may build the graph: minutes at a million templates
            self.set_graph_for_global(graph);
          },
          py::arg("graph"))
      .def("set_candidates", &Gallery::set_candidates, py::arg("min_candidates"), py::arg("candidate_divisor"))
      .def("set_first_pass", &Gallery::set_first_pass, py::arg("divisor"), py::arg("share"))
      .def("set_filtered_scan_share", &Gallery::set_filtered_scan_share, py::arg("share"))
      .def_property_readonly("size", &Gallery::size)
      .def_property_readonly("subject_count", &Gallery::subject_count)
      .def_property_readonly("memory_bytes", &Gallery::memory_bytes)
      // Bytes per part (vectors, graph, codes, ids, filters); memory_bytes is their sum.
      .def_property_readonly("memory_parts",
                             [](const Gallery& self) {
                               retailface::MemoryParts parts = self.memory();
                               py::dict dict;
                               dict["vectors"] = parts.vectors;
                               dict["graph"] = parts.graph;
                               dict["codes"] = parts.codes;
                               dict["ids"] = parts.ids;
                               dict["filters"] = parts.filters;
                               return dict;
                             })
      // Seconds the last graph built on demand (set_graph_for_global on a graph-less gallery) took; 0 if none.
      .def_property_readonly("graph_build_seconds", &Gallery::graph_build_seconds)
      .def_property_readonly("dim", &Gallery::dim)
      .def_property_readonly("params", [](const Gallery& self) { return to_dict(self.params()); });

  // The matching service's names of a gallery's keys (id_table.hpp).
  retailface::bind_id_table(m);
}
