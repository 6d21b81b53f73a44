#include "refit/bench/schedule.h"

#include <algorithm>
#include <array>
#include <queue>
#include <tuple>

namespace refit {

namespace {

// Remote ops each rank sends, rotated so that sender i starts at its
// (i mod n)-th destination: the shifted permutation when everybody sends to
// everybody, and an incast-free start when senders outnumber receivers.
std::vector<std::vector<uint32_t>> SenderOrders(const ReshardPlan& plan) {
  std::vector<std::vector<uint32_t>> by_src(plan.world_size);
  for (size_t i = 0; i < plan.ops.size(); ++i) {
    const TransferOp& op = plan.ops[i];
    if (op.src_rank != op.dst_rank) {
      by_src[op.src_rank].push_back(static_cast<uint32_t>(i));
    }
  }
  int sender_index = 0;
  for (auto& ops : by_src) {  // ops are sorted by dst_rank already
    if (ops.empty()) continue;
    const size_t shift = sender_index++ % ops.size();
    std::rotate(ops.begin(), ops.begin() + shift, ops.end());
  }
  return by_src;
}

// Port kinds: 0 NVLink (same node), 1 network.
struct Ports {
  std::vector<std::array<double, 2>> out_free, in_free;
  explicit Ports(int world) : out_free(world, {0, 0}), in_free(world, {0, 0}) {}
};

// Event-driven greedy matching of chunks onto exclusive ports: whenever
// ports are free, start chunks on free (sender, receiver) pairs, most loaded
// pairs first (remaining bytes of the sender's out-port plus the receiver's
// in-port, in time units: largest remaining work first, which keeps the
// bottleneck ports busy). The order in which each sender's chunks start is
// the executor's send order.
class Simulation {
 public:
  Simulation(const ReshardPlan& plan, const ClusterModel& c,
             const ScheduleOptions& o)
      : plan_(plan),
        c_(c),
        chunk_(std::max<uint64_t>(o.chunk_bytes(), 1)),
        max_inflight_(o.max_inflight),
        ports_(plan.world_size),
        outstanding_send_(plan.world_size, 0),
        outstanding_recv_(plan.world_size, 0),
        ops_(SenderOrders(plan)),
        sent_(plan.ops.size(), 0),
        out_left_(plan.world_size, {0, 0}),
        in_left_(plan.world_size, {0, 0}),
        order_(plan.world_size) {
    for (const TransferOp& op : plan.ops) {
      if (op.src_rank == op.dst_rank) continue;
      const int k = Kind(op.src_rank, op.dst_rank);
      out_left_[op.src_rank][k] += op.bytes / Bandwidth(k);
      in_left_[op.dst_rank][k] += op.bytes / Bandwidth(k);
    }
  }

  ScheduleModel Run() {
    using Done = std::tuple<double, int, int>;  // (end, sender, receiver)
    std::priority_queue<Done, std::vector<Done>, std::greater<>> running;
    ScheduleModel m;
    std::vector<Candidate> cands;
    for (double t = 0;;) {
      Collect(t, cands);
      for (const Candidate& c : cands) {
        const TransferOp& op = plan_.ops[c.op];
        if (!CanStart(op, t)) continue;
        running.push({Start(c.op, t, m), op.src_rank, op.dst_rank});
      }
      if (running.empty()) break;
      t = std::get<0>(running.top());
      while (!running.empty() && std::get<0>(running.top()) <= t) {
        --outstanding_send_[std::get<1>(running.top())];
        --outstanding_recv_[std::get<2>(running.top())];
        running.pop();
      }
    }
    m.t_lb_ms = LowerBoundMs();
    m.efficiency = m.makespan_ms > 0 ? m.t_lb_ms / m.makespan_ms : 1.0;
    m.staging_bytes_max = PeakStaging();
    return m;
  }

  std::vector<std::vector<Chunk>>& order() { return order_; }

 private:
  struct Candidate {
    double priority;
    uint32_t op;
  };

  int Kind(int a, int b) const {
    return a / c_.gpus_per_node == b / c_.gpus_per_node ? 0 : 1;
  }
  double Bandwidth(int kind) const {
    return (kind == 0 ? c_.nvlink_gbps : c_.network_gbps) * 1e6;  // B/ms
  }

  // Both ports free and both ranks under their in-flight limit.
  bool CanStart(const TransferOp& op, double t) const {
    const int k = Kind(op.src_rank, op.dst_rank);
    return ports_.out_free[op.src_rank][k] <= t &&
           ports_.in_free[op.dst_rank][k] <= t &&
           outstanding_send_[op.src_rank] < max_inflight_ &&
           outstanding_recv_[op.dst_rank] < max_inflight_;
  }

