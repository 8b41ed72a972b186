#include "gateway/connection_limiter.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <map>

namespace tiergate::gateway {
namespace {

using Admission = ConnectionLimiter::Admission;

TEST(ConnectionLimiter, CapsEachAddressAndTheServer) {
  ConnectionLimiter limiter(5, 2);
  EXPECT_EQ(limiter.try_acquire("a"), Admission::kAdmitted);
  EXPECT_EQ(limiter.try_acquire("a"), Admission::kAdmitted);
  EXPECT_EQ(limiter.try_acquire("a"), Admission::kClientFull);  // a third from one address
  EXPECT_EQ(limiter.try_acquire("b"), Admission::kAdmitted);    // another address is not locked out
  EXPECT_EQ(limiter.try_acquire("b"), Admission::kAdmitted);
  EXPECT_EQ(limiter.try_acquire("c"), Admission::kAdmitted);
  EXPECT_EQ(limiter.try_acquire("d"), Admission::kServerFull);
  limiter.release("a");
  EXPECT_EQ(limiter.open_for("a"), 1u);
  EXPECT_EQ(limiter.try_acquire("a"), Admission::kAdmitted);
  EXPECT_EQ(limiter.open(), 5u);
}

TEST(ConnectionLimiter, ZeroMeansNoPerClientCap) {
  ConnectionLimiter limiter(100, 0);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(limiter.try_acquire("balancer"), Admission::kAdmitted);
  EXPECT_EQ(limiter.try_acquire("balancer"), Admission::kServerFull);
}

// Any sequence of acquires and releases: the counts match a plain model, never exceed a cap, and
// an address with no connection is forgotten (the map does not grow with addresses seen).
RC_GTEST_PROP(ConnectionLimiterProperty, CountsMatchAModelAndNeverExceedTheCaps, ()) {
  const auto total = static_cast<std::size_t>(*rc::gen::inRange(1, 10));
  const auto per_client = static_cast<std::size_t>(*rc::gen::inRange(0, 4));
  ConnectionLimiter limiter(total, per_client);
  std::map<std::string, std::size_t> model;
  std::size_t open = 0;
  const int steps = *rc::gen::inRange(1, 200);
  for (int i = 0; i < steps; ++i) {
    const std::string client(1, static_cast<char>('a' + *rc::gen::inRange(0, 5)));
    if (*rc::gen::arbitrary<bool>()) {
      const Admission got = limiter.try_acquire(client);
      Admission want = Admission::kAdmitted;
      if (open >= total) want = Admission::kServerFull;
      else if (per_client != 0 && model[client] >= per_client) want = Admission::kClientFull;
      RC_ASSERT(got == want);
      if (got == Admission::kAdmitted) {
        ++model[client];
        ++open;
      }
    } else if (model[client] > 0) {
      limiter.release(client);
      --model[client];
      --open;
    }
    RC_ASSERT(limiter.open() == open && open <= total);
    RC_ASSERT(limiter.open_for(client) == model[client]);
    std::size_t clients = 0;
    for (const auto& [c, n] : model) clients += n > 0;
    RC_ASSERT(limiter.clients() == clients);
  }
}

}  // namespace
}  // namespace tiergate::gateway
