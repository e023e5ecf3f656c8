// The description of one config object: a table of its fields, each with its key, its kind and
// bounds, how to read it and how to dump it. The table drives the loader (read_fields(): every
// key it declares is known to the unknown-key check), dump_config() (dump_fields()) and the
// public description (Fields::doc(), see sluice/config/description.hpp) that the schema test
// checks config/sluice.schema.json against. One table per object; the order of the table is the
// order fields are read (and so the order of same-line errors and of "expected one of: ...") and
// the order they are dumped.
//
// Regular fields (integers, durations, booleans, strings, label names, nested objects) are one
// line each. An irregular field is `custom`: its own reader and dumper, still in the table. A
// nested object or array whose reader needs the section's local state has no reader in the table;
// the section reads it itself with ObjectReader::field() right after read_fields(), so such
// fields come last. Internal to src/config.
#pragma once

#include <functional>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "readers.hpp"
#include "sluice/config/description.hpp"

namespace sluice::config::detail {

using DumpJson = nlohmann::ordered_json;

template <class T>
using Reader = std::function<void(Context&, const json&, const Path&, T&)>;
template <class T>
using Dumper = std::function<DumpJson(const T&)>;

template <class T>
class Fields;
template <class T>
DumpJson dump_fields(const Fields<T>& fields, const T& value);

template <class T>
struct Field {
  FieldDoc doc;
  Reader<T> read;  ///< empty: read by the section itself, after read_fields()
  Dumper<T> dump;  ///< empty, or a null result: not written by dump_config()
};

template <class T>
class Fields {
 public:
  // `get` names the member a field reads and dumps: a pointer to member
  // (&LimitsConfig::max_body_bytes) or, for a member of a member, a lambda
  // `[](auto& s) -> auto& { return s.core.max_queue; }`.

  template <class Get>
  Fields& integer(std::string_view key, Get get, std::int64_t min, std::int64_t max) {
    return add(
        {key, FieldKind::integer, min, max},
        [=](Context& ctx, const json& v, const Path& p, T& out) {
          std::int64_t value = 0;
          if (!read_int(ctx, v, p, min, max, value)) return;
          auto& member = std::invoke(get, out);
          member = static_cast<std::remove_reference_t<decltype(member)>>(value);
        },
        [=](const T& in) { return DumpJson(std::invoke(get, in)); });
  }

  template <class Get>
  Fields& duration(std::string_view key, Get get, Duration min, Duration max = kAnyDuration,
                   std::string_view why_max = {}) {
    return add(
        {key, FieldKind::duration},
        [=](Context& ctx, const json& v, const Path& p, T& out) {
          read_duration(ctx, v, p, min, max, std::invoke(get, out), why_max);
        },
        [=](const T& in) { return DumpJson(core::format_duration(std::invoke(get, in))); });
  }

  template <class Get>
  Fields& boolean(std::string_view key, Get get) {
    return add(
        {key, FieldKind::boolean},
        [=](Context& ctx, const json& v, const Path& p, T& out) {
          read_bool(ctx, v, p, std::invoke(get, out));
        },
        [=](const T& in) { return DumpJson(std::invoke(get, in)); });
  }

  /// A string; `check` (may be nullptr) validates and may normalise it.
  template <class Get>
  Fields& string(std::string_view key, Get get, StringCheck check = nullptr,
                 FieldKind kind = FieldKind::string) {
    return add(
        {key, kind},
        [=](Context& ctx, const json& v, const Path& p, T& out) {
          std::string value;
          if (!read_string(ctx, v, p, value)) return;
          if (check != nullptr && !check(ctx, p, value)) return;
          std::invoke(get, out) = std::move(value);
        },
        [=](const T& in) { return DumpJson(std::invoke(get, in)); });
  }

  template <class Get>
  Fields& label(std::string_view key, Get get) {
    return string(key, get, check_label_name, FieldKind::label);
  }

  /// A nested described object. `read` is the section's reader (the table plus its cross-field
  /// rules); empty when the enclosing section reads it itself.
  template <class Get, class Item>
  Fields& object(std::string_view key, Get get, const Fields<Item>& (*item_fields)(),
                 std::type_identity_t<Reader<Item>> read) {
    Reader<T> read_member;
    if (read) {
      read_member = [=](Context& ctx, const json& v, const Path& p, T& out) {
        read(ctx, v, p, std::invoke(get, out));
      };
    }
    return add({key, FieldKind::object, 0, 0, std::make_shared<ObjectDoc>(item_fields().doc())},
               std::move(read_member),
               [=](const T& in) { return dump_fields(item_fields(), std::invoke(get, in)); });
  }

