// Python binding of the id table (retailface._matcher.IdTable, id_table.hpp): ids come in as str (read as their
// UTF-8, not copied) or packed (offsets into one UTF-8 blob: a snapshot's), and go out as str or packed. A
// shared mutex makes every call safe from any thread; bulk calls work without the GIL, and a call that finds the
// table busy waits for it without the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bind_util.hpp"
#include "retailface/id_table.hpp"

namespace retailface {

namespace {

struct PyIdTable {
  explicit PyIdTable(size_t min_holes) : table(min_holes) {}
  IdTable table;
  mutable std::shared_mutex mutex;
};

// The table's lock, taken while holding the GIL: when another thread has it (a bulk call, which runs without the
// GIL), this one waits without the GIL, so that the two never wait for each other.
template <typename Lock>
Lock locked(const PyIdTable& self) {
  Lock lock(self.mutex, std::try_to_lock);
  if (!lock.owns_lock()) {
    py::gil_scoped_release release;
    lock.lock();
  }
  return lock;
}
using Reading = std::shared_lock<std::shared_mutex>;
using Writing = std::unique_lock<std::shared_mutex>;

// A str's UTF-8 (owned by the str, valid while it lives).
std::string_view utf8(py::handle item, const char* what) {
  if (!PyUnicode_Check(item.ptr())) {
    throw py::type_error(std::string(what) + " must be str, not " + py::str(py::type::of(item).attr("__name__")).cast<std::string>());
  }
  Py_ssize_t size = 0;
  const char* data = PyUnicode_AsUTF8AndSize(item.ptr(), &size);
  if (data == nullptr) throw py::error_already_set();
  return {data, static_cast<size_t>(size)};
}

py::object str_or_none(const IdTable& table, uint32_t row, bool subject) {
  if (row == IdTable::kNone) return py::none();
  std::string_view id = subject ? table.subject_id(row) : table.template_id(row);
  return py::str(id.data(), id.size());
}

py::str to_str(std::string_view id) { return py::str(id.data(), id.size()); }

// Ids of a Python sequence of str, packed (copied) for a call that runs without the GIL.
struct PackedCopy {
  std::string blob;
  std::vector<uint64_t> offsets;
};

PackedCopy pack(const py::sequence& ids, const char* what) {
  if (PyUnicode_Check(ids.ptr())) throw py::type_error(std::string(what) + " must be a sequence of str, not one str");
  PackedCopy packed;
  size_t n = py::len(ids);
  packed.offsets.reserve(n + 1);
  packed.offsets.push_back(0);
  for (size_t i = 0; i < n; ++i) {
    std::string_view id = utf8(ids[i], what);
    packed.blob.append(id.data(), id.size());
    packed.offsets.push_back(packed.blob.size());
  }
  return packed;
}

// A packed argument: offsets (uint64, n + 1) into a blob (anything of contiguous bytes: bytes, numpy uint8).
struct PackedArgument {
  const uint64_t* offsets = nullptr;
  const char* blob = nullptr;
  size_t blob_size = 0;
  py::buffer_info view;  // keeps the blob's buffer; released with the GIL held (it lives outside the GIL-free part)
};

PackedArgument packed_argument(const py::array& offsets, const py::buffer& blob, size_t n) {
  PackedArgument argument;
  argument.offsets = checked<uint64_t>(offsets, "offsets", 1);
  if (static_cast<size_t>(offsets.shape(0)) != n + 1) {
    throw py::value_error("offsets must have one more entry than there are ids (" + std::to_string(n + 1) + "), got " +
                          std::to_string(offsets.shape(0)));
  }
  argument.view = blob.request();
  if (argument.view.itemsize != 1 || argument.view.ndim != 1 || argument.view.strides[0] != 1) {
    throw py::value_error("the ids' blob must be contiguous bytes");
  }
  argument.blob = static_cast<const char*>(argument.view.ptr);
  argument.blob_size = static_cast<size_t>(argument.view.size);
  return argument;
}

// Offsets that do not decrease and stay within the blob (run without the GIL).
void check_offsets(const uint64_t* offsets, size_t n, size_t blob_size) {
  for (size_t i = 0; i < n; ++i)
    if (offsets[i + 1] < offsets[i]) throw std::invalid_argument("id offsets must not decrease");
  if (offsets[n] > blob_size) throw std::invalid_argument("id offsets run past the end of the ids' blob");
}

size_t length_of(const py::array& array, const char* name) {
  return static_cast<size_t>(checked<int64_t>(array, name, 1) != nullptr ? array.shape(0) : 0);
}

}  // namespace

void bind_id_table(py::module_& m) {
  py::class_<PyIdTable>(m, "IdTable",
                        "Subject and template ids <-> keys of one gallery, each subject's templates and tag set number "
                        "(native/include/retailface/id_table.hpp)")
      .def(py::init<size_t>(), py::arg("min_holes") = 4096)
      .def_property_readonly("subject_count",
                             [](const PyIdTable& self) {
                               auto lock = locked<Reading>(self);
                               return self.table.subject_count();
                             })
      .def_property_readonly("template_count",
                             [](const PyIdTable& self) {
                               auto lock = locked<Reading>(self);
                               return self.table.template_count();
                             })
      .def_property_readonly("memory_bytes",
                             [](const PyIdTable& self) {
                               auto lock = locked<Reading>(self);
                               return self.table.bytes();
                             })
      // Rows left by removals and not yet compacted away; how many compactions there were.
      .def_property_readonly("holes",
                             [](const PyIdTable& self) {
                               auto lock = locked<Reading>(self);
                               return self.table.holes();
                             })
      .def_property_readonly("compactions",
                             [](const PyIdTable& self) {
                               auto lock = locked<Reading>(self);
                               return self.table.compactions();
                             })
      // A copy of the arena's used bytes: the ids, and zeros where erased ones were (for tests).
      .def("arena_bytes",
           [](const PyIdTable& self) {
             auto lock = locked<Reading>(self);
             return py::bytes(self.table.arena().data(), self.table.arena().used());
           })
      // (key, tag set) of a subject, or None.
      .def(
          "subject",
          [](const PyIdTable& self, py::handle subject_id) -> py::object {
            std::string_view id = utf8(subject_id, "subject_id");
            auto lock = locked<Reading>(self);
            uint32_t row = self.table.find_subject(id);
            if (row == IdTable::kNone) return py::none();
            return py::make_tuple(self.table.subject_key(row), self.table.tag_set(row));
          },
          py::arg("subject_id"))
      .def(
          "subject_id",
          [](const PyIdTable& self, int64_t key) {
            auto lock = locked<Reading>(self);
            return str_or_none(self.table, self.table.find_subject_key(key), true);
          },
          py::arg("key"))
      .def(
          "template_id",
          [](const PyIdTable& self, int64_t key) {
            auto lock = locked<Reading>(self);
            return str_or_none(self.table, self.table.find_template_key(key), false);
          },
          py::arg("key"))
      // (key, owner's subject id) of a template, or None.
      .def(
          "template",
          [](const PyIdTable& self, py::handle template_id) -> py::object {
            std::string_view id = utf8(template_id, "template_id");
            auto lock = locked<Reading>(self);
            uint32_t row = self.table.find_template(id);
            if (row == IdTable::kNone) return py::none();
            return py::make_tuple(self.table.template_key(row), to_str(self.table.subject_id(self.table.owner(row))));
          },
          py::arg("template_id"))
      // The subject's templates as (id, key), in the order they were bound; empty for an unknown subject.
      .def(
          "templates_of",
          [](const PyIdTable& self, py::handle subject_id) {
            std::string_view id = utf8(subject_id, "subject_id");
            auto lock = locked<Reading>(self);
            py::list out;
            uint32_t row = self.table.find_subject(id);
            if (row == IdTable::kNone) return out;
            std::vector<uint32_t> rows;
            for (uint32_t at = self.table.first_template(row); at != IdTable::kNone; at = self.table.next_template(at))
              rows.push_back(at);
            for (auto at = rows.rbegin(); at != rows.rend(); ++at)
              out.append(py::make_tuple(to_str(self.table.template_id(*at)), self.table.template_key(*at)));
            return out;
          },
          py::arg("subject_id"))
      .def(
          "template_count_of",
          [](const PyIdTable& self, py::handle subject_id) -> size_t {
            std::string_view id = utf8(subject_id, "subject_id");
            auto lock = locked<Reading>(self);
            uint32_t row = self.table.find_subject(id);
            return row == IdTable::kNone ? 0 : self.table.templates_of(row);
          },
          py::arg("subject_id"))
      // ValueError when the id or the key is already a subject's.
      .def(
          "add_subject",
          [](PyIdTable& self, py::handle subject_id, int64_t key, uint32_t tag_set) {
            std::string_view id = utf8(subject_id, "subject_id");
            auto lock = locked<Writing>(self);
            self.table.add_subject(id, key, tag_set);
          },
          py::arg("subject_id"), py::arg("key"), py::arg("tag_set"))
      .def(
          "set_tag_set",
          [](PyIdTable& self, py::handle subject_id, uint32_t tag_set) {
            std::string_view id = utf8(subject_id, "subject_id");
            auto lock = locked<Writing>(self);
            uint32_t row = self.table.find_subject(id);
            if (row == IdTable::kNone) throw py::key_error(std::string(id));
            self.table.set_tag_set(row, tag_set);
          },
          py::arg("subject_id"), py::arg("tag_set"))
      // KeyError for an unknown subject. The later binding of an id or a key wins (id_table.hpp).
      .def(
          "bind_template",
          [](PyIdTable& self, py::handle subject_id, py::handle template_id, int64_t key) {
            std::string_view subject = utf8(subject_id, "subject_id"), id = utf8(template_id, "template_id");
            auto lock = locked<Writing>(self);
            uint32_t row = self.table.find_subject(subject);
            if (row == IdTable::kNone) throw py::key_error(std::string(subject));
            self.table.bind_template(row, id, key);
          },
          py::arg("subject_id"), py::arg("template_id"), py::arg("key"))
      // Forgets the subject and its templates (their ids zeroed in memory); returns how many templates it had.
      // KeyError for an unknown subject.
      .def(
          "remove_subject",
          [](PyIdTable& self, py::handle subject_id) {
            std::string_view id = utf8(subject_id, "subject_id");
            auto lock = locked<Writing>(self);
            uint32_t row = self.table.find_subject(id);
            if (row == IdTable::kNone) throw py::key_error(std::string(id));
            return self.table.remove_subject(row);
          },
          py::arg("subject_id"))
      .def(
          "reserve",
          [](PyIdTable& self, size_t subjects, size_t templates, size_t id_bytes) {
            py::gil_scoped_release release;
            std::unique_lock lock(self.mutex);
            self.table.reserve(subjects, templates, id_bytes);
          },
          py::arg("subjects"), py::arg("templates"), py::arg("id_bytes") = 0)
      // Bulk add_subject (ValueError as it, the subjects before the offending one added).
      .def(
          "add_subjects",
          [](PyIdTable& self, const py::sequence& subject_ids, const py::array& keys, const py::array& tag_sets) {
            PackedCopy ids = pack(subject_ids, "subject_ids");
            size_t n = ids.offsets.size() - 1;
            const int64_t* key_data = checked<int64_t>(keys, "keys", 1);
            const uint32_t* tag_data = checked<uint32_t>(tag_sets, "tag_sets", 1);
            if (static_cast<size_t>(keys.shape(0)) != n || static_cast<size_t>(tag_sets.shape(0)) != n)
              throw py::value_error("subject_ids, keys and tag_sets must have the same length");
            py::gil_scoped_release release;
            std::unique_lock lock(self.mutex);
            self.table.add_subjects(ids.blob.data(), ids.offsets.data(), key_data, tag_data, n);
          },
          py::arg("subject_ids"), py::arg("keys"), py::arg("tag_sets"))
      .def(
          "add_subjects_packed",
          [](PyIdTable& self, const py::array& offsets, const py::buffer& blob, const py::array& keys,
             const py::array& tag_sets) {
            size_t n = length_of(keys, "keys");
            const int64_t* key_data = checked<int64_t>(keys, "keys", 1);
            const uint32_t* tag_data = checked<uint32_t>(tag_sets, "tag_sets", 1);
            if (static_cast<size_t>(tag_sets.shape(0)) != n) throw py::value_error("keys and tag_sets must have the same length");
            PackedArgument ids = packed_argument(offsets, blob, n);
            py::gil_scoped_release release;
            check_offsets(ids.offsets, n, ids.blob_size);
            std::unique_lock lock(self.mutex);
            self.table.add_subjects(ids.blob, ids.offsets, key_data, tag_data, n);
          },
          py::arg("offsets"), py::arg("blob"), py::arg("keys"), py::arg("tag_sets"))
      // Bulk bind_template, the subjects by key; returns n, or the index of the first template whose subject key no
      // subject has (the ones before it bound, none after).
      .def(
          "bind_templates",
          [](PyIdTable& self, const py::sequence& template_ids, const py::array& keys, const py::array& subject_keys) {
            PackedCopy ids = pack(template_ids, "template_ids");
            size_t n = ids.offsets.size() - 1;
            const int64_t* key_data = checked<int64_t>(keys, "keys", 1);
            const int64_t* subject_data = checked<int64_t>(subject_keys, "subject_keys", 1);
            if (static_cast<size_t>(keys.shape(0)) != n || static_cast<size_t>(subject_keys.shape(0)) != n)
              throw py::value_error("template_ids, keys and subject_keys must have the same length");
            py::gil_scoped_release release;
            std::unique_lock lock(self.mutex);
            return self.table.bind_templates(ids.blob.data(), ids.offsets.data(), key_data, subject_data, n);
          },
          py::arg("template_ids"), py::arg("keys"), py::arg("subject_keys"))
      .def(
          "bind_templates_packed",
          [](PyIdTable& self, const py::array& offsets, const py::buffer& blob, const py::array& keys,
             const py::array& subject_keys) {
            size_t n = length_of(keys, "keys");
            const int64_t* key_data = checked<int64_t>(keys, "keys", 1);
            const int64_t* subject_data = checked<int64_t>(subject_keys, "subject_keys", 1);
            if (static_cast<size_t>(subject_keys.shape(0)) != n)
              throw py::value_error("keys and subject_keys must have the same length");
            PackedArgument ids = packed_argument(offsets, blob, n);
            py::gil_scoped_release release;
            check_offsets(ids.offsets, n, ids.blob_size);
            std::unique_lock lock(self.mutex);
            return self.table.bind_templates(ids.blob, ids.offsets, key_data, subject_data, n);
          },
          py::arg("offsets"), py::arg("blob"), py::arg("keys"), py::arg("subject_keys"))
      // Every subject, in table order: (keys int64, tag sets uint32, id offsets uint64 n + 1, ids' blob uint8).
      .def("export_subjects",
           [](const PyIdTable& self) {
             std::vector<int64_t> keys;
             std::vector<uint32_t> tag_sets;
             std::vector<uint64_t> offsets;
             std::vector<uint8_t> blob;
             {
               py::gil_scoped_release release;
               std::shared_lock lock(self.mutex);
               self.table.export_subjects(keys, tag_sets, offsets, blob);
             }
             auto n = static_cast<py::ssize_t>(keys.size());
             auto bytes = static_cast<py::ssize_t>(blob.size());
             return py::make_tuple(to_numpy(std::move(keys), {n}), to_numpy(std::move(tag_sets), {n}),
                                   to_numpy(std::move(offsets), {n + 1}), to_numpy(std::move(blob), {bytes}));
           })
      // The ids of the templates of `keys`, packed: (offsets uint64 n + 1, blob uint8); KeyError for a key no template has.
      .def(
          "template_ids_packed",
          [](const PyIdTable& self, const py::array& keys) {
            const int64_t* key_data = checked<int64_t>(keys, "keys", 1);
            size_t n = static_cast<size_t>(keys.shape(0)), found;
            std::vector<uint64_t> offsets;
            std::vector<uint8_t> blob;
            {
              py::gil_scoped_release release;
              std::shared_lock lock(self.mutex);
              found = self.table.template_ids(key_data, n, offsets, blob);
            }
            if (found != n) throw py::key_error(std::to_string(key_data[found]));
            auto bytes = static_cast<py::ssize_t>(blob.size());
            return py::make_tuple(to_numpy(std::move(offsets), {static_cast<py::ssize_t>(n) + 1}),
                                  to_numpy(std::move(blob), {bytes}));
          },
          py::arg("keys"))
      // The ids of the templates of `keys` as str; KeyError for a key no template has.
      .def(
          "template_ids",
          [](const PyIdTable& self, const py::array& keys) {
            const int64_t* key_data = checked<int64_t>(keys, "keys", 1);
            size_t n = static_cast<size_t>(keys.shape(0));
            auto lock = locked<Reading>(self);
            py::list out(n);
            for (size_t i = 0; i < n; ++i) {
              uint32_t row = self.table.find_template_key(key_data[i]);
              if (row == IdTable::kNone) throw py::key_error(std::to_string(key_data[i]));
              out[i] = to_str(self.table.template_id(row));
            }
            return out;
          },
          py::arg("keys"))
      // The subject ids owning these templates; KeyError for an unknown template id.
      .def(
          "owners",
          [](const PyIdTable& self, const py::sequence& template_ids) {
            size_t n = py::len(template_ids);
            auto lock = locked<Reading>(self);
            py::list out(n);
            for (size_t i = 0; i < n; ++i) {
              std::string_view id = utf8(template_ids[i], "template_ids");
              uint32_t row = self.table.find_template(id);
              if (row == IdTable::kNone) throw py::key_error(std::string(id));
              out[i] = to_str(self.table.subject_id(self.table.owner(row)));
            }
            return out;
          },
          py::arg("template_ids"))
      // Search results named: (subject ids, template ids), flat in the arrays' order, None for a key below 0 or
      // one that names nothing (erased, or not yet bound).
      .def(
          "names",
          [](const PyIdTable& self, const py::array& subject_keys, const py::array& template_keys) {
            const int64_t* subjects = checked<int64_t>(subject_keys, "subject_keys", -1);
            const int64_t* templates = checked<int64_t>(template_keys, "template_keys", -1);
            size_t n = static_cast<size_t>(subject_keys.size());
            if (static_cast<size_t>(template_keys.size()) != n)
              throw py::value_error("subject_keys and template_keys must have the same size");
            auto lock = locked<Reading>(self);
            py::list subject_ids(n), template_ids(n);
            for (size_t i = 0; i < n; ++i) {
              subject_ids[i] = subjects[i] < 0 ? py::none() : str_or_none(self.table, self.table.find_subject_key(subjects[i]), true);
              template_ids[i] =
                  templates[i] < 0 ? py::none() : str_or_none(self.table, self.table.find_template_key(templates[i]), false);
            }
            return py::make_tuple(subject_ids, template_ids);
          },
          py::arg("subject_keys"), py::arg("template_keys"))
      // (keys int64, tag sets uint32) of the subjects among `subject_ids` that the table has, in their order.
      .def(
          "subjects_of",
          [](const PyIdTable& self, const py::sequence& subject_ids) {
            size_t n = py::len(subject_ids);
            std::vector<int64_t> keys;
            std::vector<uint32_t> tag_sets;
            {
              auto lock = locked<Reading>(self);
              for (size_t i = 0; i < n; ++i) {
                uint32_t row = self.table.find_subject(utf8(subject_ids[i], "subject_ids"));
                if (row == IdTable::kNone) continue;
                keys.push_back(self.table.subject_key(row));
                tag_sets.push_back(self.table.tag_set(row));
              }
            }
            auto found = static_cast<py::ssize_t>(keys.size());
            return py::make_tuple(to_numpy(std::move(keys), {found}), to_numpy(std::move(tag_sets), {found}));
          },
          py::arg("subject_ids"))
      // The sorted keys of the subjects whose tag set t has allowed[t] != 0 (allowed: uint8, one per tag set).
      .def(
          "subjects_with_tag_sets",
          [](const PyIdTable& self, const py::array& allowed) {
            const uint8_t* mask = checked<uint8_t>(allowed, "allowed", 1);
            size_t count = static_cast<size_t>(allowed.shape(0));
            std::vector<int64_t> keys;
            {
              py::gil_scoped_release release;
              std::shared_lock lock(self.mutex);
              keys = self.table.subjects_with_tag_sets(mask, count);
            }
            auto n = static_cast<py::ssize_t>(keys.size());
            return to_numpy(std::move(keys), {n});
          },
          py::arg("allowed"));
}

}  // namespace retailface
