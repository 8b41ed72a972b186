#include "gateway/fleet_store.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>

#include "qos/config_writer.h"

namespace tiergate::gateway {
namespace {

// ARGV: prefix, replica, seq, user_ttl_s, lapse_s, aggregate_every_s, config fingerprint;
//   n_users, then per user: group, class, user, base, add, floor ('' = none), weighted, prompt, output, requests;
//   n_clocks, then per clock: group, class, virtual_time, waiting_floor ('' = nobody waits);
//   n_loads, then per load: group, active_unknown.
// Returns {counters}, {{virtual_time, others_waiting_floor or ''}}, {others_active_unknown}, {replicas, versions}.
// Keys (g = len:name): P:u:g:user (hash c0 c1 w p o r), P:g:g (w p o r vt0 vt1), P:f:g:class and
// P:l:g (replica → "value time", with an :agg hash), P:replicas, P:seq:replica, and P:expiry (key →
// when the script forgets it). None carries a Redis TTL: the shipped Redis evicts under volatile-lru,
// which takes only keys with a TTL (interactive sessions), so a tenant filling memory with sessions
// cannot push the fleet's counters out. Idle users and replicas are forgotten by the script itself,
// a bounded number per call.
const RedisScript kSyncScript(R"lua(
local P, me = ARGV[1], ARGV[2]
local seq, ttl, lapse, every = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local fp = ARGV[7]
local i = 7
local function arg() i = i + 1; return ARGV[i] end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function fmt(x) return string.format('%.17g', x) end
local function key(kind, g) return P .. ':' .. kind .. ':' .. #g .. ':' .. g end
local function split(v) local s = string.find(v, ' ', 1, true); return string.sub(v, 1, s - 1), tonumber(string.sub(v, s + 1)) end
local seqkey = P .. ':seq:' .. me
local fresh = seq > tonumber(redis.call('GET', seqkey) or '0')
local expiry = P .. ':expiry'
if fresh then
  redis.call('SET', seqkey, seq)
  redis.call('ZADD', expiry, now + 86400, seqkey)
end

local counters = {}
for u = 1, tonumber(arg()) do
  local g, cls, user = arg(), arg(), arg()
  local base, add, floor = tonumber(arg()), tonumber(arg()), arg()
  local w, p, o, r = arg(), arg(), arg(), arg()
  local uk = key('u', g) .. ':' .. user
  local v = tonumber(redis.call('HGET', uk, 'c' .. cls))
  if fresh or v == nil then
    v = (v or base) + add
    if floor ~= '' then v = math.max(v, tonumber(floor)) end
  end
  if fresh then
    local gk = key('g', g)
    redis.call('HSET', uk, 'c' .. cls, fmt(v))
    if w ~= '0' then redis.call('HINCRBYFLOAT', uk, 'w', w); redis.call('HINCRBYFLOAT', gk, 'w', w) end
    if p ~= '0' then redis.call('HINCRBY', uk, 'p', p); redis.call('HINCRBY', gk, 'p', p) end
    if o ~= '0' then redis.call('HINCRBY', uk, 'o', o); redis.call('HINCRBY', gk, 'o', o) end
    if r ~= '0' then redis.call('HINCRBY', uk, 'r', r); redis.call('HINCRBY', gk, 'r', r) end
    redis.call('ZADD', expiry, now + ttl, uk)
  end
  counters[u] = fmt(v)
end

local clocks = {}
for c = 1, tonumber(arg()) do
  local g, cls, vt, wf = arg(), arg(), tonumber(arg()), arg()
  local gk = key('g', g)
  local cur = tonumber(redis.call('HGET', gk, 'vt' .. cls))
  if cur == nil or vt > cur then cur = vt; redis.call('HSET', gk, 'vt' .. cls, fmt(vt)) end
  local fk = key('f', g) .. ':' .. cls
  redis.call('HSET', fk, me, wf .. ' ' .. fmt(now))
  local agg = redis.call('HMGET', fk .. ':agg', 'at', 'min1', 'who', 'min2')
  if not agg[1] or now - tonumber(agg[1]) >= every then
    local m1, who, m2 = nil, '', nil
    local all = redis.call('HGETALL', fk)
    for j = 1, #all, 2 do
      local fv, ft = split(all[j + 1])
      if now - ft > lapse then redis.call('HDEL', fk, all[j])
      elseif fv ~= '' then
        local x = tonumber(fv)
        if m1 == nil or x < m1 then m2 = m1; m1 = x; who = all[j]
        elseif m2 == nil or x < m2 then m2 = x end
      end
    end
    agg = {fmt(now), m1 and fmt(m1) or '', who, m2 and fmt(m2) or ''}
    redis.call('HSET', fk .. ':agg', 'at', agg[1], 'min1', agg[2], 'who', agg[3], 'min2', agg[4])
  end
  local others = agg[2]
  if agg[3] == me then others = agg[4] end
  clocks[c] = {fmt(cur), others}
end

local loads = {}
for l = 1, tonumber(arg()) do
  local g, n = arg(), tonumber(arg())
  local lk = key('l', g)
  redis.call('HSET', lk, me, n .. ' ' .. fmt(now))
  local agg = redis.call('HMGET', lk .. ':agg', 'at', 'sum')
  local sum = tonumber(agg[2])
  if not agg[1] or now - tonumber(agg[1]) >= every then
    sum = 0
    local all = redis.call('HGETALL', lk)
    for j = 1, #all, 2 do
      local nv, nt = split(all[j + 1])
      if now - nt > lapse then redis.call('HDEL', lk, all[j]) else sum = sum + tonumber(nv) end
    end
    redis.call('HSET', lk .. ':agg', 'at', fmt(now), 'sum', sum)
  end
  loads[l] = math.max(0, sum - n)
end

local rk = P .. ':replicas'
redis.call('HSET', rk, me, fp .. ' ' .. fmt(now))
local agg = redis.call('HMGET', rk .. ':agg', 'at', 'replicas', 'versions')
if not agg[1] or now - tonumber(agg[1]) >= every then
  local all = redis.call('HGETALL', rk)
  local n, versions, seen = 0, 0, {}
  for j = 1, #all, 2 do
    local f, ft = split(all[j + 1])
    if now - ft > lapse then redis.call('HDEL', rk, all[j])
    else
      n = n + 1
      if not seen[f] then seen[f] = true; versions = versions + 1 end
    end
  end
  agg = {fmt(now), n, versions}
  redis.call('HSET', rk .. ':agg', 'at', agg[1], 'replicas', n, 'versions', versions)
end

local due = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, 64)
if #due > 0 then
  redis.call('DEL', unpack(due))
  redis.call('ZREM', expiry, unpack(due))
end
return {counters, clocks, loads, {tonumber(agg[2]), tonumber(agg[3])}}
)lua");

std::string number(double x) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

std::string key(const std::string& prefix, const std::string& kind, const std::string& group) {
  return prefix + ":" + kind + ":" + std::to_string(group.size()) + ":" + group;
}

bool to_double(const RedisReply& r, double& out) {
  if (r.type == RedisReply::Type::kInteger) {
    out = static_cast<double>(r.integer);
    return true;
  }
  if (r.type != RedisReply::Type::kString) return false;
  if (r.str.empty()) {
    out = std::numeric_limits<double>::infinity();
    return true;
  }
  const auto [end, ec] = std::from_chars(r.str.data(), r.str.data() + r.str.size(), out);
  return ec == std::errc() && end == r.str.data() + r.str.size();
}

long long to_integer(const RedisReply& r) {
  if (r.type == RedisReply::Type::kInteger) return r.integer;
  double d = 0;
  return to_double(r, d) && std::isfinite(d) ? static_cast<long long>(d) : 0;
}

qos::FleetServed served_from(const std::vector<RedisReply>& fields) {  // HMGET w p o r
  qos::FleetServed s;
  double w = 0;
  if (fields.size() >= 4) {
    if (to_double(fields[0], w) && std::isfinite(w)) s.weighted_tokens = w;
    s.prompt_tokens = to_integer(fields[1]);
    s.output_tokens = to_integer(fields[2]);
    s.requests = static_cast<std::uint64_t>(std::max(0LL, to_integer(fields[3])));
  }
  return s;
}

}  // namespace

