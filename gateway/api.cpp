#include "gateway/api.h"

#include <chrono>
#include <cstdio>
#include <limits>

#include "engine/chat_template.h"
#include "engine/unicode.h"
#include "gateway/choice_output.h"
#include "gateway/dashboard_routes.h"
#include "gateway/fleet_sync.h"
#include "gateway/output_constraints.h"
#include "qos/config_parser.h"
#include "qos/config_writer.h"
#include "qos/usage_report.h"

namespace tiergate::gateway {
namespace {

HttpResponse error_response(const ApiError& e) {
  HttpResponse r;
  r.status = e.status;
  r.body = e.to_json();
  return r;
}

HttpResponse error(int status, std::string message, std::string type, std::string param = "", std::string code = "") {
  return error_response(ApiError{status, std::move(message), std::move(type), std::move(param), std::move(code)});
}

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

long now_seconds() {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::seconds>(
                               std::chrono::system_clock::now().time_since_epoch()).count());
}

struct Route {
  const char* path;
  const char* method;
};

constexpr Route kRoutes[] = {
    {"/health", "GET"},
    {"/metrics", "GET"},
    {"/v1/models", "GET"},
    {"/v1/chat/completions", "POST"},
    {"/v1/completions", "POST"},
    {"/v1/chat/completions_qos", "POST"},
    {"/v1/completions_qos", "POST"},
    {"/v1/chat/interactive_qos", "POST"},
    {"/admin/qos", "GET"},
    {"/admin/qos/reload", "POST"},
    {"/admin/keys/reload", "POST"},
    {"/dashboard", "GET"},
    {"/dashboard/login", "POST"},
    {"/dashboard/logout", "POST"},
};

const Route* find_route(std::string_view path) {
  for (const Route& r : kRoutes) {
    if (path == r.path) return &r;
  }
  return nullptr;
}

// What /metrics labels a request by: its route's template, never the raw path.
std::string route_label(std::string_view path) {
  const Route* r = find_route(path);
  return r ? r->path : "unmatched";
}

// Per-request state shared by the engine callbacks (all on the engine thread).
struct Generation {
  GenerationRequest request;
  std::string id;
  long created = 0;
  std::size_t prompt_tokens = 0;
  std::vector<ChoiceResult> choices;
  std::vector<ChoiceOutput> outputs;                 // per choice: echo, logprobs, tool calls
  std::vector<engine::SampledToken> prompt_logprobs;  // echo with logprobs: the prompt's, first without one
  std::vector<bool> started;
  std::vector<std::size_t> completion_tokens;
  int unfinished = 0;
  std::shared_ptr<ResponseSink> sink;
  std::size_t history_tokens = 0;  // interactive: the session's prompt length before this turn
  std::string user;
  std::chrono::steady_clock::time_point received;
  std::vector<std::chrono::steady_clock::time_point> last_output;  // per choice
  bool first_output_seen = false;
  bool streamed = false;  // some stream event has been sent (the status line with it)
};

}  // namespace

Api::Api(EngineService& service, std::shared_ptr<const ApiKeyStore> keys, ApiOptions options)
    : service_(service),
      keys_(std::move(keys)),
      options_(std::move(options)),
      sessions_(options_.sessions, options_.shared_sessions),
      qos_reloader_(options_.qos_config_path, [this](std::shared_ptr<const qos::Config> config) {
        service_.reload(std::move(config));
        qos_loaded_at_unix_ms_ = now_unix_ms();
      }),
      qos_loaded_at_unix_ms_(now_unix_ms()),  // the server read it just before
      qos_file_(options_.qos_config_path, [this] { return qos_reloader_.reload(); }),
      keys_file_(options_.api_keys_path, [this] { return load_keys(); }),
      dashboard_(std::make_unique<DashboardRoutes>([this] { return this->keys(); })) {}

Api::~Api() = default;

std::shared_ptr<const ApiKeyStore> Api::keys() const {
  std::lock_guard lock(keys_mutex_);
  return keys_;
}

void Api::set_transport(const TransportStatsSource* transport) {
  std::lock_guard lock(transport_mutex_);
  transport_ = transport;
}

void Api::count(const std::string& route, int status) {
  std::lock_guard lock(metrics_mutex_);
  ++requests_[{route, status}];
}

