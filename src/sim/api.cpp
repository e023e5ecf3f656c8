// Ollama's request validation and the responses of GPU routes (see api.hpp; the catalog and
// the cheap routes are in catalog.cpp). Field order and omitted zero fields follow Ollama's Go
// structs (api.GenerateResponse, api.ChatResponse, openai.*).
#include "api.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "duration.hpp"
#include "sluice/sim/model.hpp"

namespace sluice::sim {
namespace {

using ojson = nlohmann::ordered_json;
using json = nlohmann::json;

constexpr std::size_t kMaxContextInts = 4096;
ApiError bad(std::string message) {
  return ApiError{400, std::move(message)};
}

// Reads an optional field of a given JSON type; sets `err` when present with another type.
const json* field(const json& obj, const char* name) {
  auto it = obj.find(name);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

std::optional<ApiError> want_string(const json& obj, const char* name, std::string& out) {
  if (const json* v = field(obj, name)) {
    if (!v->is_string()) return bad(std::string("field \"") + name + "\" must be a string");
    out = v->get<std::string>();
  }
  return std::nullopt;
}

std::optional<ApiError> want_bool(const json& obj, const char* name, bool& out) {
  if (const json* v = field(obj, name)) {
    if (!v->is_boolean()) return bad(std::string("field \"") + name + "\" must be a boolean");
    out = v->get<bool>();
  }
  return std::nullopt;
}

// Integer that may arrive as 100 or 100.0 (Go decodes options into float64 first).
std::optional<ApiError> want_int(const json& obj, const char* name, const char* what,
                                 std::optional<std::int64_t>& out) {
  if (const json* v = field(obj, name)) {
    if (v->is_number_integer()) {
      out = v->get<std::int64_t>();
    } else if (v->is_number_float()) {
      const double d = v->get<double>();
      if (d != double(std::int64_t(d)) || d > 9e18 || d < -9e18)
        return bad(std::string(what) + " \"" + name + "\" must be an integer");
      out = std::int64_t(d);
    } else {
      return bad(std::string(what) + " \"" + name + "\" must be an integer");
    }
  }
  return std::nullopt;
}

std::optional<ApiError> apply_num_predict(std::optional<std::int64_t> n, SimRequest& req) {
  if (n && *n > 0) req.num_predict = int(std::min<std::int64_t>(*n, 1'000'000));
  return std::nullopt;
}

// keep_alive as Ollama's api.Duration reads it: a number of seconds or a Go duration string;
// negative means forever.
std::optional<ApiError> want_keep_alive(const json& obj, SimRequest& req) {
  const json* v = field(obj, "keep_alive");
  if (!v) return std::nullopt;
  if (v->is_number()) {
    req.keep_alive_ns = seconds_to_ns(v->get<double>());
  } else if (v->is_string()) {
    auto parsed = parse_go_duration(v->get<std::string>());
    if (auto* why = std::get_if<std::string>(&parsed)) return bad(*why);
    req.keep_alive_ns = std::get<std::int64_t>(parsed);
  } else {
    return bad("field \"keep_alive\" must be a duration string or a number of seconds");
  }
  if (*req.keep_alive_ns < 0) req.keep_alive_ns = kForever;
  return std::nullopt;
}

// Text of a message's content: a string, or OpenAI's array of {"type":"text","text":...} parts.
std::optional<ApiError> message_text(const json& content, bool openai, std::string& out) {
  if (content.is_null()) return std::nullopt;
  if (content.is_string()) {
    out += content.get<std::string>();
    return std::nullopt;
  }
  if (openai && content.is_array()) {
    for (const auto& part : content) {
      if (!part.is_object()) return bad("invalid message format");
      const json* type = field(part, "type");
      if (type && type->is_string() && type->get<std::string>() == "text") {
        const json* text = field(part, "text");
        if (!text || !text->is_string()) return bad("invalid message format");
        out += text->get<std::string>();
      }
    }
    return std::nullopt;
  }
  return bad("field \"content\" of a message must be a string");
}

std::optional<ApiError> parse_messages(const json& obj, bool openai, SimRequest& req) {
  const json* msgs = field(obj, "messages");
  if (!msgs) return std::nullopt;
  if (!msgs->is_array()) return bad("field \"messages\" must be an array");
  for (const auto& m : *msgs) {
    if (!m.is_object()) return bad("each message must be an object");
    std::string role;
    if (auto e = want_string(m, "role", role)) return e;
    std::string text;
    if (const json* c = field(m, "content"))
      if (auto e = message_text(*c, openai, text)) return e;
    req.prompt_chars += text.size();
    req.seed_text += role;
    req.seed_text += ": ";
    req.seed_text += text;
    req.seed_text += '\n';
  }
  req.load_only = msgs->empty();
  return std::nullopt;
}

std::optional<ApiError> parse_inputs(const json& obj, Route route, SimRequest& req) {
  if (route == Route::embeddings) {
    std::string prompt;
    if (auto e = want_string(obj, "prompt", prompt)) return e;
    if (!prompt.empty()) req.inputs.push_back(prompt);
  } else {
    const json* input = field(obj, "input");
    if (route == Route::v1_embeddings && (!input || (input->is_array() && input->empty())))
      return bad("invalid input");
    if (input && input->is_string()) {
      const auto s = input->get<std::string>();
      if (!s.empty() || route == Route::v1_embeddings) req.inputs.push_back(s);
    } else if (input && input->is_array()) {
      for (const auto& item : *input) {
        if (!item.is_string())
          return bad("invalid input type: input must be a string or an array of strings");
        req.inputs.push_back(item.get<std::string>());
      }
    } else if (input) {
      return bad("invalid input type: input must be a string or an array of strings");
    }
  }
  for (const auto& s : req.inputs) {
    req.prompt_chars += s.size();
    req.seed_text += s;
    req.seed_text += '\n';
  }
  req.load_only = req.inputs.empty();
  return std::nullopt;
}

std::optional<ApiError> parse_body(Route route, const json& obj, SimRequest& req) {
  const bool openai = is_openai(route);
  req.stream = !openai;  // native routes stream by default, /v1 routes do not
  if (auto e = want_bool(obj, "stream", req.stream)) return e;

  if (route == Route::v1_chat) {
    const json* msgs = field(obj, "messages");
    if (!msgs || (msgs->is_array() && msgs->empty())) return bad("[] is too short - 'messages'");
  }
  if (auto e = want_string(obj, "model", req.model)) return e;

  switch (route) {
    case Route::generate: {
      std::string prompt, system;
      if (auto e = want_string(obj, "prompt", prompt)) return e;
      if (auto e = want_string(obj, "system", system)) return e;
      req.prompt_chars = prompt.size() + system.size();
      req.seed_text = system + "\n" + prompt;
      req.load_only = prompt.empty();
      break;
    }
    case Route::v1_completions: {
      std::string prompt;
      if (auto e = want_string(obj, "prompt", prompt)) return e;
      req.prompt_chars = prompt.size();
      req.seed_text = prompt;
      req.load_only = prompt.empty();
      break;
    }
    case Route::chat:
    case Route::v1_chat:
      if (auto e = parse_messages(obj, openai, req)) return e;
      break;
    case Route::embed:
    case Route::embeddings:
    case Route::v1_embeddings:
      if (auto e = parse_inputs(obj, route, req)) return e;
      break;
  }

  std::optional<std::int64_t> num_predict, seed;
  if (openai) {
    if (auto e = want_int(obj, "max_tokens", "field", num_predict)) return e;
    if (!num_predict)
      if (auto e = want_int(obj, "max_completion_tokens", "field", num_predict)) return e;
    if (auto e = want_int(obj, "seed", "field", seed)) return e;
    if (const json* so = field(obj, "stream_options")) {
      if (!so->is_object()) return bad("field \"stream_options\" must be an object");
      if (auto e = want_bool(*so, "include_usage", req.include_usage)) return e;
    }
  } else if (const json* options = field(obj, "options")) {
    if (!options->is_object()) return bad("field \"options\" must be an object");
    if (auto e = want_int(*options, "num_predict", "option", num_predict)) return e;
    if (auto e = want_int(*options, "seed", "option", seed)) return e;
  }
  apply_num_predict(num_predict, req);
  req.seed = seed;
  if (auto e = want_keep_alive(obj, req)) return e;
  req.unload = req.load_only && req.keep_alive_ns == 0;
  return std::nullopt;
}

ojson usage_json(const Metrics& m) {
  return ojson{{"prompt_tokens", m.prompt_eval_count},
               {"completion_tokens", m.eval_count},
               {"total_tokens", m.prompt_eval_count + m.eval_count}};
}

void put_metrics(ojson& j, const Metrics& m) {
  auto put = [&](const char* name, std::int64_t v) {
    if (v != 0) j[name] = v;
  };
  put("total_duration", m.total_ns);
  put("load_duration", m.load_ns);
  put("prompt_eval_count", m.prompt_eval_count);
  put("prompt_eval_duration", m.prompt_eval_ns);
  put("eval_count", m.eval_count);
  put("eval_duration", m.eval_ns);
}

ojson context_ints(std::uint64_t seed, const Metrics& m) {
  const std::size_t n =
      std::min<std::size_t>(kMaxContextInts, std::size_t(m.prompt_eval_count + m.eval_count));
  Rng rng(seed);
  ojson arr = ojson::array();
  for (std::size_t i = 0; i < n; ++i)
    arr.push_back(1 + int(rng.next() % 32000));
  return arr;
}

std::int64_t unix_seconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

ojson native_object(const ResponseContext& ctx, std::string_view text,
                    std::chrono::system_clock::time_point at) {
  ojson j;
  j["model"] = ctx.request->model;
  j["created_at"] = rfc3339(at);
  if (ctx.request->route == Route::chat) {
    j["message"] = ojson{{"role", "assistant"}, {"content", text}};
  } else {
    j["response"] = text;
  }
  return j;
}

ojson openai_chunk(const ResponseContext& ctx, std::string_view text,
                   std::optional<std::string_view> finish) {
  const auto& req = *ctx.request;
  ojson j;
  j["id"] = ctx.openai_id;
  if (req.route == Route::v1_chat) {
    j["object"] = "chat.completion.chunk";
    j["created"] = unix_seconds(ctx.created);
    j["model"] = req.model;
    j["system_fingerprint"] = "fp_ollama";
    ojson choice{{"index", 0},
                 {"delta", ojson{{"role", "assistant"}, {"content", text}}},
                 {"finish_reason", finish ? ojson(*finish) : ojson(nullptr)}};
    j["choices"] = ojson::array({choice});
  } else {
    j["object"] = "text_completion";
    j["created"] = unix_seconds(ctx.created);
    ojson choice{
        {"text", text}, {"index", 0}, {"finish_reason", finish ? ojson(*finish) : ojson(nullptr)}};
    j["choices"] = ojson::array({choice});
    j["model"] = req.model;
    j["system_fingerprint"] = "fp_ollama";
    if (req.include_usage) j["usage"] = usage_json(Metrics{});
  }
  return j;
}

std::string sse(const ojson& j) {
  return "data: " + j.dump() + "\n\n";
}

}  // namespace

std::string_view route_path(Route route) {
  switch (route) {
    case Route::generate:
      return "/api/generate";
    case Route::chat:
      return "/api/chat";
    case Route::embed:
      return "/api/embed";
    case Route::embeddings:
      return "/api/embeddings";
    case Route::v1_chat:
      return "/v1/chat/completions";
    case Route::v1_completions:
      return "/v1/completions";
    case Route::v1_embeddings:
      return "/v1/embeddings";
  }
  return "";
}

bool is_openai(Route route) {
  return route == Route::v1_chat || route == Route::v1_completions || route == Route::v1_embeddings;
}

bool is_embedding(Route route) {
  return route == Route::embed || route == Route::embeddings || route == Route::v1_embeddings;
}

std::variant<SimRequest, ApiError> parse_request(Route route, std::string_view body,
                                                 const Catalog& catalog) {
  const bool blank = std::all_of(
      body.begin(), body.end(), [](char c) { return std::isspace(static_cast<unsigned char>(c)); });
  if (blank) return bad("missing request body");
  json obj;
  try {
    obj = json::parse(body);
  } catch (const json::parse_error& e) {
    return bad("invalid JSON in request body at byte " + std::to_string(e.byte));
  }
  if (!obj.is_object()) return bad("request body must be a JSON object");
  SimRequest req;
  req.route = route;
  if (auto e = parse_body(route, obj, req)) return *e;
  if (req.model.empty()) return bad("model is required");
  auto resolved = catalog.resolve(req.model);
  if (!resolved) return ApiError{404, "model '" + req.model + "' not found"};
  req.resolved = *resolved;
  return req;
}

std::string native_error_body(std::string_view message) {
  return ojson{{"error", message}}.dump();
}

std::string openai_error_body(int status, std::string_view message) {
  const char* type = status == 400   ? "invalid_request_error"
                     : status == 404 ? "not_found_error"
                                     : "api_error";
  ojson err{{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  return ojson{{"error", err}}.dump() + "\n";
}

std::string error_body(Route route, int status, std::string_view message) {
  return is_openai(route) ? openai_error_body(status, message) : native_error_body(message);
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
  const auto ns_total =
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  return rfc3339_at(ns_total / 1'000'000'000, ns_total % 1'000'000'000);
}

std::string rfc3339_forever(std::chrono::system_clock::time_point now) {
  // Go: now.Add(math.MaxInt64), about 292 years on (beyond what a time_point holds).
  const auto ns_total =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  constexpr std::int64_t kMaxSecs = 9'223'372'036, kMaxNanos = 854'775'807;
  std::int64_t secs = ns_total / 1'000'000'000 + kMaxSecs;
  std::int64_t nanos = ns_total % 1'000'000'000 + kMaxNanos;
  if (nanos >= 1'000'000'000) {
    nanos -= 1'000'000'000;
    ++secs;
  }
  return rfc3339_at(secs, nanos);
}

std::string rfc3339_at(std::int64_t secs, std::int64_t nanos) {
  if (nanos < 0) {
    nanos += 1'000'000'000;
    --secs;
  }
  const std::time_t tt = std::time_t(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out = buf;
  if (nanos != 0) {
    char frac[32];
    std::snprintf(frac, sizeof frac, ".%09lld", static_cast<long long>(nanos));
    std::string f = frac;
    while (f.back() == '0')
      f.pop_back();
    out += f;
  }
  return out + "Z";
}

std::string http_date(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

std::string stream_chunk(const ResponseContext& ctx, std::string_view text,
                         std::chrono::system_clock::time_point at) {
  if (is_openai(ctx.request->route)) return sse(openai_chunk(ctx, text, std::nullopt));
  ojson j = native_object(ctx, text, at);
  j["done"] = false;
  return j.dump() + "\n";
}

std::string stream_final(const ResponseContext& ctx, std::string_view done_reason,
                         const Metrics& metrics, std::chrono::system_clock::time_point at,
                         std::uint64_t context_seed) {
  const auto& req = *ctx.request;
  if (is_openai(req.route)) {
    ojson last = openai_chunk(ctx, "", done_reason);
    std::string out = sse(last);
    if (req.include_usage) {
      last["choices"] = ojson::array();
      last["usage"] = usage_json(metrics);
      out += sse(last);
    }
    return out + "data: [DONE]\n\n";
  }
  ojson j = native_object(ctx, "", at);
  if (req.route == Route::chat) {
    j["done_reason"] = done_reason;
    j["done"] = true;
  } else {
    j["done"] = true;
    j["done_reason"] = done_reason;
    j["context"] = context_ints(context_seed, metrics);
  }
  put_metrics(j, metrics);
  return j.dump() + "\n";
}

std::string stream_error(const ResponseContext& ctx, std::string_view message) {
  if (is_openai(ctx.request->route)) {
    ojson err{{"message", message}, {"type", "api_error"}, {"param", nullptr}, {"code", nullptr}};
    return sse(ojson{{"error", err}});
  }
  return native_error_body(message) + "\n";
}

std::string complete_body(const ResponseContext& ctx, std::string_view text,
                          std::string_view done_reason, const Metrics& metrics,
                          std::chrono::system_clock::time_point at, std::uint64_t context_seed) {
  const auto& req = *ctx.request;
  if (req.route == Route::v1_chat) {
    ojson j;
    j["id"] = ctx.openai_id;
    j["object"] = "chat.completion";
    j["created"] = unix_seconds(at);
    j["model"] = req.model;
    j["system_fingerprint"] = "fp_ollama";
    ojson choice{{"index", 0},
                 {"message", ojson{{"role", "assistant"}, {"content", text}}},
                 {"finish_reason", done_reason}};
    j["choices"] = ojson::array({choice});
    j["usage"] = usage_json(metrics);
    return j.dump() + "\n";
  }
  if (req.route == Route::v1_completions) {
    ojson j;
    j["id"] = ctx.openai_id;
    j["object"] = "text_completion";
    j["created"] = unix_seconds(at);
    j["model"] = req.model;
    j["system_fingerprint"] = "fp_ollama";
    ojson choice{{"text", text}, {"index", 0}, {"finish_reason", done_reason}};
    j["choices"] = ojson::array({choice});
    j["usage"] = usage_json(metrics);
    return j.dump() + "\n";
  }
  ojson j = native_object(ctx, text, at);
  if (req.route == Route::chat) {
    j["done_reason"] = done_reason;
    j["done"] = true;
  } else {
    j["done"] = true;
    j["done_reason"] = done_reason;
    j["context"] = context_ints(context_seed, metrics);
  }
  put_metrics(j, metrics);
  return j.dump();
}

std::string load_body(const ResponseContext& ctx, std::chrono::system_clock::time_point at) {
  const auto& req = *ctx.request;
  const std::string_view reason = req.unload ? "unload" : "load";
  if (is_openai(req.route)) return complete_body(ctx, "", reason, Metrics{}, at, 0);
  ojson j = native_object(ctx, "", at);
  if (req.route == Route::chat) {
    j["done_reason"] = reason;
    j["done"] = true;
  } else {
    j["done"] = true;
    j["done_reason"] = reason;
  }
  return j.dump();
}

std::string embedding_body(const ResponseContext& ctx,
                           const std::vector<std::vector<float>>& vectors, const Metrics& metrics) {
  const auto& req = *ctx.request;
  auto vec = [](const std::vector<float>& v) {
    ojson arr = ojson::array();
    for (float x : v)
      arr.push_back(x);
    return arr;
  };
  if (req.route == Route::embeddings) {
    return ojson{{"embedding", vectors.empty() ? ojson::array() : vec(vectors.front())}}.dump();
  }
  if (req.route == Route::v1_embeddings) {
    ojson data = ojson::array();
    for (std::size_t i = 0; i < vectors.size(); ++i)
      data.push_back(ojson{{"object", "embedding"}, {"embedding", vec(vectors[i])}, {"index", i}});
    ojson j{{"object", "list"}, {"data", data}, {"model", req.model}};
    j["usage"] = ojson{{"prompt_tokens", metrics.prompt_eval_count},
                       {"total_tokens", metrics.prompt_eval_count}};
    return j.dump() + "\n";
  }
  ojson all = ojson::array();
  for (const auto& v : vectors)
    all.push_back(vec(v));
  ojson j{{"model", req.model}, {"embeddings", all}};
  if (metrics.total_ns) j["total_duration"] = metrics.total_ns;
  if (metrics.load_ns) j["load_duration"] = metrics.load_ns;
  if (metrics.prompt_eval_count) j["prompt_eval_count"] = metrics.prompt_eval_count;
  return j.dump();
}

std::string_view stream_content_type(Route route) {
  return is_openai(route) ? "text/event-stream" : "application/x-ndjson";
}

std::string_view complete_content_type(Route route) {
  return is_openai(route) ? "application/json" : "application/json; charset=utf-8";
}

std::variant<std::string, ApiError> parse_show_request(std::string_view body,
                                                       const Catalog& catalog) {
  json obj;
  try {
    obj = json::parse(body);
  } catch (const json::parse_error& e) {
    if (std::all_of(body.begin(), body.end(),
                    [](char c) { return std::isspace(static_cast<unsigned char>(c)); }))
      return bad("missing request body");
    return bad("invalid JSON in request body at byte " + std::to_string(e.byte));
  }
  if (!obj.is_object()) return bad("request body must be a JSON object");
  std::string name;
  if (auto e = want_string(obj, "model", name)) return *e;
  if (name.empty())
    if (auto e = want_string(obj, "name", name)) return *e;
  if (name.empty()) return bad("model is required");
  auto resolved = catalog.resolve(name);
  if (!resolved) return ApiError{404, "model '" + name + "' not found"};
  return *resolved;
}

std::variant<PullRequest, ApiError> parse_pull_request(std::string_view body,
                                                       const Catalog& catalog) {
  const json obj = json::parse(body, nullptr, false);
  if (obj.is_discarded()) return bad("invalid JSON in request body");
  if (!obj.is_object()) return bad("request body must be a JSON object");
  PullRequest pull;
  if (auto e = want_string(obj, "model", pull.name)) return *e;
  if (pull.name.empty())
    if (auto e = want_string(obj, "name", pull.name)) return *e;
  if (pull.name.empty()) return bad("model is required");
  if (auto e = want_bool(obj, "stream", pull.stream)) return *e;
  pull.resolved = catalog.resolve(pull.name);
  return pull;
}

}  // namespace sluice::sim
