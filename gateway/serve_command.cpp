#include "gateway/serve_command.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <filesystem>
#include <memory>

#include "engine/model.h"
#include "engine/unicode.h"
#include "gateway/api.h"
#include "gateway/api_keys.h"
#include "gateway/cli_args.h"
#include "gateway/engine_service.h"
#include "gateway/fleet_flags.h"
#include "gateway/generate_command.h"
#include "gateway/http_server.h"
#include "gateway/private_file.h"
#include "qos/config_parser.h"
#include "qos/config_summary.h"

namespace tiergate::gateway {
namespace {

constexpr const char* kServeUsage =
    "usage: tiergate serve [MODEL.gguf] [--host 127.0.0.1] [--port 8443] [--qos-config-path config/qos_config.json]\n"
    "       [--api-keys-path state/api_keys.json] [--ssl-certfile F --ssl-keyfile F] [--insecure-http]\n"
    "       [--state-dir state] [--served-model-name NAME] [--kv-cache-blocks N] [--max-num-seqs N]\n"
    "       [--max-num-batched-tokens N] [--threads N] [--http-threads N] [--stand-in-engine TOKENS]\n"
    "       [--session-ttl SECONDS (1800)] [--max-sessions N (10000)] [--max-sessions-per-user N (100)]\n"
    "       [--handshake-timeout S (10)] [--idle-timeout S (60)] [--read-timeout S (30)] [--write-timeout S (30)]\n"
    "       [--max-connections N (4096)] [--max-connections-per-client N (256; 0 = no cap, behind a load balancer)]\n"
    "       [--worker-threads N (2)] [--metrics-without-key] [--metrics-max-users N (100)]\n"
    "       [--device auto|cpu|cuda (auto)] [--kv-cache-memory-fraction F (0.8, CUDA)] [--cuda-graphs]\n"
    "       [--stand-in-rate TOKENS_PER_S (paces --stand-in-engine)]\n";

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;

}  // namespace

void write_self_signed_certificate(const std::string& cert_path, const std::string& key_path) {
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) throw std::runtime_error("cannot generate a P-256 key");
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), static_cast<long>(std::time(nullptr)));
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 365L * 24 * 3600);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  if (X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1")) {
    X509_add_ext(cert.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (!X509_sign(cert.get(), key.get(), EVP_sha256())) throw std::runtime_error("cannot sign the certificate");
  for (const std::string& p : {cert_path, key_path}) {
    const std::filesystem::path path(p);
    if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  }
  // The private key is written 0600 from the start (never world-readable, even for a moment).
  std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>> bio(BIO_new(BIO_s_mem()));
  if (!bio || !PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr)) {
    throw std::runtime_error("cannot encode the TLS key");
  }
  char* pem = nullptr;
  const long pem_size = BIO_get_mem_data(bio.get(), &pem);
  write_private_file(key_path, std::string_view(pem, static_cast<std::size_t>(pem_size)));
  FILE* cf = std::fopen(cert_path.c_str(), "w");
  if (!cf) throw std::runtime_error(cert_path + ": cannot write");
  PEM_write_X509(cf, cert.get());
  std::fclose(cf);
}

