// API keys: who a request really is, decided by the operator's config rather than by headers a
// client may forge.
//
// When auth.keys is non-empty, every proxied request must present a key, either as
// `Authorization: Bearer KEY` or as `X-Api-Key: KEY`. The config stores only SHA-256 digests of
// keys; a presented key is hashed and looked up. A valid key fixes the request's user and tier
// (client X-User-Id / X-Tier are ignored unless the key is a trusted gateway) and caps the
// X-Priority it may claim. Keys are never logged and never forwarded upstream (the data path
// strips both headers); only the key's configured name appears in logs.
//
// Pure apart from hashing (OpenSSL libcrypto); no I/O. Thread-compatible: const methods only
// after construction.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "sluice/config/config.hpp"

namespace sluice::auth {

/// Lowercase hex SHA-256 of `data`.
std::string sha256_hex(std::string_view data);

/// A fresh random API key ("sk-sluice-" followed by 43 base64url characters, 256 bits from the
/// OS random generator).
std::string generate_key();

/// The key a request presents: the token of `Authorization: Bearer TOKEN` (scheme compared
/// case-insensitively) if there is one, else the value of X-Api-Key, else "". Surrounding spaces
/// are trimmed.
std::string_view presented_key(std::string_view authorization, std::string_view x_api_key);

class Authenticator {
 public:
  enum class Status { ok, missing, invalid };
  struct Result {
    Status status = Status::missing;
    const config::ApiKey* key = nullptr;  ///< when ok; points into the Authenticator
  };

  explicit Authenticator(const config::AuthConfig& config);

  /// True when requests must present a key.
  bool enabled() const { return !by_hash_.empty(); }

  /// Checks a request's credentials (the raw header values, "" when absent).
  Result authenticate(std::string_view authorization, std::string_view x_api_key) const;

  /// True when the admin listener may serve a request with this Authorization header: no admin
  /// token is configured, or `Bearer TOKEN` hashes to the configured digest (compared in
  /// constant time).
  bool admin_allowed(std::string_view authorization) const;
  /// True when an admin token is configured (then admin_allowed() checks it).
  bool has_admin_token() const { return !admin_token_sha256_.empty(); }

 private:
  std::unordered_map<std::string, config::ApiKey> by_hash_;
  std::string admin_token_sha256_;
};

/// The user and tier labels of a request made with `key`, given what the client sent (""
/// when absent): the key's own, unless the key is a trusted gateway and the client sent one.
struct Identity {
  std::string_view user;
  std::string_view tier;
};
Identity identity(const config::ApiKey& key, std::string_view client_user,
                  std::string_view client_tier);

/// The priority override a request made with `key` gets for its X-Priority (`requested`,
/// nullopt when absent): clamped to key.max_priority; ignored (nullopt) when the key has none.
std::optional<double> allowed_priority(const config::ApiKey& key, std::optional<double> requested);

}  // namespace sluice::auth