std::string config_fingerprint(const qos::Config& config) { return sha1_hex(qos::to_json(config)).substr(0, 12); }

FleetStore::FleetStore(RedisConnection& redis, FleetStoreOptions options)
    : redis_(redis), options_(std::move(options)) {}

FleetAnswer FleetStore::sync(const std::string& replica, std::uint64_t seq, const qos::FleetReport& report,
                             const std::string& fingerprint) {
  std::vector<std::string> args = {options_.prefix,
                                   replica,
                                   std::to_string(seq),
                                   std::to_string(options_.user_ttl.count()),
                                   number(options_.lapse_s),
                                   number(options_.aggregate_every_s),
                                   fingerprint,
                                   std::to_string(report.users.size())};
  args.reserve(args.size() + 10 * report.users.size() + 4 * report.clocks.size() + 2 * report.loads.size() + 2);
  for (const qos::FleetUserReport& u : report.users) {
    args.push_back(u.group);
    args.push_back(u.scavenger ? "1" : "0");
    args.push_back(u.user);
    args.push_back(number(u.base));
    args.push_back(number(u.op.add));
    args.push_back(u.op.lifts() ? number(u.op.floor) : "");
    args.push_back(u.served.weighted_tokens == 0 ? "0" : number(u.served.weighted_tokens));
    args.push_back(std::to_string(u.served.prompt_tokens));
    args.push_back(std::to_string(u.served.output_tokens));
    args.push_back(std::to_string(u.served.requests));
  }
  args.push_back(std::to_string(report.clocks.size()));
  for (const qos::FleetClock& c : report.clocks) {
    args.push_back(c.group);
    args.push_back(c.scavenger ? "1" : "0");
    args.push_back(number(c.virtual_time));
    args.push_back(std::isfinite(c.waiting_floor) ? number(c.waiting_floor) : "");
  }
  args.push_back(std::to_string(report.loads.size()));
  for (const qos::FleetLoad& l : report.loads) {
    args.push_back(l.group);
    args.push_back(std::to_string(l.active_unknown));
  }

  FleetAnswer answer;
  RedisResult result = redis_.eval(kSyncScript, {}, std::move(args));
  answer.failure = result.failure;
  answer.error = result.error;
  if (result.failure != RedisResult::Failure::kNone) return answer;
  // From here on the script may have run: anything wrong with the answer is "no answer", so that
  // the caller resends the same report (folded at most once) instead of restoring it.
  auto bad = [&](const std::string& why) {
    answer.failure = RedisResult::Failure::kNoAnswer;
    answer.error = "fleet sync script: " + why;
    return answer;
  };
  const RedisReply& reply = result.replies.at(0);
  if (reply.type == RedisReply::Type::kError) return bad(reply.str);
  if (reply.type != RedisReply::Type::kArray || reply.elements.size() != 4) return bad("unexpected reply shape");
  const auto& counters = reply.elements[0].elements;
  const auto& clocks = reply.elements[1].elements;
  const auto& loads = reply.elements[2].elements;
  const auto& registry = reply.elements[3].elements;
  if (counters.size() != report.users.size() || clocks.size() != report.clocks.size() ||
      loads.size() != report.loads.size() || registry.size() != 2) {
    return bad("the reply does not match the report");
  }
  for (const RedisReply& c : counters) {
    double v = 0;
    if (!to_double(c, v) || !std::isfinite(v)) return bad("a counter is not a number");
    answer.update.counters.push_back(v);
  }
  for (const RedisReply& c : clocks) {
    qos::FleetClockUpdate clock;
    if (c.elements.size() != 2 || !to_double(c.elements[0], clock.virtual_time) ||
        !to_double(c.elements[1], clock.others_waiting_floor)) {
      return bad("a clock is not a pair of numbers");
    }
    answer.update.clocks.push_back(clock);
  }
  for (const RedisReply& l : loads) answer.update.others_active_unknown.push_back(static_cast<std::size_t>(std::max(0LL, to_integer(l))));
  answer.replicas = static_cast<std::size_t>(std::max(0LL, to_integer(registry[0])));
  answer.config_versions = static_cast<std::size_t>(std::max(0LL, to_integer(registry[1])));
  return answer;
}

