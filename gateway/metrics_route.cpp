// GET /metrics: what each reader may see (MetricsView) in the Prometheus text format. Labels are
// route templates, group names and user ids only, every value escaped; per-user series are capped
// at options_.metrics_max_users (the top users by service; the rest summed per group).
#include "gateway/api.h"
#include "gateway/fleet_sync.h"
#include "gateway/metrics.h"
#include "qos/usage_report.h"

namespace tiergate::gateway {
namespace {

void reload_metrics(MetricsText& m, const char* file, const ReloadableFile::Status& s, bool first) {
  if (first) {
    m.family("tiergate_config_reload_ok", "gauge", "1 when the last reload of the file was accepted (or none was tried).");
  }
  m.sample("tiergate_config_reload_ok", {{"file", file}}, s.ok ? 1 : 0);
}

void reload_failure_metrics(MetricsText& m, const char* file, const ReloadableFile::Status& s, bool first) {
  if (first) m.family("tiergate_config_reload_failures_total", "counter", "Reloads rejected; the old file stayed in force.");
  m.sample("tiergate_config_reload_failures_total", {{"file", file}}, static_cast<double>(s.failures));
}

}  // namespace

std::string Api::metrics(MetricsView view, const ApiKey* key) const {
  MetricsText m;
  const bool groups_visible = view != MetricsView::kTenant;  // a group's figures may be one tenant's
  m.family("tiergate_requests_total", "counter", "HTTP requests by route template and status.");
  {
    std::lock_guard lock(metrics_mutex_);
    for (const auto& [k, value] : requests_) {
      m.sample("tiergate_requests_total", {{"route", k.first}, {"status", std::to_string(k.second)}},
               static_cast<double>(value));
    }
  }
  const qos::UsageReport usage = service_.queue().usage();
  if (groups_visible) {
    m.family("tiergate_queue_waiting", "gauge", "Requests waiting for admission, by group.");
    for (const auto& g : usage.groups) m.sample("tiergate_queue_waiting", {{"group", g.name}}, static_cast<double>(g.waiting));
    m.family("tiergate_running", "gauge", "Requests running, by group.");
    for (const auto& g : usage.groups) m.sample("tiergate_running", {{"group", g.name}}, static_cast<double>(g.running));
    m.family("tiergate_weighted_tokens_total", "counter", "Weighted tokens served, by group.");
    for (const auto& g : usage.groups) m.sample("tiergate_weighted_tokens_total", {{"group", g.name}}, g.weighted_tokens);
  }
  if (view != MetricsView::kPublic) {
    std::vector<qos::UserUsage> visible;
    for (const auto& u : usage.users) {
      if (view == MetricsView::kFull || (key && key->may_act_for(u.user_id))) visible.push_back(u);
    }
    const UserSeries series = select_user_series(visible, options_.metrics_max_users);
    m.family("tiergate_user_tokens_total", "counter", "Prompt and generated tokens by user (the users with the most service).");
    for (const qos::UserUsage* u : series.shown) {
      m.sample("tiergate_user_tokens_total", {{"user", u->user_id}, {"group", u->group}, {"kind", "prompt"}},
               static_cast<double>(u->prompt_tokens));
      m.sample("tiergate_user_tokens_total", {{"user", u->user_id}, {"group", u->group}, {"kind", "output"}},
               static_cast<double>(u->output_tokens));
    }
    if (view == MetricsView::kFull) {
      // A gauge: it falls when a user rises into the shown set.
      m.family("tiergate_other_users_tokens", "gauge",
               "Prompt and generated tokens of the users without series of their own, summed by group.");
      m.family("tiergate_other_users", "gauge", "Users without series of their own, by group.");
      for (const auto& r : series.rest) {
        m.sample("tiergate_other_users_tokens", {{"group", r.group}, {"kind", "prompt"}}, static_cast<double>(r.prompt_tokens));
        m.sample("tiergate_other_users_tokens", {{"group", r.group}, {"kind", "output"}}, static_cast<double>(r.output_tokens));
        m.sample("tiergate_other_users", {{"group", r.group}}, static_cast<double>(r.users));
      }
    }
  }
  const engine::EngineStats s = service_.stats();
  m.family("tiergate_kv_blocks", "gauge", "KV cache blocks by state.");
  m.sample("tiergate_kv_blocks", {{"state", "active"}}, static_cast<double>(s.blocks.active_blocks));
  m.sample("tiergate_kv_blocks", {{"state", "cached"}}, static_cast<double>(s.blocks.cached_blocks));
  m.sample("tiergate_kv_blocks", {{"state", "free"}}, static_cast<double>(s.blocks.free_blocks));
  m.family("tiergate_engine_running_requests", "gauge", "Requests in the engine's running batch.");
  m.sample("tiergate_engine_running_requests", {}, static_cast<double>(s.running_requests));
  m.family("tiergate_preemptions_total", "counter", "Running requests preempted.");
  m.sample("tiergate_preemptions_total", {}, static_cast<double>(s.preemptions));
  m.family("tiergate_interactive_sessions", "gauge", "Interactive sessions holding a conversation.");
  m.sample("tiergate_interactive_sessions", {}, static_cast<double>(sessions_.size()));
  m.family("tiergate_interactive_sessions_expired_total", "counter", "Sessions forgotten (idle TTL or session cap).");
  m.sample("tiergate_interactive_sessions_expired_total", {}, static_cast<double>(sessions_.expired()));
  m.family("tiergate_time_to_first_token_seconds", "histogram", "Request received to first token.");
  m.append(ttft_.render("tiergate_time_to_first_token_seconds", ""));
  m.family("tiergate_inter_token_seconds", "histogram", "Time between successive tokens of a choice.");
  m.append(inter_token_.render("tiergate_inter_token_seconds", ""));
  if (groups_visible) m.append(service_.queue_wait_metrics());
  m.append(service_.step_metrics());
  m.family("tiergate_tokens_generated_total", "counter", "Tokens generated.");
  m.sample("tiergate_tokens_generated_total", {}, static_cast<double>(s.tokens_generated));

  TransportStats t;
  bool have_transport = false;
  {
    std::lock_guard lock(transport_mutex_);
    if (transport_) {
      t = transport_->transport_stats();
      have_transport = true;
    }
  }
  if (have_transport) {
    m.family("tiergate_http_connections", "gauge", "Open client connections.");
    m.sample("tiergate_http_connections", {}, static_cast<double>(t.connections));
    m.family("tiergate_http_sessions", "gauge",
             "Connection objects alive: the open ones and closed ones that a request winding down still holds.");
    m.sample("tiergate_http_sessions", {}, static_cast<double>(t.sessions));
    m.family("tiergate_http_requests_in_flight", "gauge", "Requests read and not yet fully answered.");
    m.sample("tiergate_http_requests_in_flight", {}, static_cast<double>(t.requests_in_flight));
    m.family("tiergate_http_connections_refused_total", "counter", "Connections closed at accept, by the cap that refused them.");
    m.sample("tiergate_http_connections_refused_total", {{"limit", "server"}}, static_cast<double>(t.refused_total_limit));
    m.sample("tiergate_http_connections_refused_total", {{"limit", "per_client"}}, static_cast<double>(t.refused_per_client_limit));
    m.family("tiergate_http_accept_errors_total", "counter", "accept() failures such as running out of file descriptors.");
    m.sample("tiergate_http_accept_errors_total", {}, static_cast<double>(t.accept_errors));
    m.family("tiergate_http_timeouts_total", "counter", "Connections closed by a timer, by phase.");
    m.sample("tiergate_http_timeouts_total", {{"phase", "handshake"}}, static_cast<double>(t.timeouts_handshake));
    m.sample("tiergate_http_timeouts_total", {{"phase", "idle"}}, static_cast<double>(t.timeouts_idle));
    m.sample("tiergate_http_timeouts_total", {{"phase", "read"}}, static_cast<double>(t.timeouts_read));
    m.sample("tiergate_http_timeouts_total", {{"phase", "write"}}, static_cast<double>(t.timeouts_write));
  }
  if (options_.fleet) m.append(options_.fleet->metrics());  // fleet health: no tenant's figures
  if (view != MetricsView::kTenant) {
    reload_metrics(m, "qos_config", qos_file_.status(), true);
    if (!options_.api_keys_path.empty()) reload_metrics(m, "api_keys", keys_file_.status(), false);
    reload_failure_metrics(m, "qos_config", qos_file_.status(), true);
    if (!options_.api_keys_path.empty()) reload_failure_metrics(m, "api_keys", keys_file_.status(), false);
  }
  return m.text();
}

}  // namespace tiergate::gateway