engine::RequestId Api::handle(const HttpRequest& request, std::shared_ptr<ResponseSink> sink) {
  const std::string path = request.target.substr(0, request.target.find('?'));
  try {
    return handle_unguarded(request, sink, path);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tiergate: internal error on %s %s: %s\n", request.method.c_str(), path.c_str(), e.what());
    count(route_label(path), 500);
    sink->respond(error(500, "internal server error", "server_error"));
    return 0;
  }
}

engine::RequestId Api::handle_unguarded(const HttpRequest& request, std::shared_ptr<ResponseSink> sink,
                                        const std::string& path) {
  const std::string route = route_label(path);  // the template: the only thing metrics may label by
  auto answer = [&](HttpResponse r) {
    count(route, r.status);
    sink->respond(std::move(r));
    return engine::RequestId{0};
  };
  const Route* found = find_route(path);
  if (!found) return answer(error(404, "no route " + path, "invalid_request_error", "", "not_found"));
  if (request.method != found->method) {
    HttpResponse r = error(405, route + " takes " + found->method, "invalid_request_error", "", "method_not_allowed");
    r.headers.emplace_back("Allow", found->method);
    return answer(r);
  }
  if (route == "/health") {
    // Open to any load balancer, so it says only ok or degraded (Redis away: fair share on local
    // counters), and degraded still serves: 200, so that a balancer keeps the replica. Where Redis
    // is, this replica's id and why syncs fail are for an admin key only.
    const bool degraded = options_.fleet && options_.fleet->degraded();
    std::string body = std::string("{\"status\": ") + (degraded ? "\"degraded\"" : "\"ok\"");
    const std::string& auth = request.authorization;
    if (options_.fleet && auth.rfind("Bearer ", 0) == 0) {
      const std::optional<ApiKey> key = keys()->authenticate(std::string_view(auth).substr(7));
      if (key && key->admin) body += ", \"fleet\": " + options_.fleet->health_json();
    }
    // The fleet object quotes Redis's own error text; repairing the whole text is safe, since JSON's
    // own syntax is ASCII and an ill-formed byte can only sit inside a string.
    return answer(HttpResponse{200, "application/json", engine::to_valid_utf8(body + "}"), {}});
  }

  // The dashboard signs browsers in with an admin key; its session cookie may read /admin/qos.
  if (route.rfind("/dashboard", 0) == 0) return answer(dashboard_->handle(request, route));
  if (route == "/admin/qos" && request.authorization.empty() && dashboard_->signed_in(request)) {
    return answer(admin_qos());
  }

  // Everything else needs a key (/metrics too, unless the operator opted out).
  const std::string& auth = request.authorization;
  const bool has_bearer = auth.rfind("Bearer ", 0) == 0 && auth.size() > 7;
  if (route == "/metrics" && !has_bearer && options_.metrics_without_key) {
    return answer(HttpResponse{200, "text/plain; version=0.0.4", metrics(MetricsView::kPublic), {}});
  }
  if (!has_bearer) {
    return answer(error(401, "missing API key: send 'Authorization: Bearer <key>'", "invalid_request_error", "",
                        "invalid_api_key"));
  }
  const std::optional<ApiKey> key = keys()->authenticate(std::string_view(auth).substr(7));
  if (!key) return answer(error(401, "invalid API key", "invalid_request_error", "", "invalid_api_key"));

  if (route == "/metrics") {
    return answer(HttpResponse{200, "text/plain; version=0.0.4",
                               metrics(key->admin ? MetricsView::kFull : MetricsView::kTenant, &*key), {}});
  }
  if (route == "/v1/models") {
    return answer(HttpResponse{200, "application/json",
                               "{\"object\": \"list\", \"data\": [{\"id\": " + qos::json_string(options_.model_name) +
                                   ", \"object\": \"model\", \"created\": 0, \"owned_by\": \"tiergate\"}]}",
                               {}});
  }
  if (route.rfind("/admin/", 0) == 0) {
    if (!key->admin) return answer(error(403, "this key is not an admin key", "permission_error"));
    return admin(request, route, answer);
  }
  const bool qos_route = route.size() > 4 && route.compare(route.size() - 4, 4, "_qos") == 0;
  const Endpoint endpoint = route == "/v1/chat/interactive_qos" ? Endpoint::kInteractive
                            : route.find("/chat/") != std::string::npos ? Endpoint::kChat
                                                                         : Endpoint::kCompletion;
  return generate(request, *key, endpoint, qos_route, std::move(sink), route);
}