  // Pending messages whose two ports are free at t, most loaded first;
  // ties keep each sender's rotated order.
  void Collect(double t, std::vector<Candidate>& cands) const {
    cands.clear();
    for (int s = 0; s < plan_.world_size; ++s) {
      if (ports_.out_free[s][0] > t && ports_.out_free[s][1] > t) continue;
      for (uint32_t i : ops_[s]) {
        const TransferOp& op = plan_.ops[i];
        if (sent_[i] >= op.bytes) continue;
        const int k = Kind(s, op.dst_rank);
        if (!CanStart(op, t)) continue;
        cands.push_back({out_left_[s][k] + in_left_[op.dst_rank][k], i});
      }
    }
    std::stable_sort(cands.begin(), cands.end(),
                     [](const Candidate& a, const Candidate& b) {
                       return a.priority > b.priority;
                     });
  }

  // Starts the next chunk of op `i` at `start`; returns its end time.
  double Start(uint32_t i, double start, ScheduleModel& m) {
    const TransferOp& op = plan_.ops[i];
    const int s = op.src_rank, d = op.dst_rank, k = Kind(s, d);
    const uint64_t bytes = std::min(chunk_, op.bytes - sent_[i]);
    const double busy = bytes / Bandwidth(k);
    const double end = start + c_.latency_us * 1e-3 + busy;
    ports_.out_free[s][k] = ports_.in_free[d][k] = end;
    ++outstanding_send_[s];
    ++outstanding_recv_[d];
    m.makespan_ms = std::max(m.makespan_ms, end);
    ++m.chunks;
    order_[s].push_back({i, sent_[i], bytes});
    sent_[i] += bytes;
    out_left_[s][k] -= busy;
    in_left_[d][k] -= busy;
    for (int rank : {s, d}) {
      staging_.push_back({start, static_cast<double>(bytes), rank});
      staging_.push_back({end, -static_cast<double>(bytes), rank});
    }
    return end;
  }

  double LowerBoundMs() const {
    std::vector<std::array<double, 2>> out(plan_.world_size, {0, 0}),
        in(plan_.world_size, {0, 0});
    for (const TransferOp& op : plan_.ops) {
      if (op.src_rank == op.dst_rank) continue;
      const int k = Kind(op.src_rank, op.dst_rank);
      out[op.src_rank][k] += op.bytes;
      in[op.dst_rank][k] += op.bytes;
    }
    double t = 0;
    for (int r = 0; r < plan_.world_size; ++r) {
      for (int k = 0; k < 2; ++k) {
        t = std::max({t, out[r][k] / Bandwidth(k), in[r][k] / Bandwidth(k)});
      }
    }
    return t;
  }

  // Most bytes in flight at one rank (sends and receives), assuming every
  // chunk is packed into a staging buffer.
  uint64_t PeakStaging() {
    std::sort(staging_.begin(), staging_.end(),
              [](const auto& a, const auto& b) {
                return std::tie(a.time, a.delta) < std::tie(b.time, b.delta);
              });
    std::vector<double> now(plan_.world_size, 0);
    double peak = 0;
    for (const auto& e : staging_) {
      now[e.rank] += e.delta;
      peak = std::max(peak, now[e.rank]);
    }
    return static_cast<uint64_t>(peak);
  }

  struct StagingEvent {
    double time;
    double delta;
    int rank;
  };

  const ReshardPlan& plan_;
  const ClusterModel& c_;
  const uint64_t chunk_;
  const int max_inflight_;
  Ports ports_;
  std::vector<int> outstanding_send_, outstanding_recv_;
  std::vector<std::vector<uint32_t>> ops_;
  std::vector<uint64_t> sent_;
  std::vector<std::array<double, 2>> out_left_, in_left_;  // ms of work
  std::vector<std::vector<Chunk>> order_;
  std::vector<StagingEvent> staging_;
};

}  // namespace

TransferSchedule BuildSchedule(const ReshardPlan& plan,
                               const ClusterModel& cluster,
                               const ScheduleOptions& options) {
  Simulation sim(plan, cluster, options);
  TransferSchedule out;
  out.model = sim.Run();
  out.sends = std::move(sim.order());
  return out;
}

ReshardPlan ForwardPhase(const ReshardPlan& plan) {
  ReshardPlan phase;
  phase.world_size = plan.world_size;
  phase.ops.reserve(plan.forwards.size());
  for (const TransferOp& f : plan.forwards) {
    phase.ops.push_back({f.src_rank, f.dst_rank, f.task_id, f.bytes, {}});
    phase.bytes_remote += f.bytes;
    ++phase.messages;
  }
  return phase;
}

ScheduleModel ModelPhasedSchedule(const ReshardPlan& plan,
                                  const ClusterModel& cluster,
                                  const ScheduleOptions& options) {
  ScheduleModel m = BuildSchedule(plan, cluster, options).model;
  if (plan.forwards.empty()) return m;
  const ScheduleModel fwd =
      BuildSchedule(ForwardPhase(plan), cluster, options).model;
  m.t_lb_ms += fwd.t_lb_ms;
  m.makespan_ms += fwd.makespan_ms;
  m.chunks += fwd.chunks;
  m.staging_bytes_max = std::max(m.staging_bytes_max, fwd.staging_bytes_max);
  m.efficiency = m.makespan_ms > 0 ? m.t_lb_ms / m.makespan_ms : 1.0;
  return m;
}

}  // namespace refit
