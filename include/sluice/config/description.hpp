// The config's own description of itself: for every JSON object of the config file, the keys it
// knows, what kind of value each takes and the bounds of its integers. It is built from the same
// tables that drive the loader (src/config/fields.hpp) and dump_config(), so it is what the
// loader really does; tests check config/sluice.schema.json against it, and the docs can be.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

namespace sluice::config {

enum class FieldKind : std::uint8_t {
  integer,  ///< an integer in [minimum, maximum]
  number,   ///< a number in (minimum, maximum]
  boolean,
  string,    ///< a string, maybe with its own checks (a header name, an address, a URL, an enum)
  label,     ///< a label name: lowercase letters, digits, '_' and '-'
  duration,  ///< "250ms", "30s", ... or an integer of milliseconds
  object,    ///< a described object (FieldDoc::object)
  objects,   ///< an array of described objects
  object_or_objects,  ///< one described object or an array of them (scheduler.per_key)
  other,              ///< anything else, with a reader of its own: a list of paths, a matcher
  refused,  ///< known only to explain that it is not allowed here (default_workload.match)
};

struct ObjectDoc;

struct FieldDoc {
  std::string_view key;
  FieldKind kind = FieldKind::other;
  std::int64_t minimum = 0;  ///< integer: inclusive; number: exclusive
  std::int64_t maximum = 0;  ///< integer and number: inclusive
  /// object, objects, object_or_objects: the object's description.
  std::shared_ptr<const ObjectDoc> object;
};

struct ObjectDoc {
  std::vector<FieldDoc> fields;  ///< in the order the loader reads them and dump_config writes them

  /// nullptr when the object has no such key.
  const FieldDoc* find(std::string_view key) const {
    for (const FieldDoc& f : fields)
      if (f.key == key) return &f;
    return nullptr;
  }
};

/// The description of the whole file (the root object).
const ObjectDoc& config_description();

}  // namespace sluice::config