int run_serve(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  try {
    std::set<std::string> with_value = {
        "--host", "--port", "--qos-config-path", "--api-keys-path", "--ssl-certfile", "--ssl-keyfile",
        "--state-dir", "--served-model-name", "--kv-cache-blocks", "--max-num-seqs", "--max-num-batched-tokens",
        "--threads", "--http-threads", "--model", "--stand-in-engine", "--stand-in-rate", "--session-ttl",
        "--max-sessions", "--max-sessions-per-user", "--device", "--kv-cache-memory-fraction",
        "--handshake-timeout", "--idle-timeout", "--read-timeout", "--write-timeout", "--max-connections",
        "--max-connections-per-client", "--worker-threads", "--metrics-max-users"};
    with_value.insert(kFleetFlags.begin(), kFleetFlags.end());
    const CliArgs a(args, with_value, {"--insecure-http", "--cuda-graphs", "--metrics-without-key"});
    const std::string model_path = !a.positional().empty() ? a.positional()[0] : a.get("--model", default_model_path());
    const std::string state_dir = a.get("--state-dir", "state");
    const std::string qos_path = a.get("--qos-config-path", "config/qos_config.json");
    const std::string keys_path = a.get("--api-keys-path", state_dir + "/api_keys.json");

    // Start-up may fail loudly (DESIGN.md §7, tier 1): every message names the file and the fix.
    const std::optional<FleetSyncOptions> fleet_flags = fleet_options(a);
    const auto qos_config = qos::load_config_or_throw(qos_path);
    const auto keys = ApiKeyStore::load(keys_path);
    if (keys->size() == 0) {
      err << "tiergate: no API keys in " << keys_path << "; create one with: tiergate keys add --user ID [--admin]\n";
    }
    ServerOptions options;
    options.host = a.get("--host", "127.0.0.1");
    const std::size_t port_flag = a.count("--port", 8443);
    if (port_flag > 65535) throw CliError("--port must be 0..65535, got " + std::to_string(port_flag));
    options.port = static_cast<std::uint16_t>(port_flag);
    options.tls = !a.has("--insecure-http");
    options.threads = a.count("--http-threads", 2);
    options.worker_threads = a.count("--worker-threads", 2);
    options.max_connections = a.count("--max-connections", 4096);
    options.max_connections_per_client = a.count("--max-connections-per-client", 256);
    auto seconds = [&](const char* flag, double fallback) {
      const double v = a.number(flag, fallback);
      if (!(v > 0) || v > 86400) throw CliError(std::string(flag) + " must be a number of seconds in (0, 86400]");
      return std::chrono::milliseconds(static_cast<std::int64_t>(v * 1000));
    };
    options.handshake_timeout = seconds("--handshake-timeout", 10);
    options.idle_timeout = seconds("--idle-timeout", 60);
    options.read_timeout = seconds("--read-timeout", 30);
    options.write_timeout = seconds("--write-timeout", 30);
    if (options.tls) {
      options.cert_file = a.get("--ssl-certfile", state_dir + "/tls/cert.pem");
      options.key_file = a.get("--ssl-keyfile", state_dir + "/tls/key.pem");
      if (!a.has("--ssl-certfile") && !std::filesystem::exists(options.cert_file)) {
        write_self_signed_certificate(options.cert_file, options.key_file);
        err << "tiergate: created a self-signed development certificate " << options.cert_file
            << " (pass --ssl-certfile/--ssl-keyfile for a real one)\n";
      }
      if (auto warning = readable_by_others_warning(options.key_file, "TLS private key")) err << *warning << "\n";
    }
    if (auto warning = readable_by_others_warning(keys_path, "API keys")) err << *warning << "\n";
    const auto model = engine::Model::load(model_path);
    engine::EngineConfig config;
    config.threads = a.count("--threads", 0);
    config.max_running = a.count("--max-num-seqs", 64);
    config.token_budget = a.count("--max-num-batched-tokens", 512);
    config.device = device_flag(a);
    config.num_blocks = a.count("--kv-cache-blocks", 0);  // 0: 2048 on the CPU, from free memory on a GPU
    config.kv_cache_memory_fraction = a.number("--kv-cache-memory-fraction", 0.8);
    config.cuda_graphs = a.has("--cuda-graphs");
    if (config.kv_cache_memory_fraction <= 0 || config.kv_cache_memory_fraction > 1)
      throw CliError("--kv-cache-memory-fraction must be in (0, 1]");
    const auto stand_in = a.count("--stand-in-engine", 0);
    const double stand_in_rate = a.number("--stand-in-rate", 0);
    if (stand_in_rate < 0 || (stand_in_rate > 0 && stand_in == 0)) {
      throw CliError("--stand-in-rate takes tokens per second > 0, with --stand-in-engine");
    }
    if (stand_in > 0) err << "tiergate: stand-in engine: every request gets " << stand_in << " fixed tokens\n";
    EngineService service(*model, config, qos_config, stand_in, stand_in_rate);
    Fleet fleet = start_fleet(fleet_flags, service.queue());
    if (fleet.sync) {
      err << "tiergate: fleet: replica " << fleet.sync->replica_id() << ", fair share and sessions through "
          << fleet_flags->url.describe() << " every " << a.count("--redis-sync-ms", 50) << " ms\n";
    }
    // Like vLLM, the model is named after what was loaded unless told otherwise. The name is
    // quoted in every response body, so it must be UTF-8: a flag that is not is refused, a file
    // name that is not is repaired.
    if (const std::string name = a.get("--served-model-name", ""); engine::to_valid_utf8(name) != name) {
      throw CliError("--served-model-name must be UTF-8 text");
    }
    const std::string served =
        engine::to_valid_utf8(a.get("--served-model-name", std::filesystem::path(model_path).stem().string()));
    ApiOptions api_options;
    api_options.model_name = served;
    api_options.qos_config_path = qos_path;
    api_options.sessions.idle_ttl = std::chrono::seconds(a.count("--session-ttl", 1800));
    api_options.sessions.max_sessions = a.count("--max-sessions", 10000);
    api_options.fleet = fleet.sync.get();
    api_options.shared_sessions = fleet.sessions;
    api_options.sessions.max_sessions_per_user = a.count("--max-sessions-per-user", 100);
    api_options.api_keys_path = keys_path;
    api_options.metrics_without_key = a.has("--metrics-without-key");
    api_options.metrics_max_users = a.count("--metrics-max-users", 100);
    if (api_options.metrics_without_key) {
      err << "tiergate: --metrics-without-key: /metrics answers without a key (server and group figures; per-user "
             "series still need an admin key)\n";
    }
    Api api(service, keys, api_options);
    HttpServer server(options, api);
    err << qos::summarize(*qos_config);
    err << "tiergate: engine: " << service.describe_engine() << "\n";
    server.run([&](std::uint16_t port) {
      out << "tiergate: serving " << model->config().name << " on " << (options.tls ? "https" : "http") << "://"
          << options.host << ":" << port << "\n"
          << std::flush;
    });
    service.shutdown();  // before the server and the API go: engine callbacks reach both
    fleet.stop();        // so do the session store's; and the last charges go to Redis
    out << "tiergate: stopped\n";
    return 0;
  } catch (const CliError& e) {
    err << "tiergate serve: " << e.what() << "\n" << kServeUsage << kFleetUsage;
    return 2;
  } catch (const std::exception& e) {
    err << "tiergate serve: " << e.what() << "\n";
    return 1;
  }
}

int run_keys(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  try {
    if (args.empty() || args[0] != "add") throw CliError("usage: tiergate keys add (--user ID ... | --all-users) [--admin]");
    const CliArgs a({args.begin() + 1, args.end()}, {"--user", "--name", "--api-keys-path", "--state-dir"},
                    {"--admin", "--all-users"});
    const std::vector<std::string> users = a.all("--user");
    if (users.empty() && !a.has("--all-users")) throw CliError("give --user ID (repeatable) or --all-users");
    const std::string path = a.get("--api-keys-path", a.get("--state-dir", "state") + "/api_keys.json");
    const std::string key = ApiKeyStore::add_key(path, a.get("--name", users.empty() ? "all-users" : users.front()),
                                                 users, a.has("--all-users"), a.has("--admin"));
    out << key << "\n";
    err << "tiergate: key added to " << path << " (only its SHA-256 is stored; this is the only time it is shown)\n";
    return 0;
  } catch (const CliError& e) {
    err << "tiergate keys: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    err << "tiergate keys: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace tiergate::gateway
