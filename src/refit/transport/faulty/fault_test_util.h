// Test helpers shared by the fault-injection tests over thread transports
// (faulty_copy_service_test.cc) and over MPI (mpi_faulty_test.cc): the
// message pattern every rank exchanges, one rank's round of it, the endpoint
// stack (faulty under checksums) and the plan's expected counts.
#ifndef REFIT_TRANSPORT_FAULTY_FAULT_TEST_UTIL_H_
#define REFIT_TRANSPORT_FAULTY_FAULT_TEST_UTIL_H_

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "refit/exec/checksum_copy_service.h"
#include "refit/transport/faulty/faulty_copy_service.h"

namespace refit::exec::fault_test {

inline constexpr std::byte kGap{0xA5};

// One message of the cases: every ordered pair of ranks (self included)
// exchanges task 1 (contiguous), task 2 (strided on the receiving side) and
// task 3 (empty).
struct Message {
  int src, dst;
  uint64_t task;
  uint64_t bytes;
};

inline std::vector<Message> AllMessages(int world) {
  std::vector<Message> out;
  for (int s = 0; s < world; ++s) {
    for (int d = 0; d < world; ++d) {
      out.push_back({s, d, 1, 1 + uint64_t(s * 97 + d * 31) % 300});
      out.push_back({s, d, 2, 40 * (3 + uint64_t(s + 2 * d) % 5)});
      out.push_back({s, d, 3, 0});
    }
  }
  return out;
}

inline std::byte Pattern(const Message& m, int round, uint64_t i) {
  uint64_t h = (m.src + 1) * 0x9E3779B1ull ^ (m.dst + 1) * 0x85EBCA77ull ^
               m.task * 0xC2B2AE3Dull ^ (round + 1) * 0x27D4EB2Full;
  h ^= i * 0xFF51AFD7ED558CCDull;
  return std::byte((h ^ (h >> 29) ^ (h >> 41)) & 0xFF);
}

// What one rank saw in one round.
struct RankRound {
  Status status;
  uint64_t wrong = 0;  // received messages whose bytes differ
};

// One rank's endpoint stack, and its checksum layer when there is one.
struct Endpoint {
  std::unique_ptr<CopyService> service;
  ChecksumCopyService* checksum = nullptr;
};

// `inner` under a FaultyCopyService, under a checksum layer when `checksum`
// (the order of --verify checksum: the checksum layer sees the faults).
inline Endpoint Wrap(std::unique_ptr<CopyService> inner, const FaultPlan& plan,
                     FaultLog& log, bool checksum) {
  Endpoint ep;
  auto faulty =
      std::make_unique<FaultyCopyService>(std::move(inner), plan, log);
  if (!checksum) {
    ep.service = std::move(faulty);
    return ep;
  }
  auto c = std::make_unique<ChecksumCopyService>(std::move(faulty));
  ep.checksum = c.get();
  ep.service = std::move(c);
  return ep;
}

// Rank `rank`'s part of round `round` of `all` on `ep` (epoch `round`):
// sends its messages, receives its own into buffers filled with kGap (task 2
// in runs of 40 bytes, 8 apart), runs and counts the wrong messages.
inline RankRound RunRank(Endpoint& ep, int rank, int round,
                         const std::vector<Message>& all) {
  CopyService& s = *ep.service;
  if (ep.checksum) ep.checksum->set_epoch(round);
  std::vector<std::vector<std::byte>> send_bufs, recv_bufs;
  std::vector<const Message*> recvs;
  send_bufs.reserve(all.size());
  recv_bufs.reserve(all.size());
  for (const Message& m : all) {
    if (m.src != rank) continue;
    auto& b = send_bufs.emplace_back(m.bytes);
    for (uint64_t i = 0; i < m.bytes; ++i) b[i] = Pattern(m, round, i);
    (void)s.SubmitSend(m.dst, m.task, {{b.data(), m.bytes, 1, m.bytes}});
  }
  for (const Message& m : all) {
    if (m.dst != rank) continue;
    recvs.push_back(&m);
    auto& b = recv_bufs.emplace_back(m.bytes * 2, kGap);
    const bool strided = m.task == 2;
    (void)s.SubmitRecv(m.src, m.task,
                       {{b.data(), strided ? 40 : m.bytes,
                         strided ? m.bytes / 40 : 1, strided ? 48 : m.bytes}});
  }
  RankRound rr;
  rr.status = s.Run();
  for (size_t k = 0; k < recvs.size(); ++k) {
    const Message& m = *recvs[k];
    for (uint64_t i = 0; i < m.bytes; ++i) {
      const uint64_t at = m.task == 2 ? (i / 40) * 48 + i % 40 : i;
      if (recv_bufs[k][at] != Pattern(m, round, i)) {
        ++rr.wrong;
        break;
      }
    }
  }
  return rr;
}

// 20 % of messages corrupted, 4 % by each kind.
inline FaultPlan Corruptions(uint64_t seed) {
  FaultPlan plan;
  plan.seed = seed;
  plan.With(FaultKind::kFlipBit, 0.04)
      .With(FaultKind::kTruncate, 0.04)
      .With(FaultKind::kDuplicate, 0.04)
      .With(FaultKind::kReorder, 0.04)
      .With(FaultKind::kReplay, 0.04);
  return plan;
}

// How many messages of `rounds` rounds `plan` gives fault `kind`.
inline uint64_t Planned(const FaultPlan& plan, FaultKind kind, int rounds,
                        int world) {
  uint64_t n = 0;
  for (int round = 0; round < rounds; ++round) {
    for (const Message& m : AllMessages(world)) {
      n += plan.Decide(m.src, m.dst, m.task, round) == kind;
    }
  }
  return n;
}

}  // namespace refit::exec::fault_test

#endif  // REFIT_TRANSPORT_FAULTY_FAULT_TEST_UTIL_H_
