// sluice-sim: an Ollama-compatible stand-in for one GPU serving a 7B model (see
// docs/simulator.md). Parses flags, binds, prints exactly one line
// `listening on http://HOST:PORT` to stdout (tests read it), then serves until SIGINT/SIGTERM.
// Logs go to stderr.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <charconv>
#include <cstdio>
#include <iostream>

#include "duration.hpp"
#include "faults.hpp"
#include "server.hpp"

namespace {

bool split_listen(const std::string& text, std::string& host, std::uint16_t& port) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  host = text.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  const std::string p = text.substr(colon + 1);
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
  if (ec != std::errc() || ptr != p.data() + p.size() || value > 65535) return false;
  port = std::uint16_t(value);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using sluice::sim::SimConfig;
  SimConfig cfg;
  CLI::App app{
      "sluice-sim: an Ollama-compatible simulator of one GPU serving a 7B model.\n"
      "Speaks /api/generate, /api/chat, /api/embed, /api/embeddings, /v1/chat/completions,\n"
      "/v1/completions, /v1/embeddings, /api/tags, /api/ps, /api/show, /api/pull, /api/version,\n"
      "/, /v1/models; plus GET /sim/stats, POST /sim/reset and GET/POST /sim/config (live\n"
      "changes). Per-request faults via the\n"
      "X-Sim-Fault header. Prints 'listening on http://HOST:PORT' once bound.",
      "sluice-sim"};
  std::string listen = "127.0.0.1:11434";
  std::string models = "mistral:latest";
  std::string scaling = sluice::sim::format_scaling(cfg.gpu.scaling);
  std::string fault_mix = "error-500,refuse,reset-mid-stream,error-line,slow-first-token=2000";
  std::string log_level = "info";
  std::string load_time = "0", keep_alive = "5m";
  long read_timeout = cfg.read_timeout.count(), idle_timeout = cfg.idle_timeout.count(),
       write_timeout = cfg.write_timeout.count(), hang_limit = cfg.hang_limit.count();