FleetUsage FleetStore::read_usage(const qos::Config& config) {
  FleetUsage usage;
  std::vector<std::vector<std::string>> commands;
  std::vector<std::string> names;
  if (config.enable_user_qos()) {
    for (const qos::Group& g : config.groups()) names.push_back(g.name);
  } else {
    names.push_back("fcfs");
  }
  for (std::size_t g = 0; g < names.size(); ++g) {
    commands.push_back({"HMGET", key(options_.prefix, "g", names[g]), "w", "p", "o", "r"});
    FleetGroupUsage group{names[g], {}, {}};
    if (config.enable_user_qos()) {
      for (const qos::UserQuota& u : config.groups()[g].users) {
        if (u.id == qos::kDefaultUserId) continue;
        commands.push_back({"HMGET", key(options_.prefix, "u", names[g]) + ":" + u.id, "w", "p", "o", "r"});
        group.users.push_back({u.id, {}});
      }
    }
    usage.groups.push_back(std::move(group));
  }
  commands.push_back({"HGETALL", options_.prefix + ":replicas"});
  commands.push_back({"TIME"});
  RedisResult result = redis_.pipeline(commands);
  usage.failure = result.failure;
  usage.error = result.error;
  if (result.failure != RedisResult::Failure::kNone) return usage;
  std::size_t next = 0;
  for (FleetGroupUsage& group : usage.groups) {
    group.served = served_from(result.replies[next++].elements);
    for (FleetUserUsage& user : group.users) user.served = served_from(result.replies[next++].elements);
  }
  const RedisReply& replicas = result.replies[next++];
  const RedisReply& time = result.replies[next];
  double now = 0;
  if (time.elements.size() == 2) now = static_cast<double>(to_integer(time.elements[0])) + static_cast<double>(to_integer(time.elements[1])) / 1e6;
  for (std::size_t j = 0; j + 1 < replicas.elements.size(); j += 2) {
    const std::string& value = replicas.elements[j + 1].str;
    const auto space = value.find(' ');
    if (space == std::string::npos) continue;
    double at = 0;
    const std::string when = value.substr(space + 1);
    std::from_chars(when.data(), when.data() + when.size(), at);
    if (now - at > options_.lapse_s) continue;
    usage.replicas.push_back({replicas.elements[j].str, value.substr(0, space), std::max(0.0, now - at)});
  }
  return usage;
}

}  // namespace tiergate::gateway
