// spdlog setup for the default and access loggers (see logging.hpp). Each logger has its own
// sink, because in spdlog the formatter belongs to the sink; two sinks on stderr do not interleave
// within a line (each line is one fwrite on the locked FILE).
#include "sluice/obs/logging.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>

namespace sluice::obs {
namespace {

struct AccessLogger {
  std::shared_ptr<spdlog::logger> logger;
  config::LogFormat format = config::LogFormat::text;
};

std::atomic<std::shared_ptr<const AccessLogger>> g_access;

constexpr const char* kTimePattern = "%Y-%m-%dT%H:%M:%S.%eZ";

// %* in a pattern: the message as a JSON string literal, quotes included.
class JsonMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string escaped = nlohmann::json(std::string(msg.payload.data(), msg.payload.size()))
                                    .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(escaped.data(), escaped.data() + escaped.size());
  }
  std::unique_ptr<spdlog::custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

spdlog::level::level_enum to_spdlog(config::LogLevel level) {
  switch (level) {
    case config::LogLevel::trace:
      return spdlog::level::trace;
    case config::LogLevel::debug:
      return spdlog::level::debug;
    case config::LogLevel::info:
      return spdlog::level::info;
    case config::LogLevel::warn:
      return spdlog::level::warn;
    case config::LogLevel::error:
      return spdlog::level::err;
    case config::LogLevel::critical:
      return spdlog::level::critical;
    case config::LogLevel::off:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

spdlog::sink_ptr make_sink(std::ostream* out) {
  if (out != nullptr) return std::make_shared<spdlog::sinks::ostream_sink_mt>(*out, true);
  return std::make_shared<spdlog::sinks::stderr_sink_mt>();
}

}  // namespace

void init_logging(const config::LogConfig& config, std::ostream* out) {
  auto app_sink = make_sink(out);
  std::string pattern =
      config.format == config::LogFormat::json
          ? std::string("{\"time\":\"") + kTimePattern + "\",\"level\":\"%l\",\"msg\":%*}"
          : std::string(kTimePattern) + " %l %v";
  auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  formatter->add_flag<JsonMessageFlag>('*').set_pattern(pattern);
  app_sink->set_formatter(std::move(formatter));
  auto app = std::make_shared<spdlog::logger>("sluice", app_sink);
  app->set_level(to_spdlog(config.level));
  app->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(app);

  if (!config.access_log) {
    g_access.store(nullptr);
    return;
  }
  auto access_sink = make_sink(out);
  access_sink->set_formatter(
      std::make_unique<spdlog::pattern_formatter>("%v", spdlog::pattern_time_type::utc));
  auto access = std::make_shared<spdlog::logger>("access", access_sink);
  access->set_level(spdlog::level::info);
  g_access.store(std::make_shared<const AccessLogger>(AccessLogger{access, config.format}));
}

void log_access(const AccessRecord& record) {
  std::shared_ptr<const AccessLogger> access = g_access.load();
  if (!access) return;
  const std::string line = format_access_line(record, access->format);
  access->logger->info(std::string_view(line));
}

bool access_log_enabled() {
  return g_access.load() != nullptr;
}

void flush_logs() {
  spdlog::default_logger()->flush();
  if (auto access = g_access.load()) access->logger->flush();
}

}  // namespace sluice::obs
