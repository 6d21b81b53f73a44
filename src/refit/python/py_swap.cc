#include "py_swap.h"

#include <pybind11/chrono.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <mutex>
#include <optional>

#include "py_model.h"
#include "py_status.h"
#include "py_transform.h"
#include "refit/cuda_ipc_communicator.h"
#include "refit/exec/copy_service.h"
#include "refit/local_world.h"
#include "refit/mpi_communicator.h"
#include "refit/nccl_communicator.h"
#include "refit/socket_communicator.h"
#include "refit/swap.h"

namespace refit::python {

namespace py = pybind11;

namespace {

using Ms = std::chrono::milliseconds;

Ms Seconds(double s) { return Ms(static_cast<int64_t>(s * 1000.0)); }

// refit.LocalGroup: a LocalWorld; one refit at a time.
struct PyLocalGroup {
  PyLocalGroup(int size, double timeout_s, const std::string& device)
      : world(size, LocalWorldOptions{Seconds(timeout_s), MemoryOf(device)}),
        device(device) {}
  static MemoryKind MemoryOf(const std::string& device) {
    if (device == "cuda") return MemoryKind::kCuda;
    if (device != "cpu") {
      Raise(
          InvalidArgument("LocalGroup: device '" + device + "' (cpu or cuda)"));
    }
    return MemoryKind::kHost;
  }
  LocalWorld world;
  std::string device;
  std::mutex mu;
};

// refit.MpiGroup: an MpiCommunicator over the caller's MPI communicator.
struct PyMpiGroup {
  virtual ~PyMpiGroup() = default;
  std::unique_ptr<Communicator> comm;
  std::mutex mu;
};

// refit.NcclGroup / refit.CudaIpcGroup: an MPI group for control
// (`control`) whose bytes move over NCCL or CUDA IPC (`comm`).
struct PyControlledGroup : PyMpiGroup {
  std::unique_ptr<Communicator> control;
};
struct PyNcclGroup : PyControlledGroup {
  int device = -1;
};
struct PyCudaIpcGroup : PyControlledGroup {};
// refit.SocketGroup: processes of one node joined through a folder.
struct PySocketGroup : PyMpiGroup {};

// What one call asks, parsed once.
struct CallArgs {
  SwapOptions options;
  std::string transform_key;
  enum class Kind { kPrepare, kSwap, kReshard } kind = Kind::kSwap;
};

// The integrity options of one call (refit/_swap.py checks their types).
struct Integrity {
  std::string verify = "auto";  // "auto", "none" or "checksum"
  bool dst_digests = false;
  bool atomic = false;
};

void ApplyIntegrity(const Integrity& i, SwapOptions& o) {
  if (i.verify != "none" && i.verify != "checksum" && i.verify != "auto") {
    Raise(InvalidArgument("verify '" + i.verify +
                          "': \"auto\", \"checksum\", \"none\" or None"));
  }
  o.verify = i.verify == "checksum" ? VerifyMode::kChecksum
             : i.verify == "none"   ? VerifyMode::kNone
                                    : VerifyMode::kAuto;
  o.dst_digests = i.dst_digests;
  o.atomic = i.atomic;
}

CallArgs ParseArgs(int src_offset, int dst_offset, py::handle transform,
                   const std::string& kind, uintptr_t cuda_stream = 0,
                   int fanout_gpus_per_node = 0,
                   const Integrity& integrity = {}) {
  CallArgs a;
  ApplyIntegrity(integrity, a.options);
  a.options.cuda_stream = cuda_stream;
  a.options.fanout_gpus_per_node = fanout_gpus_per_node;
  a.options.src_rank_offset = src_offset;
  a.options.dst_rank_offset = dst_offset;
  Transform t = ParseTransform(transform);
  a.options.transform = std::move(t.options);
  a.transform_key = std::move(t.key);
  a.kind = kind == "prepare"   ? CallArgs::Kind::kPrepare
           : kind == "reshard" ? CallArgs::Kind::kReshard
                               : CallArgs::Kind::kSwap;
  return a;
}

// The views of one rank's models (nullptr for None), collecting reasons a
// tensor cannot be bound.
struct RankViews {
  const ShardedModel* src = nullptr;
  std::vector<DestinationModel> dsts;
};

PyModel* ModelOf(py::handle obj, const char* what) {
  if (obj.is_none()) return nullptr;
  try {
    return obj.cast<PyModel*>();
  } catch (const py::cast_error&) {
    Raise(InvalidArgument(
        std::string(what) + " is a " +
        std::string(py::str(py::type::of(obj).attr("__name__"))) +
        ", not a refit.ShardedModel or None"));
  }
}

RankViews ViewsOf(py::handle src, py::handle dst, const CallArgs& a,
                  int group_rank, std::vector<std::string>& why) {
  RankViews v;
  if (PyModel* s = ModelOf(src, "src_model")) {
    v.src = &s->Views(nullptr, "", false, group_rank, why);
  }
  // A rank's destinations: None, a ShardedModel (at dst_rank_offset), a
  // (ShardedModel, rank_offset) tuple, or a list of models and tuples.
  auto add = [&](py::handle entry) {
    py::handle model = entry;
    int offset = a.options.dst_rank_offset;
    if (py::isinstance<py::tuple>(entry)) {
      const py::tuple t = py::reinterpret_borrow<py::tuple>(entry);
      if (t.size() != 2 || !py::isinstance<py::int_>(t[1])) {
        Raise(InvalidArgument(
            "target_model entry: a (ShardedModel, rank_offset) tuple"));
      }
      model = t[0];
      offset = t[1].cast<int>();
    }
    PyModel* d = ModelOf(model, "target_model");
    if (d == nullptr) {
      Raise(InvalidArgument("target_model: None inside a list of models"));
    }
    const PrecisionOptions* t =
        a.options.transform ? &*a.options.transform : nullptr;
    v.dsts.push_back(
        {&d->Views(t, a.transform_key, true, group_rank, why), offset});
  };
  if (py::isinstance<py::list>(dst)) {
    for (py::handle entry : dst) add(entry);
  } else if (!dst.is_none()) {
    add(dst);
  }
  return v;
}

// One rank's call. Runs without the GIL.
Result<SwapReport> Call(const RankViews& v, Communicator& group,
                        const CallArgs& a) {
  switch (a.kind) {
    case CallArgs::Kind::kPrepare: {
      REFIT_RETURN_IF_ERROR(
          PrepareSwapModelWeights(v.src, v.dsts, group, a.options));
      return SwapReport{};
    }
    case CallArgs::Kind::kReshard: {
      REFIT_ASSIGN_OR_RETURN(exec::CopyService * service,
                             GetOrCreateService(group));
      return ReshardModelWeights(v.src, v.dsts, group, *service, a.options);
    }
    case CallArgs::Kind::kSwap:
      break;
  }
  return SwapModelWeights(v.src, v.dsts, group, a.options);
}

py::object Reports(const std::vector<SwapReport>& reports, const CallArgs& a) {
  if (a.kind == CallArgs::Kind::kPrepare) return py::none();
  return py::cast(reports);
}

// Every rank's views of a "local" call; raises (nothing has moved) for lists
// of the wrong length or a tensor that cannot be viewed.
std::vector<RankViews> LocalViews(PyLocalGroup& g, const py::list& srcs,
                                  const py::list& dsts, const CallArgs& a) {
  const int n = g.world.size();
  if (static_cast<int>(srcs.size()) != n ||
      static_cast<int>(dsts.size()) != n) {
    Raise(InvalidArgument(
        "\"local\" refit of a group of " + std::to_string(n) +
        " ranks: src_model and target_model must be lists of " +
        std::to_string(n) + " entries (ShardedModel or None), got " +
        std::to_string(srcs.size()) + " and " + std::to_string(dsts.size())));
  }
  std::vector<RankViews> views(n);
  std::vector<std::string> why;
  for (int r = 0; r < n; ++r) views[r] = ViewsOf(srcs[r], dsts[r], a, r, why);
  if (!why.empty()) Raise(InvalidArgument(why.front()));
  return views;
}

// "local": every rank's call on its thread of the group.
py::object SwapLocal(PyLocalGroup& g, const py::list& srcs,
                     const py::list& dsts, int src_offset, int dst_offset,
                     py::handle transform, const std::string& kind,
                     uintptr_t cuda_stream, int fanout_gpus_per_node,
                     const std::string& verify, bool dst_digests, bool atomic) {
  const CallArgs a =
      ParseArgs(src_offset, dst_offset, transform, kind, cuda_stream,
                fanout_gpus_per_node, Integrity{verify, dst_digests, atomic});
  const std::vector<RankViews> views = LocalViews(g, srcs, dsts, a);
  const int n = g.world.size();
  std::vector<SwapReport> reports(n);
  std::vector<Status> statuses;
  {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(g.mu);
    statuses = g.world.ForEachRank([&](int r) -> Status {
      REFIT_ASSIGN_OR_RETURN(reports[r], Call(views[r], g.world.rank(r), a));
      return OkStatus();
    });
  }
  for (const Status& st : statuses) ThrowIfError(st);
  return Reports(reports, a);
}

// "mpi": this process's rank.
py::object SwapMpi(PyMpiGroup& g, py::handle src, py::handle dst,
                   int src_offset, int dst_offset, py::handle transform,
                   const std::string& kind, uintptr_t cuda_stream,
                   int fanout_gpus_per_node, const std::string& verify,
                   bool dst_digests, bool atomic) {
  const CallArgs a =
      ParseArgs(src_offset, dst_offset, transform, kind, cuda_stream,
                fanout_gpus_per_node, Integrity{verify, dst_digests, atomic});
  std::vector<std::string> why;
  // A tensor that cannot be viewed still joins the collective (as a view no
  // check accepts), so the other ranks fail with this one instead of waiting.
  const RankViews views = ViewsOf(src, dst, a, g.comm->rank(), why);
  Result<SwapReport> report = Internal("not run");
  {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(g.mu);
    report = Call(views, *g.comm, a);
  }
  if (!why.empty()) Raise(InvalidArgument(why.front()));
  ThrowIfError(report.status());
  if (a.kind == CallArgs::Kind::kPrepare) return py::none();
  return py::cast(*report);
}

// For benchmarks: `iters` cached swaps of a "local" group from C++ alone (views
// bound once), the median ms of one call of all ranks. The C++ side of the
// Python call overhead.
double RepeatLocal(PyLocalGroup& g, const py::list& srcs, const py::list& dsts,
                   int iters) {
  const CallArgs a = ParseArgs(0, 0, py::none(), "swap");
  const std::vector<RankViews> views = LocalViews(g, srcs, dsts, a);
  std::vector<double> ms;
  Status failed;
  {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(g.mu);
    for (int i = 0; i < iters && failed.ok(); ++i) {
      const auto start = std::chrono::steady_clock::now();
      for (const Status& st : g.world.ForEachRank([&](int r) {
             return Call(views[r], g.world.rank(r), a).status();
           })) {
        if (failed.ok()) failed = st;
      }
      ms.push_back(std::chrono::duration<double, std::milli>(
                       std::chrono::steady_clock::now() - start)
                       .count());
    }
  }
  ThrowIfError(failed);
  std::sort(ms.begin(), ms.end());
  return ms.empty() ? 0 : ms[ms.size() / 2];
}

// Every rank's cached copy service exists afterwards (created collectively).
void ServiceLocal(PyLocalGroup& g) {
  std::vector<Status> statuses;
  {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(g.mu);
    statuses = g.world.ForEachRank(
        [&](int r) { return GetOrCreateService(g.world.rank(r)).status(); });
  }
  for (const Status& st : statuses) ThrowIfError(st);
}

void ServiceMpi(PyMpiGroup& g) {
  Status st;
  {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(g.mu);
    st = GetOrCreateService(*g.comm).status();
  }
  ThrowIfError(st);
}

std::unique_ptr<PyMpiGroup> NewMpiGroup(int64_t fortran, double timeout_s,
                                        uint64_t max_staging_bytes) {
  MpiOptions o;
  o.timeout = Seconds(timeout_s);
  o.max_staging_bytes = max_staging_bytes;
  auto g = std::make_unique<PyMpiGroup>();
  Result<std::unique_ptr<Communicator>> comm = Internal("not run");
  {
    py::gil_scoped_release release;
    comm = MpiCommunicator(MpiCommHandle{fortran}, o);
  }
  g->comm = ValueOrRaise(std::move(comm));
  return g;
}

// A socket group of processes joined through `rendezvous` (collective).
std::unique_ptr<Communicator> SocketControl(const std::string& rendezvous,
                                            int rank, int size,
                                            double timeout_s,
                                            uint64_t max_staging_bytes) {
  SocketOptions o;
  o.timeout = Seconds(timeout_s);
  o.max_staging_bytes = max_staging_bytes;
  Result<std::unique_ptr<Communicator>> control = Internal("not run");
  {
    py::gil_scoped_release release;
    control = SocketCommunicator(rendezvous, rank, size, o);
  }
  return ValueOrRaise(std::move(control));
}

std::unique_ptr<PySocketGroup> NewSocketGroup(const std::string& rendezvous,
                                              int rank, int size,
                                              double timeout_s,
                                              uint64_t max_staging_bytes) {
  auto g = std::make_unique<PySocketGroup>();
  g->comm =
      SocketControl(rendezvous, rank, size, timeout_s, max_staging_bytes);
  return g;
}

// The MPI communicator that carries a group's control messages.
std::unique_ptr<Communicator> MpiControl(int64_t fortran, double timeout_s) {
  MpiOptions o;
  o.timeout = Seconds(timeout_s);
  Result<std::unique_ptr<Communicator>> control = Internal("not run");
  {
    py::gil_scoped_release release;
    control = MpiCommunicator(MpiCommHandle{fortran}, o);
  }
  return ValueOrRaise(std::move(control));
}

// The "nccl" group over `control` (MPI's or a socket group's).
std::unique_ptr<PyNcclGroup> NcclOver(std::unique_ptr<Communicator> control,
                                      double timeout_s,
                                      uint64_t max_staging_bytes, int device) {
  auto g = std::make_unique<PyNcclGroup>();
  g->device = device;
  g->control = std::move(control);
  NcclOptions n;
  n.timeout = Seconds(timeout_s);
  n.max_staging_bytes = max_staging_bytes;
  n.device = device;
  g->comm = ValueOrRaise(NcclCommunicator(*g->control, n));
  return g;
}

void RequireNccl() {
  if (!HaveNccl()) {
    Raise(Unimplemented(
        "refit_method \"nccl\": this build of refit has no NCCL"));
  }
}

std::unique_ptr<PyNcclGroup> NewNcclGroup(int64_t fortran, double timeout_s,
                                          uint64_t max_staging_bytes,
                                          int device) {
  RequireNccl();
  return NcclOver(MpiControl(fortran, timeout_s), timeout_s, max_staging_bytes,
                  device);
}

std::unique_ptr<PyNcclGroup> NcclFromRendezvous(const std::string& rendezvous,
                                                int rank, int size,
                                                double timeout_s,
                                                uint64_t max_staging_bytes,
                                                int device) {
  RequireNccl();
  return NcclOver(
      SocketControl(rendezvous, rank, size, timeout_s, uint64_t{1} << 20),
      timeout_s, max_staging_bytes, device);
}

std::unique_ptr<PyCudaIpcGroup> CudaIpcOver(
    std::unique_ptr<Communicator> control) {
  auto g = std::make_unique<PyCudaIpcGroup>();
  g->control = std::move(control);
  g->comm = ValueOrRaise(CudaIpcCommunicator(*g->control));
  return g;
}

std::unique_ptr<PyCudaIpcGroup> NewCudaIpcGroup(int64_t fortran,
                                                double timeout_s) {
  return CudaIpcOver(MpiControl(fortran, timeout_s));
}

std::unique_ptr<PyCudaIpcGroup> CudaIpcFromRendezvous(
    const std::string& rendezvous, int rank, int size, double timeout_s) {
  if (!HaveCudaIpc()) {
    Raise(Unimplemented(
        "refit_method \"cuda_ipc\": this build of refit has no CUDA"));
  }
  return CudaIpcOver(
      SocketControl(rendezvous, rank, size, timeout_s, uint64_t{1} << 20));
}

void RegisterReport(py::module_& m) {
  py::class_<SwapReport>(m, "SwapReport", R"doc(
What one refit did on one rank. Bytes are counted before conversion; times
are this rank's wall times in ms.)doc")
      .def_readonly(
          "plan_built", &SwapReport::plan_built,
          "True when this call built the reshard plan (no cache hit).")
      .def_readonly("bytes_sent", &SwapReport::bytes_sent)
      .def_readonly("bytes_received", &SwapReport::bytes_received)
      .def_readonly("bytes_local", &SwapReport::bytes_local)
      .def_readonly("bytes_copied", &SwapReport::bytes_copied)
      .def_readonly("params_replanned", &SwapReport::params_replanned)
      .def_readonly("messages_sent", &SwapReport::messages_sent)
      .def_readonly("messages_received", &SwapReport::messages_received)
      .def_readonly("plan_ms", &SwapReport::plan_ms)
      .def_readonly("pack_ms", &SwapReport::pack_ms)
      .def_readonly("wire_ms", &SwapReport::wire_ms)
      .def_readonly("unpack_ms", &SwapReport::unpack_ms)
      .def_readonly("total_ms", &SwapReport::total_ms)
      .def_readonly("staging_bytes", &SwapReport::staging_bytes)
      .def_readonly("weight_version", &SwapReport::weight_version,
                    "The group's weight version after this refit.")
      .def_property_readonly(
          "dst_digests",
          [](const SwapReport& r) {
            std::vector<std::pair<std::string, uint64_t>> out;
            out.reserve(r.dst_digests.size());
            for (const TensorDigest& d : r.dst_digests) {
              out.emplace_back(d.name, d.xxh3);
            }
            return out;
          },
          "With dst_digests=True: (name, xxh3) of every destination tensor "
          "of this rank, in name order: XXH3_64bits (seed 0) of its bytes "
          "after the refit, an int in [0, 2**64); [] otherwise.")
      .def_readonly("verified", &SwapReport::verified,
                    "Every message of this refit carried an xxh3-64 checked "
                    "by its receiver (verify=\"checksum\", or \"auto\" "
                    "with no CUDA tensor in the group).")
      .def_readonly("shadow_bytes", &SwapReport::shadow_bytes,
                    "With atomic=True: bytes of this rank's shadow copy of "
                    "its destination tensors (kept with the group between "
                    "atomic calls); 0 otherwise.")
      .def_readonly("shadow_ms", &SwapReport::shadow_ms,
                    "With atomic=True: ms to copy the destination tensors into "
                    "the shadow (page faults of its fresh memory included); 0 "
                    "otherwise.")
      .def_readonly("publish_ms", &SwapReport::publish_ms,
                    "With atomic=True: ms to copy the shadow into the "
                    "destination tensors once every rank succeeded; 0 "
                    "otherwise.")
      .def("__repr__", [](const SwapReport& r) {
        return "SwapReport(plan_built=" +
               std::string(r.plan_built ? "True" : "False") +
               ", bytes_sent=" + std::to_string(r.bytes_sent) +
               ", bytes_received=" + std::to_string(r.bytes_received) +
               ", bytes_local=" + std::to_string(r.bytes_local) +
               ", total_ms=" + std::to_string(r.total_ms) +
               ", weight_version=" + std::to_string(r.weight_version) + ")";
      });
}

}  // namespace

void RegisterSwap(py::module_& m) {
  RegisterReport(m);
  py::class_<PyLocalGroup>(m, "LocalGroup", R"doc(
The "local" refit method's group: `size` ranks, each a thread of this
process, over the embedded copy service (a receiver copies straight from the
sender's tensors). A rank gives up (RefitTimeoutError) when nothing moved for
`timeout_s` seconds. `device` "cpu": tensors in host memory, copied by the
CPU; "cuda": CUDA (or host) tensors, copied with cudaMemcpy (a build without
CUDA raises NotImplementedError at the first refit). Raises ValueError for
another device.)doc")
      .def(py::init<int, double, const std::string&>(), py::arg("size"),
           py::arg("timeout_s") = 60.0, py::arg("device") = "cpu")
      .def_property_readonly("device", [](PyLocalGroup& g) { return g.device; })
      .def_property_readonly("size",
                             [](PyLocalGroup& g) { return g.world.size(); })
      .def_property_readonly(
          "weight_version",
          [](PyLocalGroup& g) { return g.world.rank(0).weight_version(); },
          "Refits that succeeded on every rank of this group.")
      .def_property_readonly(
          "partial_tensors",
          [](PyLocalGroup& g) {
            std::vector<std::vector<std::string>> out;
            for (int r = 0; r < g.world.size(); ++r) {
              out.push_back(g.world.rank(r).partial_tensors());
            }
            return out;
          },
          R"doc(Per rank (a list of lists, in rank order): after the last
refit failed once bytes had started to move, the names of that rank's
destination tensors whose bytes it may have changed in whole or in part (all
of them: conservative), sorted; [] after a success, after a failure before
any byte moved, and with atomic=True.)doc");

  py::class_<PyMpiGroup>(m, "MpiGroup", R"doc(
The "mpi" refit method's group: the processes of an MPI communicator given by
its Fortran handle (mpi4py: comm.py2f()). Collective: every process of the
communicator constructs it. MPI must be initialised (importing mpi4py.MPI
does). Raises NotImplementedError when refit was built without MPI.)doc")
      .def(py::init(&NewMpiGroup), py::arg("fortran_handle"),
           py::arg("timeout_s") = 60.0,
           py::arg("max_staging_bytes") = uint64_t{256} << 20)
      .def_property_readonly("rank",
                             [](PyMpiGroup& g) { return g.comm->rank(); })
      .def_property_readonly("size",
                             [](PyMpiGroup& g) { return g.comm->size(); })
      .def_property_readonly(
          "weight_version",
          [](PyMpiGroup& g) { return g.comm->weight_version(); },
          "Refits that succeeded on every rank of this group.")
      .def_property_readonly(
          "partial_tensors",
          [](PyMpiGroup& g) { return g.comm->partial_tensors(); },
          R"doc(After the last refit failed once bytes had started to move:
the names of this rank's destination tensors whose bytes it may have changed
in whole or in part (all of them: conservative), sorted; [] after a
success, after a failure before any byte moved, and with atomic=True.)doc");

  py::class_<PyControlledGroup, PyMpiGroup>(m, "_ControlledGroup");
  py::class_<PyNcclGroup, PyControlledGroup>(m, "NcclGroup", R"doc(
The "nccl" refit method's group: the processes of an MPI communicator given by
its Fortran handle (mpi4py: comm.py2f()), one per GPU; small control messages
go over MPI, tensor bytes over one NCCL communicator created at the first
refit on `device` (-1: the current CUDA device). CUDA tensors are sent and
received in place where contiguous; host tensors are staged through the
device. Collective: every process of the communicator constructs it. Raises
NotImplementedError when refit was built without NCCL or MPI.)doc")
      .def(py::init(&NewNcclGroup), py::arg("fortran_handle"),
           py::arg("timeout_s") = 60.0,
           py::arg("max_staging_bytes") = uint64_t{256} << 20,
           py::arg("device") = -1)
      .def_property_readonly("device", [](PyNcclGroup& g) { return g.device; })
      .def_static("from_rendezvous", &NcclFromRendezvous, R"doc(
The "nccl" group of `size` processes of one node launched without MPI
(torchrun, Ray, ...): each calls it with its own `rank` and the same
`rendezvous` folder; control messages go over a SocketGroup there, tensor
bytes over NCCL on `device` (-1: the current CUDA device). Collective.)doc",
                  py::arg("rendezvous"), py::arg("rank"), py::arg("size"),
                  py::arg("timeout_s") = 60.0,
                  py::arg("max_staging_bytes") = uint64_t{256} << 20,
                  py::arg("device") = -1);

  py::class_<PyCudaIpcGroup, PyControlledGroup>(m, "CudaIpcGroup", R"doc(
The "cuda_ipc" refit method's group: processes of one node given by an MPI
communicator's Fortran handle (mpi4py: comm.py2f()); each sender writes
straight into its receivers' CUDA tensors through CUDA IPC (one copy, receive
allocations exported once while the plan's tensors stay the same); small
metadata goes over MPI, whose timeout also bounds the copies. Every tensor
must be CUDA memory from cudaMalloc or PyTorch's caching allocator (not
expandable segments). Collective. Raises NotImplementedError when refit was
built without CUDA or MPI.)doc")
      .def(py::init(&NewCudaIpcGroup), py::arg("fortran_handle"),
           py::arg("timeout_s") = 60.0)
      .def_static("from_rendezvous", &CudaIpcFromRendezvous, R"doc(
The "cuda_ipc" group of `size` processes of one node launched without MPI
(torchrun, Ray, a trainer spawning its engine's workers): each calls it with
its own `rank` and the same `rendezvous` folder; the metadata goes over a
SocketGroup there. Collective. Raises NotImplementedError when refit was
built without CUDA.)doc",
                  py::arg("rendezvous"), py::arg("rank"), py::arg("size"),
                  py::arg("timeout_s") = 60.0);

