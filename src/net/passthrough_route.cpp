// Fleet routing rules of pass-through requests. See passthrough_route.hpp.
#include "passthrough_route.hpp"

#include <array>
#include <nlohmann/json.hpp>

namespace sluice::net {
namespace {

constexpr std::string_view kModelsPrefix = "/v1/models/";
constexpr std::string_view kBlobsPrefix = "/api/blobs/";
constexpr std::array<std::string_view, 5> kManagementPaths = {
    "/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete"};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string joined(std::span<const std::string> names) {
  std::string out;
  for (const std::string& name : names) {
    if (!out.empty()) out.append(", ");
    out.append(name);
  }
  return out;
}

}  // namespace

std::optional<std::string> percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;
    const int high = hex_value(text[i + 1]);
    const int low = hex_value(text[i + 2]);
    if (high < 0 || low < 0) return std::nullopt;
    out.push_back(static_cast<char>(high * 16 + low));
    i += 2;
  }
  return out;
}

PassthroughPlan plan_passthrough(std::string_view method, std::string_view target) {
  const std::string_view path = target.substr(0, target.find('?'));
  const bool get = method == "GET" || method == "HEAD";
  PassthroughPlan plan;
  if (get) {
    if (auto route = catalog_route("GET", path)) {
      plan.route = FleetRoute::catalog;
      plan.catalog = *route;
      return plan;
    }
    if (path.starts_with(kModelsPrefix) && path.size() > kModelsPrefix.size()) {
      std::optional<std::string> model = percent_decode(path.substr(kModelsPrefix.size()));
      if (model && !model->empty() && model->find('/') == std::string::npos) {
        plan.route = FleetRoute::by_model;
        plan.model = std::move(*model);
      }
      return plan;
    }
  }
  if (method == "POST" && path == "/api/show") {
    plan.route = FleetRoute::by_model;
    return plan;
  }
  for (std::string_view management : kManagementPaths) {
    if (path == management) plan.route = FleetRoute::management;
  }
  if (path.starts_with(kBlobsPrefix) && path.size() > kBlobsPrefix.size())
    plan.route = FleetRoute::management;
  return plan;
}

std::optional<std::string> show_model(std::string_view body) {
  const nlohmann::json doc = nlohmann::json::parse(body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return std::nullopt;
  for (const char* key : {"model", "name"}) {
    auto it = doc.find(key);
    if (it != doc.end() && it->is_string() && !it->get_ref<const std::string&>().empty())
      return it->get<std::string>();
  }
  return std::nullopt;
}

std::optional<std::size_t> choose_model_backend(std::span<const ModelCandidate> candidates) {
  std::optional<std::size_t> best;
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const ModelCandidate& c = candidates[i];
    if (!c.eligible) continue;
    if (!best) {
      best = i;
      continue;
    }
    const ModelCandidate& b = candidates[*best];
    if (c.resident != b.resident) {
      if (c.resident) best = i;
    } else if (c.in_flight < b.in_flight) {
      best = i;
    }
  }
  return best;
}

ManagementChoice choose_management_backend(std::string_view path,
                                           std::optional<std::string_view> header,
                                           std::span<const std::string> names) {
  ManagementChoice choice;
  if (header) {
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (names[i] == *header) {
        choice.index = i;
        return choice;
      }
    }
    choice.error = "unknown backend \"";
    choice.error.append(*header).append("\" in the X-Sluice-Backend header: set it to one of: ");
    choice.error.append(joined(names));
    choice.reason = "unknown_backend";
    return choice;
  }
  if (names.size() == 1) {
    choice.index = 0;
    return choice;
  }
  choice.error.append(path).append(
      " acts on one backend of the fleet: set the X-Sluice-Backend header to one of: ");
  choice.error.append(joined(names));
  choice.reason = "backend_required";
  return choice;
}

}  // namespace sluice::net
