#include <chrono>
#include <memory>
#include <optional>

#include "refit/cli/commands.h"
#include "refit/cli/engine_check.h"
#include "refit/cli/plan_json.h"
#include "refit/cli/run_report.h"
#include "refit/cli/run_setup.h"
#include "refit/core/plan_cache.h"
#include "refit/job/refit_job.h"
#ifdef REFIT_HAVE_MPI
#include "refit/cli/run_mpi.h"
#endif

namespace refit::cli {

namespace {

int RunRun(const RunOptions& o) {
#ifdef REFIT_HAVE_MPI
  if (LaunchedAsMpiRanks()) {
    if (o.device != "cpu") {
      return Fail(Unimplemented("--device " + o.device +
                                ": under mpirun only cpu tensors so far"));
    }
    if (!o.also_dst.empty()) {
      return Fail(Unimplemented(
          "--also-dst: under mpirun one destination so far (the library's "
          "SwapModelWeights takes several)"));
    }
    return RunMpiRun(o);
  }
#endif
  Result<RunSetup> setup = PrepareRun(o, /*processes=*/0);
  if (!setup.ok()) return Fail(setup.status());
  RunSetup& s = *setup;
  LogSkippedTensors(s);
  PlanCache cache;
  const auto t0 = std::chrono::steady_clock::now();
  auto plan = cache.GetOrBuild(s.spec, *s.topo, 0, s.plan_options);
  const double plan_ms = std::chrono::duration<double, std::milli>(
                             std::chrono::steady_clock::now() - t0)
                             .count();
  if (!plan.ok()) return Fail(plan.status());
  if (!o.dump_plan.empty()) {
    Status st = WriteAtomically(o.dump_plan, PlanJson(s.spec, *s.topo, **plan));
    if (!st.ok()) return Fail(st);
  }
  exec::RefitJobOptions jo{o.iters,     o.baseline, o.save_dir,
                           o.timeout(), &s.formats, s.precision};
  jo.memory = o.device == "cuda" ? MemoryKind::kCuda : MemoryKind::kHost;
  jo.fanout_gpus_per_node = o.fanout_gpus_per_node;
  jo.verify = o.verify_mode();
  jo.atomic = o.atomic;
  jo.also = s.also;
  std::string no_check;
  if (auto check = MakeEngineCheck(o, s, &no_check)) jo.dst_check = *check;
  auto report = exec::RunEmbeddedRefit(s.spec, s.bound, *s.topo, **plan, jo);
  if (!report.ok()) return Fail(report.status());
  const ReshardPlan& p = **plan;
  RunResult result{p.dst_tensors, p.bytes_remote, p.bytes_local, p.messages,
                   plan_ms,       *report,        std::nullopt};
  result.bytes_forwarded = p.bytes_forwarded;
  result.bytes_wire = PlanWireBytes(s.spec, s.formats, p);
  PrintRunTable(o, s, result);
  PrintEngineCheck(*s.topo, *report, no_check);
  Status st = WriteRunJson(o, s, result);
  if (!st.ok()) return Fail(st);
  return report->wrong == 0 && report->checked_wrong == 0 ? 0 : 1;
}

void AddPrecisionOptions(CLI::App& cmd, RunOptions& o) {
  cmd.add_option("--dst-dtype", o.dst_dtype,
                 "destination format: bf16, f16, f32 (every float parameter; "
                 "buffers are harmonised), fp8-block or mxfp8 (linear "
                 "weights)");
  cmd.add_option("--cast", o.casts,
                 "PATTERN=bf16|f16|f32: cast tensors whose Megatron name "
                 "matches the glob (buffers too); repeatable, last wins");
  cmd.add_option("--cast-on", o.cast_on, "where casts run: send or recv")
      ->capture_default_str();
  cmd.add_option("--quantize-on", o.quantize_on,
                 "where quantisation runs: send (whole blocks only) or recv; "
                 "default send for fp8-block, recv for mxfp8");
  cmd.add_option("--fp8-block", o.fp8_block,
                 "fp8-block: block extent in rows and columns")
      ->capture_default_str()
      ->check(Positive());
  cmd.add_option("--fp8-scale", o.fp8_scale,
                 "fp8-block scales: f32 (amax/448) or ue8m0 (power of two, "
                 "rounded up)")
      ->capture_default_str();
  cmd.add_flag("--mxfp8-swizzled", o.mxfp8_swizzled,
               "mxfp8: scales in the cuBLAS/FlashInfer 128x4 layout");
}

}  // namespace

Command AddRunCommand(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand(
      "run",
      "Refit a checkpoint from one layout into another, bit-exact check");
  cmd->add_option("--checkpoint", o->checkpoint,
                  "HF checkpoint directory (config.json + safetensors)")
      ->capture_default_str();
  cmd->add_option("--src", o->src, "source layout, e.g. tp=2,pp=1,ep=2,etp=1")
      ->capture_default_str();
  cmd->add_option("--dst", o->dst, "destination layout")->capture_default_str();
  cmd->add_option("--dst-family", o->dst_family,
                  "whose tensors the destination holds: megatron (default), "
                  "vllm, sglang (the engine's per-rank tensors after "
                  "loading) or hf (whole Hugging Face tensors); "
                  "docs/LAYOUTS.md")
      ->check(CLI::IsMember({"megatron", "vllm", "sglang", "hf"}));
  cmd->add_option(
      "--also-dst", o->also_dst,
      "another destination fed in the same refit pass, each source byte "
      "read once: LAYOUT (on the --dst ranks, e.g. a draft model "
      "tp=2,family=vllm,part=mtp) or LAYOUT@WORLD+OFFSET (WORLD ranks from "
      "rank OFFSET, e.g. a second pool tp=1,ep=4,family=vllm@4+4); "
      "repeatable; checked byte for byte like --dst");
  cmd->add_flag(
      "--mtp", o->mtp,
      "also refit the multi-token prediction layers "
      "(num_nextn_predict_layers; DeepSeek-V3-style models, GLM-4.x MoE)");
  cmd->add_option("--world", o->world,
                  "collocated: ranks holding both models (default 4)")
      ->check(Positive());
  cmd->add_option("--src-world", o->src_world,
                  "non-collocated: source ranks (first)")
      ->check(Positive());
  cmd->add_option("--dst-world", o->dst_world,
                  "non-collocated: destination ranks (after the source ranks)")
      ->check(Positive());
  cmd->add_option("--iters", o->iters, "timed refits after one warm-up")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_flag("--baseline", o->baseline,
                "also time memcpy of the same destination bytes (under "
                "mpirun: MPI_Alltoallv of the same per-pair bytes)");
  cmd->add_option("--json", o->json_path, "write the result as JSON");
  cmd->add_option("--save", o->save_dir,
                  "write DIR/rank-NNNNN.safetensors per destination rank");
  cmd->add_option("--dump-plan", o->dump_plan,
                  "write the plan as JSON (for bench/torch_reshard.py)");
  cmd->add_option("--device", o->device,
                  "where the tensors live: cpu, or cuda (copied to the GPU "
                  "once, refit there, copied back to be checked; the "
                  "baseline is a device-to-device copy)")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--timeout", o->timeout_s,
                  "seconds a rank waits for a peer before the refit fails")
      ->capture_default_str()
      ->check(Positive());
  AddPrecisionOptions(*cmd, *o);
  cmd->add_option("--fp8-source", o->fp8_source,
                  "block-FP8 checkpoint weights: dequantise (to the config "
                  "dtype) or keep (FP8 + scales)")
      ->capture_default_str();
  cmd->add_option("--fanout-gpus-per-node", o->fanout_gpus_per_node,
                  "node fan-out: ranks sit this many to a node in rank "
                  "order; one destination rank per node and shard receives "
                  "the bytes its node lacks and forwards them to the node's "
                  "other holders (0: off)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--verify", o->verify,
                  "end-to-end integrity: checksum (every message carries an "
                  "xxh3-64 of its bytes, checked by its receiver; a mismatch "
                  "fails the refit naming task and ranks; host tensors "
                  "only), none, or auto (checksum for host tensors, none "
                  "with --device cuda; docs/RELIABILITY.md)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "none", "checksum"}));
  cmd->add_flag("--atomic", o->atomic,
                "all-or-nothing refits: each rank refits into a host shadow "
                "copy of its destination tensors, copied into them only "
                "after every rank succeeded (host tensors only; "
                "docs/RELIABILITY.md)");
  cmd->add_option("--max-staging-bytes", o->max_staging_bytes,
                  "under mpirun: staging memory per rank for messages that "
                  "are not contiguous")
      ->capture_default_str()
      ->check(Positive());
  return [o] { return RunRun(*o); };
}

}  // namespace refit::cli