  py::class_<PySocketGroup, PyMpiGroup>(m, "SocketGroup", R"doc(
The "socket" refit method's group: `size` processes of one node, launched by
anything (no MPI), each calling it with its own `rank` (0 <= rank < size) and
the same `rendezvous` folder (existing, used by one group at a time, paths
under 108 bytes). Host tensors move over Unix-domain sockets. Collective:
returns once this process is connected to every other (RefitTimeoutError
naming the missing ranks after `timeout_s` seconds); no file stays in the
folder.)doc")
      .def(py::init(&NewSocketGroup), py::arg("rendezvous"), py::arg("rank"),
           py::arg("size"), py::arg("timeout_s") = 60.0,
           py::arg("max_staging_bytes") = uint64_t{256} << 20);

  m.def("have_mpi", &HaveMpi, "True when this build has the MPI transport.");
  m.def("have_cuda_ipc", &HaveCudaIpc,
        "True when this build has the CUDA IPC transport.");
  m.def("have_nccl", &HaveNccl, "True when this build has the NCCL transport.");
  m.def("_swap_local", &SwapLocal);
  m.def("_swap_mpi", &SwapMpi);
  m.def("_service_local", &ServiceLocal);
  m.def("_repeat_local", &RepeatLocal);
  m.def("_service_mpi", &ServiceMpi);
  m.def("_clear_service_cache", [] {
    py::gil_scoped_release release;
    ClearServiceCache();
  });
  m.def("_clear_plan_cache", [] {
    py::gil_scoped_release release;
    ClearPlanCache();
  });
}

}  // namespace refit::python
