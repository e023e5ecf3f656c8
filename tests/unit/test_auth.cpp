// API keys: hashing, presenting, identity from the key, priority clamping, the admin token.
#include <doctest/doctest.h>

#include <set>

#include "sluice/auth/auth.hpp"

using namespace sluice;
using auth::Authenticator;

namespace {

config::AuthConfig two_keys() {
  config::AuthConfig c;
  c.keys.push_back({.name = "acme",
                    .sha256 = auth::sha256_hex("sk-acme"),
                    .user = "acme",
                    .tier = "paid",
                    .max_priority = 8});
  c.keys.push_back({.name = "gw",
                    .sha256 = auth::sha256_hex("sk-gateway"),
                    .user = "gateway",
                    .tier = "free",
                    .trusted_gateway = true});
  return c;
}

}  // namespace

TEST_CASE("auth: SHA-256 matches the standard test vectors") {
  CHECK(auth::sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(auth::sha256_hex("abc") ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("auth: generated keys are long, distinct and URL-safe") {
  std::set<std::string> seen;
  for (int i = 0; i < 50; ++i) {
    std::string key = auth::generate_key();
    CHECK(key.rfind("sk-sluice-", 0) == 0);
    CHECK(key.size() == 10 + 43);
    CHECK(key.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                                10) == std::string::npos);
    CHECK(seen.insert(key).second);
  }
}

TEST_CASE("auth: the key comes from a bearer token or X-Api-Key") {
  CHECK(auth::presented_key("Bearer sk-1", "") == "sk-1");
  CHECK(auth::presented_key("bearer   sk-1  ", "") == "sk-1");
  CHECK(auth::presented_key("BEARER sk-1", "sk-2") == "sk-1");
  CHECK(auth::presented_key("", " sk-2 ") == "sk-2");
  CHECK(auth::presented_key("Basic dXNlcjpwdw==", "sk-2") == "sk-2");
  CHECK(auth::presented_key("Bearer", "") == "");
  CHECK(auth::presented_key("Bearersk-1", "") == "");
  CHECK(auth::presented_key("", "").empty());
}

TEST_CASE("auth: valid, missing and wrong keys") {
  Authenticator a(two_keys());
  CHECK(a.enabled());
  auto ok = a.authenticate("Bearer sk-acme", "");
  CHECK(ok.status == Authenticator::Status::ok);
  REQUIRE(ok.key);
  CHECK(ok.key->name == "acme");
  CHECK(a.authenticate("", "sk-gateway").key->name == "gw");
  CHECK(a.authenticate("", "").status == Authenticator::Status::missing);
  CHECK(a.authenticate("Bearer sk-wrong", "").status == Authenticator::Status::invalid);
  CHECK(a.authenticate("Bearer SK-ACME", "").status == Authenticator::Status::invalid);
  CHECK(a.authenticate("", std::string(100'000, 'x')).status == Authenticator::Status::invalid);
  CHECK_FALSE(Authenticator(config::AuthConfig{}).enabled());
}

TEST_CASE("auth: user and tier come from the key unless it is a trusted gateway") {
  config::AuthConfig c = two_keys();
  auto acme = auth::identity(c.keys[0], "mallory", "enterprise");
  CHECK(acme.user == "acme");
  CHECK(acme.tier == "paid");
  auto via_gateway = auth::identity(c.keys[1], "alice", "paid");
  CHECK(via_gateway.user == "alice");
  CHECK(via_gateway.tier == "paid");
  auto gateway_default = auth::identity(c.keys[1], "", "");
  CHECK(gateway_default.user == "gateway");
  CHECK(gateway_default.tier == "free");
}

TEST_CASE("auth: X-Priority is clamped to the key's maximum, ignored without one") {
  config::AuthConfig c = two_keys();
  CHECK(auth::allowed_priority(c.keys[0], 1'000'000.0) == 8.0);
  CHECK(auth::allowed_priority(c.keys[0], 2.0) == 2.0);
  CHECK_FALSE(auth::allowed_priority(c.keys[0], std::nullopt));
  CHECK_FALSE(auth::allowed_priority(c.keys[1], 5.0));
}

TEST_CASE("auth: the admin token") {
  config::AuthConfig open;
  CHECK(Authenticator(open).admin_allowed(""));
  config::AuthConfig locked;
  locked.admin_token_sha256 = auth::sha256_hex("admin-secret");
  Authenticator a(locked);
  CHECK_FALSE(a.enabled());  // an admin token alone does not require API keys
  CHECK(a.admin_allowed("Bearer admin-secret"));
  CHECK_FALSE(a.admin_allowed(""));
  CHECK_FALSE(a.admin_allowed("Bearer admin-secre"));
  CHECK_FALSE(a.admin_allowed("admin-secret"));
}
