// The addresses of upstream host names (see address_cache.hpp).
#include "address_cache.hpp"

#include <algorithm>

namespace sluice::net {

AddressCache::Entry* AddressCache::find(std::string_view host, std::uint16_t port) {
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const Entry& e) { return e.port == port && e.host == host; });
  return it == entries_.end() ? nullptr : &*it;
}

const AddressCache::Entry* AddressCache::find(std::string_view host, std::uint16_t port) const {
  return const_cast<AddressCache*>(this)->find(host, port);
}

std::optional<AddressCache::Endpoints> AddressCache::lookup(std::string_view host,
                                                            std::uint16_t port,
                                                            Clock::time_point now) const {
  const Entry* entry = find(host, port);
  if (!entry || now - entry->resolved_at >= kFreshFor || now < entry->resolved_at)
    return std::nullopt;
  return entry->endpoints;
}

void AddressCache::store(std::string_view host, std::uint16_t port, Endpoints endpoints,
                         Clock::time_point now) {
  if (endpoints.empty()) return;
  if (Entry* entry = find(host, port)) {
    // Keep the address that worked first if it is still among the new ones.
    if (!entry->endpoints.empty()) {
      auto known = std::find(endpoints.begin(), endpoints.end(), entry->endpoints.front());
      if (known != endpoints.end()) std::rotate(endpoints.begin(), known, known + 1);
    }
    entry->endpoints = std::move(endpoints);
    entry->resolved_at = now;
    return;
  }
  if (entries_.size() >= kMaxEntries) {
    entries_.erase(std::min_element(
        entries_.begin(), entries_.end(),
        [](const Entry& a, const Entry& b) { return a.resolved_at < b.resolved_at; }));
  }
  entries_.push_back(Entry{std::string(host), port, std::move(endpoints), now});
}

void AddressCache::connected(std::string_view host, std::uint16_t port,
                             const boost::asio::ip::tcp::endpoint& endpoint) {
  Entry* entry = find(host, port);
  if (!entry) return;
  auto it = std::find(entry->endpoints.begin(), entry->endpoints.end(), endpoint);
  if (it != entry->endpoints.end()) std::rotate(entry->endpoints.begin(), it, it + 1);
}

void AddressCache::failed(std::string_view host, std::uint16_t port) {
  entries_.erase(std::remove_if(entries_.begin(), entries_.end(),
                                [&](const Entry& e) { return e.port == port && e.host == host; }),
                 entries_.end());
}

}  // namespace sluice::net