  /// An array of described objects (`kind` object_or_objects: one object is allowed too).
  /// `read` reads the whole array; empty when the section reads it itself.
  template <class Get, class Item>
  Fields& objects(std::string_view key, Get get, const Fields<Item>& (*item_fields)(),
                  std::type_identity_t<Reader<std::vector<Item>>> read,
                  FieldKind kind = FieldKind::objects) {
    Reader<T> read_member;
    if (read) {
      read_member = [=](Context& ctx, const json& v, const Path& p, T& out) {
        read(ctx, v, p, std::invoke(get, out));
      };
    }
    return add({key, kind, 0, 0, std::make_shared<ObjectDoc>(item_fields().doc())},
               std::move(read_member), [=](const T& in) {
                 DumpJson list = DumpJson::array();
                 for (const Item& item : std::invoke(get, in))
                   list.push_back(dump_fields(item_fields(), item));
                 return list;
               });
  }

  /// An irregular field: its own reader and dumper (a null dump result leaves the key out).
  Fields& custom(std::string_view key, FieldKind kind, Reader<T> read, Dumper<T> dump,
                 std::int64_t min = 0, std::int64_t max = 0) {
    return add({key, kind, min, max}, std::move(read), std::move(dump));
  }

  /// An irregular field holding a described object or array of them (`kind` object or
  /// objects): its own reader and dumper, `item_fields` for the description. For a field whose
  /// reading needs other members of T (upstreams take their defaults from upstream) or whose
  /// dump depends on them.
  template <class Item>
  Fields& custom(std::string_view key, FieldKind kind, const Fields<Item>& (*item_fields)(),
                 Reader<T> read, Dumper<T> dump) {
    return add({key, kind, 0, 0, std::make_shared<ObjectDoc>(item_fields().doc())}, std::move(read),
               std::move(dump));
  }

  /// Every field of `inner`, in its order, read into and dumped from the member `get` names: a
  /// backend takes the fields of the upstream table for its own UpstreamConfig.
  template <class Get, class Inner>
  Fields& embed(Get get, const Fields<Inner>& inner) {
    for (const Field<Inner>& f : inner.list()) {
      Reader<T> read;
      Dumper<T> dump;
      if (f.read) {
        read = [get, inner_read = f.read](Context& ctx, const json& v, const Path& p, T& out) {
          inner_read(ctx, v, p, std::invoke(get, out));
        };
      }
      if (f.dump) {
        dump = [get, inner_dump = f.dump](const T& in) { return inner_dump(std::invoke(get, in)); };
      }
      add(f.doc, std::move(read), std::move(dump));
    }
    return *this;
  }

  /// A key known only to explain, with `message`, why it is not allowed here.
  Fields& refused(std::string_view key, std::string_view message) {
    return add(
        {key, FieldKind::refused},
        [=](Context& ctx, const json&, const Path& p, T&) { ctx.error(p, std::string(message)); },
        {});
  }

  const std::vector<Field<T>>& list() const { return fields_; }

  ObjectDoc doc() const {
    ObjectDoc out;
    for (const Field<T>& f : fields_)
      out.fields.push_back(f.doc);
    return out;
  }

 private:
  Fields& add(FieldDoc doc, Reader<T> read, Dumper<T> dump) {
    fields_.push_back({std::move(doc), std::move(read), std::move(dump)});
    return *this;
  }

  std::vector<Field<T>> fields_;
};

/// Reads every field of `fields` that has a reader, in table order, from the object `r` reads.
template <class T>
void read_fields(ObjectReader& r, const Fields<T>& fields, T& out) {
  for (const Field<T>& f : fields.list()) {
    if (!f.read) continue;  // the section reads it after this
    r.field(f.doc.key, [&](const json& v, const Path& p) { f.read(r.context(), v, p, out); });
  }
}

/// `value` as the effective config writes it: every field with a dumper, in table order.
template <class T>
DumpJson dump_fields(const Fields<T>& fields, const T& value) {
  DumpJson out = DumpJson::object();
  for (const Field<T>& f : fields.list()) {
    if (!f.dump) continue;
    DumpJson v = f.dump(value);
    if (!v.is_null()) out[std::string(f.doc.key)] = std::move(v);
  }
  return out;
}

}  // namespace sluice::config::detail