engine::RequestId Api::generate(const HttpRequest& request, const ApiKey& key, Endpoint endpoint, bool qos_route,
                                std::shared_ptr<ResponseSink> sink, const std::string& route) {
  auto answer = [&](HttpResponse r) {
    count(route, r.status);
    sink->respond(std::move(r));
    return engine::RequestId{0};
  };
  auto parsed = parse_generation(request.body, endpoint, qos_route);
  if (auto* e = std::get_if<ApiError>(&parsed)) return answer(error_response(*e));
  auto gen = std::make_shared<Generation>();
  gen->request = std::move(std::get<GenerationRequest>(parsed));
  GenerationRequest& req = gen->request;
  if (!req.model.empty() && req.model != options_.model_name) {
    return answer(error(404, "the model '" + req.model + "' does not exist; this server serves '" +
                                 options_.model_name + "'",
                        "invalid_request_error", "model", "model_not_found"));
  }
  req.model = options_.model_name;
  // Whose request this is: the body's user, else the key's own (single) user.
  std::string user = req.user;
  if (user.empty() && !key.any_user && key.users.size() == 1) user = key.users.front();
  if (user.empty()) {
    if (qos_route && service_.queue().config()->enable_user_qos()) {
      return answer(error(400, "'user_id' is required on the *_qos routes", "invalid_request_error", "user_id"));
    }
    user = key.any_user ? "anonymous" : (key.users.empty() ? "" : key.users.front());
  }
  if (!req.user.empty() && !key.may_act_for(req.user)) {
    return answer(error(403, "this API key may not act for user '" + req.user + "'", "permission_error",
                        qos_route ? "user_id" : "user"));
  }

  const engine::Model& model = service_.model();
  const engine::ChatTemplate chat_template = engine::ChatTemplate::from_template_text(model.chat_template());
  std::optional<engine::ToolCallFormat> tool_format;  // set when the request offers tools
  if (auto e = bind_output_constraints(req, chat_template, model.tokenizer(), grammars_, tool_format)) {
    return answer(error_response(*e));
  }
  std::vector<engine::TokenId> prompt;
  std::size_t history_tokens = 0;
  const auto session_key = std::make_pair(user, req.session_id);
  if (endpoint == Endpoint::kInteractive) {
    // The session's conversation so far, then this turn (its blocks are in the prefix cache).
    std::vector<engine::ChatMessage> conversation;
    if (req.session_id >= 0) {
      if (auto so_far = sessions_.find(session_key)) {
        conversation = std::move(so_far->messages);
        history_tokens = so_far->tokens;
      }
    }
    if (req.end_session) {  // LMDeploy's `stop: true`: the session ends here, nothing is generated
      if (req.session_id >= 0) sessions_.erase(session_key);
      count(route, 200);
      if (req.stream) {
        sink->begin_stream(HttpResponse{200, "application/json", "", {}});
        sink->stream(interactive_chunk("", 0, "stop"));
        sink->end_stream();
      } else {
        sink->respond(HttpResponse{200, "application/json", interactive_body("", 0, 0, history_tokens, "stop"), {}});
      }
      return 0;
    }
    conversation.push_back(req.messages.front());
    req.messages = conversation;
    prompt = chat_template.encode(model.tokenizer(), conversation);
  } else if (endpoint == Endpoint::kChat) {
    // Only the template's markup yields control tokens; the client's text (tools too) never does.
    prompt = chat_template.encode(model.tokenizer(), req.messages, true,
                                  tool_format ? std::span<const engine::ToolDefinition>(req.tools)
                                              : std::span<const engine::ToolDefinition>());
  } else {
    prompt = model.tokenizer().encode(req.prompt, false);
  }
  if (!req.max_tokens_given) {
    req.params.max_tokens = static_cast<std::int64_t>(std::min<std::size_t>(
        model.config().context_length > prompt.size() ? model.config().context_length - prompt.size() : 1, 512));
  }
  gen->prompt_tokens = prompt.size();
  gen->history_tokens = history_tokens;
  gen->user = user;
  gen->created = now_seconds();
  const engine::RequestId id = service_.next_id();
  gen->id = (endpoint == Endpoint::kChat ? "chatcmpl-" : "cmpl-") + std::to_string(id);
  const auto n = static_cast<std::size_t>(std::max(1, req.params.n));
  gen->choices.resize(n);
  for (std::size_t c = 0; c < n; ++c) {
    gen->outputs.emplace_back(req.echo ? req.prompt : std::string(), tool_format, "call_" + std::to_string(id) + "_" + std::to_string(c) + "_");
  }
  if (req.params.prompt_logprobs && !prompt.empty()) {  // the first prompt token has no logprob
    engine::SampledToken first;
    first.token = prompt.front();
    first.logprob = std::numeric_limits<float>::quiet_NaN();
    gen->prompt_logprobs.push_back(first);
  }
  gen->started.assign(n, false);
  gen->completion_tokens.assign(n, 0);
  gen->last_output.assign(n, {});
  gen->received = std::chrono::steady_clock::now();
  gen->unfinished = static_cast<int>(n);
  gen->sink = sink;
  const bool streaming = req.stream;
  const std::string route_copy = route;
  auto on_output = [this, gen, route_copy](const engine::RequestOutput& o, OutputEvent event) {
    const GenerationRequest& rq = gen->request;
    if (event != OutputEvent::kOutput) {
      const ApiError e = event == OutputEvent::kExpired
                             ? ApiError{503, "the request waited longer than its group's queue bound", "server_error",
                                        "", "queue_timeout"}
                         : event == OutputEvent::kStopping
                             ? ApiError{503, "the server is shutting down; retry on another replica", "server_error",
                                        "", "server_shutting_down"}
                             : ApiError{500, "internal server error", "server_error", "", "internal_error"};
      count(route_copy, e.status);
      if (gen->streamed) {  // the status line is gone: the stream ends with the error as its last event
        gen->sink->stream(rq.endpoint == Endpoint::kInteractive ? e.to_json() + "\n" : "data: " + e.to_json() + "\n\n");
        gen->sink->end_stream();
      } else {             // nothing sent yet: a plain error response replaces the held stream headers
        gen->sink->respond(error_response(e));
      }
      return;
    }
    const auto i = static_cast<std::size_t>(o.index);
    ChoiceResult& c = gen->choices[i];
    const auto now = std::chrono::steady_clock::now();
    if (!o.tokens.empty()) {
      if (!gen->first_output_seen) {
        gen->first_output_seen = true;
        ttft_.observe(std::chrono::duration<double>(now - gen->received).count());
      } else if (gen->completion_tokens[i] > 0) {
        const double gap = std::chrono::duration<double>(now - gen->last_output[i]).count();
        inter_token_.observe(gap / static_cast<double>(o.tokens.size()));
      }
      gen->last_output[i] = now;
    }
    gen->completion_tokens[i] = o.completion_tokens;
    const std::string finish = o.finish == engine::FinishReason::kNone ? "" : engine::to_string(o.finish);
    if (rq.endpoint == Endpoint::kInteractive) {
      c.text += o.text;
      if (rq.stream) {
        gen->sink->stream(interactive_chunk(o.text, o.completion_tokens, finish));
        gen->streamed = true;
      }
      if (finish.empty()) return;
      count(route_copy, 200);
      auto reply = [gen, i, tokens = o.completion_tokens, finish] {
        if (gen->request.stream) {
          gen->sink->end_stream();
        } else {
          gen->sink->respond(HttpResponse{200, "application/json",
                                          interactive_body(gen->choices[i].text, tokens, gen->prompt_tokens,
                                                           gen->history_tokens, finish),
                                          {}});
        }
      };
      // A turn cut short by the client's leaving is not history: that client never saw the reply.
      if (o.finish != engine::FinishReason::kCancelled) {
        end_interactive(rq, gen->user, gen->prompt_tokens + o.completion_tokens, c.text, std::move(reply));
      } else {
        reply();
      }
      return;
    }
    // What the client sees of this output: echo, logprobs, tool calls (gateway/choice_output.h).
    ChoiceOutput& shaped = gen->outputs[i];
    gen->prompt_logprobs.insert(gen->prompt_logprobs.end(), o.prompt_logprobs.begin(), o.prompt_logprobs.end());
    ChoiceDelta delta = shaped.push(o, gen->prompt_logprobs);
    std::string finish_reason = finish;
    if (!finish.empty()) {
      ChoiceDelta tail = shaped.finish(finish_reason);
      delta.text += tail.text;
      if (!tail.tool_calls.empty()) {
        delta.tool_calls = delta.tool_calls.empty() ? tail.tool_calls
                                                    : delta.tool_calls.substr(0, delta.tool_calls.size() - 1) + ", " +
                                                          tail.tool_calls.substr(1);
      }
    }
    if (rq.stream) {
      if (!delta.text.empty() || !delta.tool_calls.empty() || !delta.logprobs.empty() || !finish.empty() ||
          !gen->started[i]) {
        gen->sink->stream(stream_chunk(rq, gen->id, gen->created, o.index, delta, !gen->started[i], finish_reason,
                                       service_.model().tokenizer(), shaped.text_offset()));
        gen->started[i] = true;
        gen->streamed = true;
      }
    }
    if (finish.empty()) return;
    c = shaped.result();
    if (--gen->unfinished > 0) return;
    std::size_t completion = 0;
    for (std::size_t t : gen->completion_tokens) completion += t;
    if (rq.stream) {
      if (rq.include_usage) gen->sink->stream(stream_usage_chunk(rq, gen->id, gen->created, gen->prompt_tokens, completion));
      gen->sink->stream("data: [DONE]\n\n");
      gen->sink->end_stream();
      count(route_copy, 200);
    } else {
      count(route_copy, 200);
      gen->sink->respond(HttpResponse{200, "application/json",
                                      completion_body(rq, gen->id, gen->created, gen->choices, gen->prompt_tokens,
                                                      completion, service_.model().tokenizer()),
                                      {}});
    }
  };
  if (streaming) {
    sink->begin_stream(endpoint == Endpoint::kInteractive
                           ? HttpResponse{200, "application/json", "", {}}  // LMDeploy: JSON objects, one per line
                           : HttpResponse{200, "text/event-stream", "", {{"Cache-Control", "no-cache"}}});
  }
  const SubmitResult submitted = service_.submit(id, user, std::move(prompt), req.params, on_output);
  // A refusal replaces the stream's headers, which are not sent before the first event.
  auto refuse = [&](HttpResponse r) {
    count(route, r.status);
    sink->respond(std::move(r));
    return engine::RequestId{0};
  };
  switch (submitted.status) {
    case SubmitResult::Status::kQueued:
      return id;
    case SubmitResult::Status::kInvalid:
      return refuse(error(400, submitted.message, "invalid_request_error", submitted.param));
    case SubmitResult::Status::kStopping:
      return refuse(error(503, "the server is shutting down; retry on another replica", "server_error", "",
                          "server_shutting_down"));
    case SubmitResult::Status::kUserNotConfigured:
      return refuse(error(403, "user '" + user + "' is not configured in the QoS config and no group takes unknown users",
                          "permission_error", qos_route ? "user_id" : "user", "user_not_configured"));
    case SubmitResult::Status::kQueueFull: {
      HttpResponse r = error(429, "the " + submitted.group + " queue is full; retry later", "rate_limit_error", "",
                             "queue_full");
      char retry[32];
      std::snprintf(retry, sizeof retry, "%.0f", std::max(1.0, submitted.retry_after_s));
      r.headers.emplace_back("Retry-After", retry);
      return refuse(std::move(r));
    }
  }
  return 0;
}

void Api::end_interactive(const GenerationRequest& request, const std::string& user, std::size_t tokens,
                          const std::string& reply, std::function<void()> answer) {
  if (request.session_id < 0) return answer();
  const auto key = std::make_pair(user, request.session_id);
  if (!request.interactive_mode) {  // the session ends with this request
    sessions_.erase(key, std::move(answer));
    return;
  }
  ChatSessions::Conversation conversation{request.messages, tokens};
  conversation.messages.push_back({"assistant", reply});
  sessions_.store(key, std::move(conversation), ChatSessions::Clock::now(), std::move(answer));
}

}  // namespace tiergate::gateway