  app.add_option("--listen", listen, "HOST:PORT to listen on (port 0 picks a free port)")
      ->capture_default_str();
  app.add_option("--parallel", cfg.parallel,
                 "requests generating at once per model, like OLLAMA_NUM_PARALLEL; the rest "
                 "wait first come first served")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--max-queue", cfg.max_queue,
                 "waiting requests per model before answering 503 'server busy' (0 = unbounded, "
                 "as Ollama for a loaded model)")
      ->check(CLI::Range(std::size_t(0), std::size_t(10'000'000)))
      ->capture_default_str();
  app.add_option("--time-scale", cfg.time_scale,
                 "run the clock this many times faster; all reported durations stay simulated")
      ->check(CLI::Range(0.001, 100000.0))
      ->capture_default_str();
  app.add_flag("--wall-durations", cfg.wall_durations,
               "report the durations of final objects (total, load, prompt_eval, eval) in real "
               "elapsed time rather than simulated time, so that they agree with a proxy's own "
               "clock under --time-scale (what a fleet's placement learns from)");
  app.add_option("--seed", cfg.seed, "seed for output lengths, words, embeddings and faults")
      ->capture_default_str();
  app.add_option("--models", models,
                 "comma-separated model names served ('mistral' resolves to 'mistral:latest')")
      ->capture_default_str();
  app.add_option("--max-loaded", cfg.max_loaded,
                 "models resident on the GPU at once, like OLLAMA_MAX_LOADED_MODELS; a request "
                 "for another evicts the least recently used idle one, or waits while all are "
                 "busy (0 = all of --models; the first N of --models start resident)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  app.add_option("--load-time", load_time,
                 "simulated time to load a model that is not resident (Go duration like 3s or "
                 "300ms, or seconds), reported as load_duration")
      ->capture_default_str();
  app.add_option("--keep-alive", keep_alive,
                 "idle time before a resident model is unloaded, like OLLAMA_KEEP_ALIVE (Go "
                 "duration or seconds; negative = never); a request's keep_alive overrides it")
      ->capture_default_str();
  app.add_option("--external-streams", cfg.external_streams,
                 "streams of another tenant decoding on the same GPU (slow every stream as if "
                 "that many more were active; hold no slot)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  app.add_option("--decode-rate", cfg.gpu.decode_tokens_per_second,
                 "tokens/s of one stream decoding alone")
      ->capture_default_str();
  app.add_option("--prefill-rate", cfg.gpu.prefill_tokens_per_second,
                 "prompt tokens/s processed (prompt tokens = prompt characters / 4)")
      ->capture_default_str();
  app.add_option("--decode-scaling", scaling,
                 "STREAMS:RETENTION pairs: fraction of solo decode speed each stream keeps "
                 "with that many streams active")
      ->capture_default_str();
  app.add_option("--mean-output-tokens", cfg.gpu.mean_output_tokens,
                 "mean output length when a request does not set num_predict/max_tokens")
      ->capture_default_str();
  app.add_option("--output-sigma", cfg.gpu.output_length_sigma,
                 "spread (sigma of the log) of the log-normal output length")
      ->capture_default_str();
  app.add_option("--max-output-tokens", cfg.gpu.max_output_tokens,
                 "upper bound of any output length")
      ->capture_default_str();
  app.add_option("--embedding-dims", cfg.embedding_dims, "length of returned embedding vectors")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  app.add_option("--fault-rate", cfg.fault_rate,
                 "probability that a GPU request without X-Sim-Fault gets a fault from --fault-mix")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--fault-mix", fault_mix,
                 "comma-separated faults drawn uniformly by --fault-rate (same names as "
                 "X-Sim-Fault)")
      ->capture_default_str();
  app.add_option("--max-records", cfg.max_records,
                 "per-request records kept for /sim/stats (oldest dropped first)")
      ->check(CLI::Range(std::size_t(0), std::size_t(10'000'000)))
      ->capture_default_str();
  app.add_option("--max-body-bytes", cfg.max_body_bytes, "largest request body accepted (413)")
      ->check(CLI::Range(std::size_t(1024), std::size_t(1) << 32))
      ->capture_default_str();
  app.add_option("--max-header-bytes", cfg.max_header_bytes,
                 "largest request header block accepted (431)")
      ->check(CLI::Range(std::size_t(1024), std::size_t(1) << 24))
      ->capture_default_str();
  app.add_option("--max-connections", cfg.max_connections,
                 "open connections at most; further ones are closed at once")
      ->check(CLI::Range(std::size_t(1), std::size_t(1'000'000)))
      ->capture_default_str();
  app.add_option("--read-timeout", read_timeout, "seconds (real) to receive a request body")
      ->check(CLI::Range(1L, 86400L))
      ->capture_default_str();
  app.add_option("--idle-timeout", idle_timeout,
                 "seconds (real) a connection may wait for its next request header")
      ->check(CLI::Range(1L, 86400L))
      ->capture_default_str();
  app.add_option("--write-timeout", write_timeout, "seconds (real) one write may take")
      ->check(CLI::Range(1L, 86400L))
      ->capture_default_str();
  app.add_option("--hang-limit", hang_limit,
                 "seconds (real) a hang fault lasts before the connection is closed")
      ->check(CLI::Range(1L, 86400L))
      ->capture_default_str();
  app.add_flag("--allow-any-host", cfg.allow_any_host,
               "accept any Host header (Ollama answers 403 to foreign Host names when it listens "
               "on a loopback address; the simulator does too unless this is set)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off (to stderr)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();

  CLI11_PARSE(app, argc, argv);

  auto logger = spdlog::stderr_color_mt("sluice-sim");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(log_level));

  auto fail = [](const std::string& why) {
    std::cerr << "sluice-sim: " << why << "\n";
    return 2;
  };
  if (!split_listen(listen, cfg.host, cfg.port)) return fail("--listen must be HOST:PORT");
  std::string why;
  auto parsed_scaling = sluice::sim::parse_scaling(scaling, &why);
  if (!parsed_scaling) return fail("--decode-scaling: " + why);
  cfg.gpu.scaling = *parsed_scaling;
  auto mix = sluice::sim::parse_fault_mix(fault_mix, &why);
  if (!mix) return fail("--fault-mix: " + why);
  cfg.fault_mix = *mix;
  cfg.models.clear();
  for (std::size_t pos = 0; pos <= models.size();) {
    const auto comma = std::min(models.find(',', pos), models.size());
    if (comma > pos) cfg.models.push_back(models.substr(pos, comma - pos));
    pos = comma + 1;
  }
  if (auto bad = sluice::sim::validate(cfg.gpu)) return fail(*bad);
  auto parsed_load = sluice::sim::parse_duration_flag(load_time);
  if (auto* err = std::get_if<std::string>(&parsed_load)) return fail("--load-time: " + *err);
  cfg.load_ns = std::get<std::int64_t>(parsed_load);
  if (cfg.load_ns < 0) return fail("--load-time must not be negative");
  auto parsed_keep = sluice::sim::parse_duration_flag(keep_alive);
  if (auto* err = std::get_if<std::string>(&parsed_keep)) return fail("--keep-alive: " + *err);
  cfg.keep_alive_ns = std::get<std::int64_t>(parsed_keep);
  if (cfg.keep_alive_ns < 0) cfg.keep_alive_ns = sluice::sim::kForever;
  cfg.read_timeout = std::chrono::seconds(read_timeout);
  cfg.idle_timeout = std::chrono::seconds(idle_timeout);
  cfg.write_timeout = std::chrono::seconds(write_timeout);
  cfg.hang_limit = std::chrono::seconds(hang_limit);

  try {
    boost::asio::io_context ioc(1);
    sluice::sim::SimServer server(ioc, cfg);
    server.start();
    boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code&, int) {
      server.stop();
      ioc.stop();
    });
    const bool v6 = cfg.host.find(':') != std::string::npos;
    std::printf("listening on http://%s%s%s:%u\n", v6 ? "[" : "", cfg.host.c_str(), v6 ? "]" : "",
                unsigned(server.port()));
    std::fflush(stdout);
    spdlog::info(
        "serving {} model(s), parallel {}, time scale {}, decode {} tok/s, prefill {} tok/s, "
        "max loaded {}, load time {}, keep-alive {}",
        cfg.models.size(), cfg.parallel, cfg.time_scale, cfg.gpu.decode_tokens_per_second,
        cfg.gpu.prefill_tokens_per_second,
        cfg.max_loaded > 0 ? std::to_string(cfg.max_loaded) : "all",
        sluice::sim::describe_duration(cfg.load_ns),
        sluice::sim::describe_duration(cfg.keep_alive_ns));
    ioc.run();
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  return 0;
}
