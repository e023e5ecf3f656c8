// /readyz in a fleet. See readiness.hpp.
#include "sluice/app/readiness.hpp"

#include <string>

namespace sluice::app {

namespace {

std::string cut(std::string text) {
  if (text.size() > kReadinessReasonBytes) {
    text.resize(kReadinessReasonBytes);
    text.append("...");
  }
  return text;
}

}  // namespace

Readiness fleet_readiness(const core::Snapshot& snapshot) {
  Readiness out;
  std::size_t up = 0;
  std::string not_up;
  std::size_t named = 0;
  std::size_t unnamed = 0;
  for (const core::BackendView& b : snapshot.backends) {
    if (b.retired) continue;
    BackendReadiness entry;
    entry.name = b.name;
    entry.up = b.up;
    if (b.health) {
      entry.state = std::string(core::name(b.health->state));
      entry.reason = cut(b.health->reason);
    } else {
      entry.state = b.up ? "up" : "down";
    }
    if (b.up) {
      ++up;
    } else if (named < kReadinessNamed) {
      if (named++ > 0) not_up.append(", ");
      not_up.append(entry.name);
      not_up.append(" (");
      not_up.append(entry.state);
      if (!entry.reason.empty()) {
        not_up.append(": ");
        not_up.append(entry.reason);
      }
      not_up.append(")");
    } else {
      ++unnamed;
    }
    out.backends.push_back(std::move(entry));
  }
  out.ready = up > 0;
  if (out.backends.empty()) {
    out.detail = "no backend configured";
    return out;
  }
  out.detail = up > 0 ? std::to_string(up) : std::string("none");
  out.detail.append(" of ");
  out.detail.append(std::to_string(out.backends.size()));
  out.detail.append(out.backends.size() == 1 ? " backend up" : " backends up");
  if (!not_up.empty()) {
    out.detail.append("; not up: ");
    out.detail.append(not_up);
  }
  if (unnamed > 0) {
    out.detail.append(", and ");
    out.detail.append(std::to_string(unnamed));
    out.detail.append(" more");
  }
  return out;
}

}  // namespace sluice::app
