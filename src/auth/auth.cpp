// API key checks. See auth.hpp.
#include "sluice/auth/auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <stdexcept>

namespace sluice::auth {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x | 0x20) == (y | 0x20);
         });
}

// The token of "Bearer TOKEN", or "" when the header is not a bearer credential.
std::string_view bearer_token(std::string_view authorization) {
  authorization = trim(authorization);
  constexpr std::string_view kScheme = "bearer";
  if (authorization.size() <= kScheme.size() ||
      !iequals(authorization.substr(0, kScheme.size()), kScheme) ||
      authorization[kScheme.size()] != ' ') {
    return {};
  }
  return trim(authorization.substr(kScheme.size() + 1));
}

}  // namespace

std::string sha256_hex(std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  if (EVP_Digest(data.data(), data.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("SHA-256 failed");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * length);
  for (unsigned int i = 0; i < length; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 0x0f]);
  }
  return hex;
}

std::string generate_key() {
  std::array<unsigned char, 32> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    throw std::runtime_error("the OS random generator failed");
  }
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string key = "sk-sluice-";
  // base64url without padding: 32 bytes -> 43 characters.
  std::uint32_t buffer = 0;
  int bits = 0;
  for (unsigned char b : bytes) {
    buffer = (buffer << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      key.push_back(kAlphabet[(buffer >> bits) & 0x3f]);
    }
  }
  if (bits > 0) key.push_back(kAlphabet[(buffer << (6 - bits)) & 0x3f]);
  return key;
}

std::string_view presented_key(std::string_view authorization, std::string_view x_api_key) {
  std::string_view token = bearer_token(authorization);
  if (!token.empty()) return token;
  return trim(x_api_key);
}

Authenticator::Authenticator(const config::AuthConfig& config)
    : admin_token_sha256_(config.admin_token_sha256) {
  for (const config::ApiKey& key : config.keys)
    by_hash_.emplace(key.sha256, key);
}

Authenticator::Result Authenticator::authenticate(std::string_view authorization,
                                                  std::string_view x_api_key) const {
  std::string_view key = presented_key(authorization, x_api_key);
  if (key.empty()) return {Status::missing, nullptr};
  // Bounded: a header is at most limits.max_header_bytes anyway; hashing it is cheap.
  auto it = by_hash_.find(sha256_hex(key));
  if (it == by_hash_.end()) return {Status::invalid, nullptr};
  return {Status::ok, &it->second};
}

bool Authenticator::admin_allowed(std::string_view authorization) const {
  if (admin_token_sha256_.empty()) return true;
  std::string_view token = bearer_token(authorization);
  if (token.empty()) return false;
  std::string digest = sha256_hex(token);
  return digest.size() == admin_token_sha256_.size() &&
         CRYPTO_memcmp(digest.data(), admin_token_sha256_.data(), digest.size()) == 0;
}

Identity identity(const config::ApiKey& key, std::string_view client_user,
                  std::string_view client_tier) {
  Identity id{key.user, key.tier};
  if (key.trusted_gateway) {
    if (!client_user.empty()) id.user = client_user;
    if (!client_tier.empty()) id.tier = client_tier;
  }
  return id;
}

std::optional<double> allowed_priority(const config::ApiKey& key, std::optional<double> requested) {
  if (!requested || !key.max_priority) return std::nullopt;
  return std::min(*requested, *key.max_priority);
}

}  // namespace sluice::auth
