// `"max_concurrency": "auto"` and the `auto_concurrency` bounds (issue 13), on an `upstreams[]`
// entry and on the single `upstream`. See sections.hpp; the controller is core/concurrency.hpp.
#include <cmath>
#include <string>

#include "sections.hpp"
#include "sluice/core/concurrency.hpp"
#include "sluice/core/limits.hpp"

namespace sluice::config::detail {
namespace {

void read_min_stream_speed(Context& ctx, const json& v, const Path& p, core::AutoConcurrency& a) {
  if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < 0) {
    ctx.error(p, "must be a number of tokens per second >= 0, not " +
                     (v.is_number() ? v.dump() : type_name(v)));
    return;
  }
  a.min_stream_tokens_per_s = v.get<double>();
}

}  // namespace

const Fields<core::AutoConcurrency>& auto_concurrency_fields() {
  using A = core::AutoConcurrency;
  static const Fields<A> fields =
      Fields<A>()
          .integer("min", &A::min, 1, core::kMaxAutoConcurrency)
          .integer("max", &A::max, 1, core::kMaxAutoConcurrency)
          .custom("min_stream_tokens_per_s", FieldKind::other, read_min_stream_speed,
                  [](const A& a) { return DumpJson(a.min_stream_tokens_per_s); });
  return fields;
}

void read_limit(Context& ctx, const json& v, const Path& p, std::int64_t* fixed,
                std::optional<core::AutoConcurrency>& automatic) {
  if (v.is_string() && v.get<std::string>() == "auto") {
    if (!automatic) automatic.emplace();
    return;
  }
  if (fixed == nullptr) {
    ctx.error(p, "must be \"auto\" (a single upstream's fixed limit is scheduler.max_concurrency)");
    return;
  }
  if (v.is_string()) {
    std::string message = "must be an integer from 1 to ";
    message += std::to_string(core::kMaxConcurrency);
    message += " or \"auto\", not ";
    message += v.dump();
    ctx.error(p, std::move(message));
    return;
  }
  std::int64_t value = 0;
  if (!read_int(ctx, v, p, 1, core::kMaxConcurrency, value)) return;
  *fixed = value;
  automatic.reset();
}

void read_auto_concurrency(Context& ctx, const json& v, const Path& p,
                           std::optional<core::AutoConcurrency>& automatic) {
  if (!automatic) {
    ctx.error(p, "only with \"max_concurrency\": \"auto\"");
    core::AutoConcurrency ignored;  // still read: its own mistakes are reported too
    ObjectReader r(ctx, v, p);
    read_fields(r, auto_concurrency_fields(), ignored);
    return;
  }
  ObjectReader r(ctx, v, p);
  read_fields(r, auto_concurrency_fields(), *automatic);
  r.finish();
  core::AutoConcurrency& a = *automatic;
  // min <= max: a default gives way to the bound the file sets.
  if (!r.has("max")) {
    a.max = std::max(a.max, a.min);
  } else if (!r.has("min")) {
    a.min = std::min(a.min, a.max);
  } else if (!r.failed("min") && !r.failed("max") && a.max < a.min) {
    ctx.error(p / "max", "must be at least min (" + std::to_string(a.min) + ")");
  }
}

DumpJson dump_limit(std::int64_t fixed, const std::optional<core::AutoConcurrency>& automatic) {
  return automatic ? DumpJson("auto") : DumpJson(fixed);
}

DumpJson dump_auto_concurrency(const std::optional<core::AutoConcurrency>& automatic) {
  if (!automatic) return DumpJson();  // a fixed limit: left out
  return dump_fields(auto_concurrency_fields(), *automatic);
}

}  // namespace sluice::config::detail
